"""The contacts services as the owner sees them, in headless Chromium
(Debian's), driven by Playwright. Run by `tests/together/contacts.rs`.

    python3 tests/browser/contacts.py '{"mode": "first"|"again", "locker": ..., "app": ..., "import": ..., "password": ..., "screenshots": ..., ...}'

- `first`: sets the owner's password with `setup_link`, uploads the file
  `vcf` on the vcard-import connector's page, then opens the address-book
  app, waits for `expect` people, searches for `query` and opens the first
  result.
- `again`: logs in with the password, reads the app's list, and follows
  its link to the carddav connector's page (`carddav`).

Prints one JSON object: what each step saw.
"""

import json
import os
import sys

from playwright.sync_api import sync_playwright

ARGS = json.loads(sys.argv[1])
LOCKER, APP, IMPORT = ARGS["locker"], ARGS["app"], ARGS["import"]
SHOTS = ARGS["screenshots"]
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, f"contacts-{name}.png"), full_page=True)


def log_in(page):
    if ARGS["mode"] == "first":
        page.goto(ARGS["setup_link"])
        page.fill("input[name=password]", ARGS["password"])
        page.fill("input[name=confirm]", ARGS["password"])
    else:
        page.goto(LOCKER + "/_locker/login")
        page.fill("input[name=password]", ARGS["password"])
    page.click("button")
    page.wait_for_url(LOCKER + "/")


def import_file(page, seen):
    page.goto(IMPORT + "/")
    page.wait_for_selector("input[type=file]")
    page.set_input_files("input[type=file]", ARGS["vcf"])
    page.click("button:has-text('Import')")
    page.wait_for_selector("#result:not(:empty)")
    seen["import_result"] = page.inner_text("#result")
    shot(page, "1-import")


def read_list(page, seen, expect):
    page.goto(APP + "/")
    page.wait_for_function(f"document.querySelectorAll('.person').length >= {expect}", timeout=20000)
    seen["listed"] = [e.inner_text() for e in page.query_selector_all(".person")]
    seen["count"] = page.inner_text("#count")
    seen["sources"] = [a.get_attribute("href") for a in page.query_selector_all("#sources a")]


def search(page, seen, query):
    page.fill("#search", query)
    page.wait_for_function("document.querySelectorAll('.person').length === 1", timeout=10000)
    seen["searched"] = [e.inner_text() for e in page.query_selector_all(".person")]
    shot(page, "3-search")
    page.click(".person")
    page.wait_for_selector("#detail:not(:empty)")
    page.wait_for_timeout(300)
    seen["detail"] = page.inner_text("#detail")
    shot(page, "4-detail")


def main():
    seen = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_context(viewport={"width": 1000, "height": 700}).new_page()
        page.on("console", lambda m: print("console:", m.text, file=sys.stderr))
        log_in(page)
        if ARGS["mode"] == "first":
            import_file(page, seen)
            read_list(page, seen, ARGS["expect"])
            shot(page, "2-list")
            search(page, seen, ARGS["query"])
        else:
            read_list(page, seen, ARGS["expect"])
            seen["title"] = page.title()
            shot(page, "5-after-changes")
            # On to a connector's page, by the app's own link: its origin
            # lets the owner in by the same ticket round.
            # (in a tab of its own).
            with page.context.expect_page() as opened:
                page.click("#sources a:has-text('carddav')")
            connector = opened.value
            connector.wait_for_url(ARGS["carddav"] + "/")
            connector.wait_for_selector("#contacts")
            seen["connector_page"] = connector.inner_text("body")
            seen["connector_title"] = connector.title()
            shot(connector, "6-carddav")
        browser.close()
    print(json.dumps(seen))


main()
