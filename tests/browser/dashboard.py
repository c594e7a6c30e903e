"""The owner runs the locker from the dashboard on `/`, in headless Chromium
(Debian's) driven by Playwright. Run by `tests/owner.rs`, which starts the
locker with services installed and a registry holding a signed package,
then checks the locker's side of every step this script took.

    python3 tests/browser/dashboard.py '{...}'

Every step asserts on the page itself; the script prints one JSON object
of what it saw, and saves a screenshot per step (target/screenshots/dash-*).
"""

import json
import os
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
import urllib.error

from playwright.sync_api import expect, sync_playwright

ARGS = json.loads(sys.argv[1])
LOCKER = ARGS["locker"]
SHOTS = ARGS["screenshots"]
TOKEN = ARGS["admin_token"]
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
expect.set_options(timeout=20_000)


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"dash-{name}.png"), full_page=True)


def call(method, url, token=TOKEN, body=None):
    """A script's request to the locker (not the browser's): status and text.
    Python does not resolve `*.localhost` as browsers do: it connects to
    loopback and names the host in the `Host` header."""
    parts = urllib.parse.urlsplit(url)
    loopback = parts._replace(netloc=f"127.0.0.1:{parts.port}").geturl()
    request = urllib.request.Request(loopback, method=method, data=body)
    request.add_header("host", parts.netloc)
    if token:
        request.add_header("authorization", f"Bearer {token}")
    if body is not None:
        request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def parse_metrics(text):
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
    return [[s.name, s.labels, s.value] for f in text_string_to_metric_families(text) for s in f.samples]


def main():
    seen = {}
    problems = []
    with sync_playwright() as playwright:
        steps(playwright, seen, problems)
    seen["problems"] = problems
    print(json.dumps(seen))


def steps(playwright, seen, problems):
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    # A status the page shows as an error is the API's answer, not a fault
    # of the page: only scripts' own errors count.
    page.on("console", lambda m: m.type == "error" and "Failed to load resource" not in m.text
            and problems.append(f"console: {m.text}"))
    try:
        dashboard(browser, context, page, seen)
    except Exception:
        # What the page showed when a step failed.
        shot(page, "failed")
        print("the page said:", page.inner_text("body"), file=sys.stderr)
        raise
    browser.close()


def dashboard(browser, context, page, seen):
    if True:
        # Set-up, then the services, each with its state.
        page.goto(ARGS["setup_link"])
        page.fill("input[name=password]", ARGS["password"])
        page.fill("input[name=confirm]", ARGS["password"])
        page.click("button")
        page.wait_for_url(LOCKER + "/")
        for name in ("subscriber", "ticker", "config-reader"):
            expect(page.locator(f'#services tr[data-service="{name}"]')).to_be_visible()
        expect(page.locator('#services tr[data-service="config-reader"] .state')).to_have_text("needs its setting server")
        seen["services"] = page.inner_text("#services")
        shot(page, "1-services")

        # Keyboard: the first Tab reaches the skip link, Enter moves to the content.
        page.keyboard.press("Tab")
        seen["first_tab"] = page.evaluate("document.activeElement.textContent")
        page.keyboard.press("Enter")
        seen["after_skip"] = page.evaluate("document.activeElement.id")

        # A bad package is refused with the reason in the page.
        page.click("nav >> text=Install")
        broken = os.path.join(tempfile.mkdtemp(), "locker.toml")
        with open(broken, "w") as f:
            f.write('name = "Not A Name"\nversion = "one"\n')
        page.set_input_files("#upload input[type=file]", [broken, ARGS["hello_component"]])
        page.click("#upload button")
        expect(page.locator("#problem")).to_be_visible()
        seen["bad_upload"] = page.inner_text("#problem")
        shot(page, "2-bad-upload")

        # Install by upload: the service's page opens.
        page.set_input_files("#upload input[type=file]", [ARGS["hello_manifest"], ARGS["hello_component"]])
        page.click("#upload button")
        page.wait_for_url(LOCKER + "/#/service/hello-rs")
        expect(page.locator("#notice")).to_contain_text("hello-rs 0.1.0 installed")
        shot(page, "3-uploaded")

        # Open it: the service's own origin, in a new tab, with the owner's session.
        with context.expect_page() as opened:
            page.click("a.open")
        app = opened.value
        app.wait_for_load_state()
        seen["opened"] = {"url": app.url, "body": app.inner_text("body")}
        app.close()

        # Install from a registry, searched by service type: the publisher's
        # key is shown before anything is installed.
        page.click("nav >> text=Install")
        page.fill("#registry", ARGS["registry"])
        page.fill("#type", "note/files")
        page.click("#search button")
        expect(page.locator('#found li[data-package="notes"]')).to_be_visible()
        page.click('#found li[data-package="notes"] button')
        expect(page.locator("#fingerprint")).to_be_visible()
        seen["offer_fingerprint"] = page.inner_text("#fingerprint")
        seen["offer"] = page.inner_text("#offer")
        shot(page, "4-registry-offer")
        page.click("#accept")
        page.wait_for_url(LOCKER + "/#/service/notes")
        expect(page.locator("#notice")).to_contain_text("publisher's key is now pinned")

        # Its next release, from the same publisher: upgrade, then roll back.
        subprocess.run(ARGS["publish_next"], check=True, capture_output=True)
        page.click("#check-upgrade")
        expect(page.locator("#accept-upgrade")).to_have_text("Upgrade to 0.2.0")
        seen["upgrade_offer"] = page.inner_text("#upgrade-offer")
        page.click("#accept-upgrade")
        expect(page.locator("#notice")).to_contain_text("notes upgraded to 0.2.0")
        expect(page.locator("dl.facts")).to_contain_text("0.2.0")
        shot(page, "4b-upgraded")
        page.click("#rollback")
        expect(page.locator("#notice")).to_contain_text("notes: roll back done")
        expect(page.locator("dl.facts")).to_contain_text("0.1.0")
        seen["after_rollback"] = page.inner_text("dl.facts")

        # Events: one appears live after a publish from outside the page,
        # its subscriber fails it into a dead letter, and a replay (once the
        # subscriber is fixed) delivers it.
        page.click("nav >> text=Events")
        expect(page.locator("#stream-state")).to_have_text("live, every topic")
        status, _ = call("POST", LOCKER + "/_locker/api/publish/note/created",
                         body=json.dumps({"always_fail": True, "note": "from outside"}).encode())
        assert status == 201, status
        item = page.locator('#live li[data-topic="note/created"]')
        expect(item).to_be_visible()
        seen["live_event"] = item.inner_text()
        shot(page, "5-live-event")
        page.fill("#topic", "photo/*")
        page.click("#filter button")
        expect(page.locator("#stream-state")).to_have_text("live, topics photo/*")
        call("POST", LOCKER + "/_locker/api/publish/note/created", body=b'{"note": "filtered out"}')
        call("POST", LOCKER + "/_locker/api/publish/photo/added", body=b'{"photo": "kept"}')
        expect(page.locator('#live li[data-topic="photo/added"]')).to_be_visible()
        seen["filtered_topics"] = page.eval_on_selector_all("#live li", "items => items.map(i => i.dataset.topic)")
        # The list of dead letters refreshes itself.
        dead = page.locator('#dead tr[data-subscriber="subscriber"]')
        expect(dead).to_be_visible(timeout=30_000)
        seen["dead_letter"] = dead.inner_text()
        shot(page, "6-dead-letter")
        status, _ = call("POST", ARGS["subscriber_origin"] + "/fix", body=b"")
        seen["fix_status"] = status
        dead.locator("button.replay").click()
        expect(page.locator("#notice")).to_contain_text("replayed to subscriber")
        expect(page.locator("#no-dead")).to_be_visible()
        shot(page, "7-replayed")

        # A secret: set in the page, shown only as "set", never its value.
        page.goto(LOCKER + "/#/service/config-reader")
        row = page.locator('#config tr[data-key="token"]')
        expect(row.locator(".value")).to_have_text("not set")
        row.locator("input").fill(ARGS["secret"])
        row.locator("button", has_text="Set").click()
        expect(page.locator("#notice")).to_contain_text("token set")
        expect(page.locator('#config tr[data-key="token"] .value')).to_have_text("set")
        server = page.locator('#config tr[data-key="server"]')
        server.locator("input").fill("sync.example.org")
        server.locator("button", has_text="Set").click()
        expect(page.locator('#config tr[data-key="server"] .value')).to_have_text("sync.example.org")
        # Its required setting is set: it no longer waits for it.
        expect(page.locator("#state")).not_to_contain_text("needs its setting")
        expect(page.locator("#log")).to_contain_text('config "server" set by the owner')
        seen["secret_in_page"] = ARGS["secret"] in page.content()
        shot(page, "8-secret-set")

        # A job, run now: its result in the page.
        page.goto(LOCKER + "/#/service/ticker")
        job = page.locator('#jobs tr[data-job="tick"]')
        job.locator("button.run").click()
        expect(job.locator(".result")).to_contain_text("ok in")
        seen["job_result"] = job.locator(".result").inner_text()
        expect(page.locator("#log")).to_contain_text("loaded")
        seen["log"] = page.inner_text("#log")
        shot(page, "9-job-run")

        # A token of scope `metrics`: shown once, reads the metrics, revoked.
        page.click("nav >> text=Account")
        form = page.locator("#new-token")
        form.locator("input[name=scope]").fill("metrics")
        form.locator("input[name=label]").fill("prometheus")
        form.locator("button").click()
        expect(page.locator("#token-value")).to_be_visible()
        token = page.inner_text("#token-value")
        expect(page.locator('#tokens tr[data-token="prometheus"]')).to_be_visible()
        status, text = call("GET", LOCKER + "/_locker/metrics", token=token)
        seen["metrics_with_token"] = status
        seen["metrics"] = parse_metrics(text)
        seen["admin_with_metrics_token"] = call("GET", LOCKER + "/_locker/api/services", token=token)[0]
        shot(page, "10-token")
        page.click('#tokens tr[data-token="prometheus"] button.revoke')
        expect(page.locator('#tokens tr[data-token="prometheus"]')).to_have_count(0)
        seen["metrics_after_revoke"] = call("GET", LOCKER + "/_locker/metrics", token=token)[0]

        # A passkey, on Chromium's virtual authenticator: registered, then
        # used to sign in instead of the password, then removed.
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True,
            "hasUserVerification": True, "isUserVerified": True, "automaticPresenceSimulation": True,
        }})
        page.fill("#passkey-name", "virtual key")
        page.click("#add-passkey button")
        expect(page.locator('#passkeys li[data-passkey="virtual key"]')).to_be_visible()
        shot(page, "11-passkey-added")
        page.click("text=Log out")
        page.wait_for_url("**/_locker/login")
        shot(page, "12-login-with-passkey")
        page.click("#passkey")
        page.wait_for_url(LOCKER + "/")
        expect(page.locator("#services")).to_be_visible()
        seen["signed_in_with_passkey"] = True
        page.click("nav >> text=Account")
        key = page.locator('#passkeys li[data-passkey="virtual key"]')
        expect(key).not_to_contain_text("last used never")
        seen["passkey_listed"] = key.inner_text()
        key.locator("button.remove").click()
        expect(page.locator("#no-passkeys")).to_be_visible()

        # Backups: two passphrases that differ are caught; then one backup
        # now, sealed, listed with how it went, and downloaded whole.
        page.click("nav >> text=Backups")
        expect(page.locator("#backup-now")).to_be_visible()
        expect(page.locator("#no-backups")).to_be_visible()
        page.fill("#backup-passphrase", ARGS["backup_passphrase"])
        page.fill("#backup-now input[name=again]", "something else")
        page.click("#backup-now button")
        expect(page.locator("#problem")).to_have_text("the two passphrases differ")
        page.fill("#backup-now input[name=again]", ARGS["backup_passphrase"])
        page.click("#backup-now button")
        expect(page.locator("#backups tbody tr")).to_have_count(1)
        expect(page.locator("#backup-last")).to_contain_text("secrets sealed")
        seen["backup_last"] = page.inner_text("#backup-last")
        shot(page, "13-backups")
        with page.expect_download() as info:
            page.click("#backups a.download")
        download = info.value
        saved = os.path.join(tempfile.mkdtemp(), download.suggested_filename)
        download.save_as(saved)
        seen["backup_download"] = saved

        # Uninstall, with a confirmation that names what is deleted.
        page.goto(LOCKER + "/#/service/hello-rs")
        page.click("#uninstall")
        expect(page.locator("#confirm")).to_be_visible()
        seen["confirm"] = page.inner_text("#confirm")
        shot(page, "14-uninstall-confirm")
        page.click("#confirm-yes")
        page.wait_for_url(LOCKER + "/#/")
        expect(page.locator("#notice")).to_contain_text("hello-rs was uninstalled")
        expect(page.locator('#services tr[data-service="hello-rs"]')).to_have_count(0)
        shot(page, "15-uninstalled")

        # On a phone: the same list, stacked.
        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
        phone.add_cookies(context.cookies())
        small = phone.new_page()
        small.goto(LOCKER + "/")
        expect(small.locator('#services tr[data-service="notes"]')).to_be_visible()
        seen["phone_overflows"] = small.evaluate("document.documentElement.scrollWidth > window.innerWidth")
        shot(small, "16-phone")


main()
