"""The owner looks at a locker served by three hosts, on one host's
dashboard, in headless Chromium (Debian's) driven by Playwright. Run by
`tests/together/cluster.rs`, which starts three NATS servers and three
hosts and gives a one-time login link to one of them.

    python3 tests/browser/cluster.py '{"login_link": ..., "hosts": [...], "owner": ..., "screenshots": ...}'

It prints what it saw as JSON, and saves target/screenshots/cluster-*.png.
"""

import json
import os
import sys

from playwright.sync_api import expect, sync_playwright

ARGS = json.loads(sys.argv[1])
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
expect.set_options(timeout=20_000)

problems = []
with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
    page = browser.new_context(viewport={"width": 1100, "height": 800}).new_page()
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    # The login link logs this browser in, and lands on the dashboard.
    page.goto(ARGS["login_link"])
    expect(page.locator("#services")).to_be_visible()
    section = page.locator("#cluster")
    expect(section).to_be_visible()
    rows = section.locator("#hosts tbody tr")
    expect(rows).to_have_count(len(ARGS["hosts"]))
    for host in ARGS["hosts"]:
        expect(section.locator(f'tr[data-host="{host}"]')).to_be_visible()
    # The host that owns notes says so.
    expect(section.locator(f'tr[data-host="{ARGS["owner"]}"] td[data-label="Serves"]')).to_contain_text("notes")
    expect(section).to_contain_text("connected")
    page.screenshot(path=os.path.join(ARGS["screenshots"], "cluster-hosts.png"), full_page=True)
    seen = {
        "hosts": rows.count(),
        "text": section.inner_text(),
        "problems": problems,
    }
    browser.close()
print(json.dumps(seen))
