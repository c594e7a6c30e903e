"""The owner in a real browser: headless Chromium (Debian's), driven by
Playwright. Run by `tests/owner.rs`, which starts the locker, installs app A
(hello-rs) and app B (notes), and checks B's state and the locker's after
this script has tried everything a hostile page could.

    python3 tests/browser/owner.py '{"setup_link": ..., "locker": ..., "a": ..., "b": ..., "password": ..., "screenshots": ...}'

Prints one JSON object: what each step saw.
"""

import base64
import json
import os
import sys

from playwright.sync_api import sync_playwright

ARGS = json.loads(sys.argv[1])
LOCKER, A, B = ARGS["locker"], ARGS["a"], ARGS["b"]
SHOTS = ARGS["screenshots"]
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# What app A's script tries, from A's own page: read B and the admin API,
# change B and the locker. Each result says what the script got back.
ATTACK = """
async ([locker, b, manifest, component]) => {
  const attempt = async (name, url, options) => {
    try {
      const response = await fetch(url, { credentials: "include", ...options });
      let body = null;
      try { body = await response.text(); } catch (e) { body = "unreadable: " + e; }
      return [name, { type: response.type, status: response.status, body }];
    } catch (e) {
      return [name, { error: String(e) }];
    }
  };
  const form = new FormData();
  form.append("manifest", manifest);
  // A real component: only the host's door can keep it out.
  const bytes = Uint8Array.from(atob(component), (c) => c.charCodeAt(0));
  form.append("component", new Blob([bytes]), "component.wasm");
  return Object.fromEntries(await Promise.all([
    attempt("read_b", b + "/file?path=secret.txt", {}),
    attempt("read_b_no_cors", b + "/file?path=secret.txt", { mode: "no-cors" }),
    attempt("read_admin", locker + "/_locker/api/services", {}),
    attempt("write_b", b + "/file?path=pwned.txt", { method: "POST", mode: "no-cors", body: "pwned" }),
    attempt("write_b_put", b + "/file?path=pwned-too.txt", { method: "PUT", body: "pwned" }),
    attempt("stop_b", locker + "/_locker/api/services/notes/stop", { method: "POST", mode: "no-cors" }),
    attempt("install", locker + "/_locker/api/services", { method: "POST", mode: "no-cors", body: form }),
    attempt("make_token", locker + "/_locker/api/tokens", {
      method: "POST", headers: { "content-type": "application/json", "x-locker-request": "1" },
      body: JSON.stringify({ scope: "admin" }),
    }),
  ]));
}
"""


# App A's script puts B's page and the locker's dashboard in frames of its own.
FRAMES = """
([locker, b]) => {
  for (const url of [b + "/file?path=secret.txt", locker + "/"]) {
    const frame = document.createElement("iframe");
    frame.src = url;
    frame.width = 400;
    frame.height = 120;
    document.body.appendChild(frame);
  }
}
"""


def frame_state(page, url):
    """Whether the frame that was sent to `url` shows it, or Chromium's
    error page because the page refused to be framed."""
    for frame in page.frames[1:]:
        if frame.url == url:
            return "shown"
        if frame.url.startswith("chrome-error://"):
            continue
    errors = [f.url for f in page.frames[1:] if f.url.startswith("chrome-error://")]
    return "blocked" if len(errors) >= 1 else "missing: " + ", ".join(f.url for f in page.frames)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"owner-{name}.png"), full_page=True)


def main():
    seen = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        # One browser profile: the owner's cookies are shared by its tabs.
        owner = browser.new_context(viewport={"width": 900, "height": 640})
        page = owner.new_page()

        page.goto(ARGS["setup_link"])
        shot(page, "1-setup")
        page.fill("input[name=password]", ARGS["password"])
        page.fill("input[name=confirm]", ARGS["password"])
        page.click("button")
        page.wait_for_url(LOCKER + "/")
        page.wait_for_selector("#services")
        seen["dashboard"] = page.inner_text("body")
        shot(page, "2-dashboard")

        page.click("text=Log out")
        page.wait_for_url("**/_locker/login")
        page.fill("input[name=password]", "not the password")
        page.click("button")
        seen["wrong_password"] = page.inner_text(".problem")
        shot(page, "3-login-wrong")
        page.fill("input[name=password]", ARGS["password"])
        page.click("button")
        page.wait_for_url(LOCKER + "/")

        # Into app A from the dashboard (its Open link, a new tab): the
        # ticket round happens unseen.
        with owner.expect_page() as opened:
            page.click('tr[data-service="hello-rs"] a.open')
        dashboard = page
        page = opened.value
        page.wait_for_url(A + "/")
        seen["a_page"] = page.inner_text("body")
        shot(page, "4-app-a")

        b_page = owner.new_page()
        for watched in (page, b_page):
            watched.on("requestfailed", lambda r: print("request failed:", r.method, r.url, r.failure, file=sys.stderr))
        b_page.goto(B + "/file?path=secret.txt")
        seen["b_page"] = b_page.inner_text("body")
        shot(b_page, "5-app-b")
        # B's own script may change B.
        seen["b_own_write"] = b_page.evaluate(
            """async () => (await fetch("/file?path=own.txt", { method: "POST", body: "mine" })).status"""
        )

        with open(ARGS["component"], "rb") as f:
            component = base64.b64encode(f.read()).decode()
        seen["attack"] = page.evaluate(ATTACK, [LOCKER, B, ARGS["manifest"], component])

        # A frames B and the locker: both refuse to be shown in it.
        page.evaluate(FRAMES, [LOCKER, B])
        page.wait_for_timeout(1500)
        seen["frames"] = {
            name: frame_state(page, url) for name, url in (("b", B + "/file?path=secret.txt"), ("locker", LOCKER + "/"))
        }
        shot(page, "4b-app-a-framing")

        # A service still waiting for a required setting: the host's page
        # says which, and how the owner sets it.
        page.goto(ARGS["unconfigured"] + "/")
        seen["unconfigured"] = page.inner_text("body")
        shot(page, "7-not-set-up")

        # Log out from the dashboard: both apps are closed again.
        dashboard.goto(LOCKER + "/")
        dashboard.click("text=Log out")
        dashboard.wait_for_url("**/_locker/login")
        page.goto(A + "/")
        seen["a_after_logout"] = page.url
        shot(page, "6-after-logout")
        b_page.goto(B + "/file?path=secret.txt")
        seen["b_after_logout"] = b_page.url
        browser.close()
    print(json.dumps(seen))


main()
