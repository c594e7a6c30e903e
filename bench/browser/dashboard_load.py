"""The dashboard's first load in headless Chromium (Debian's), on loopback:
from navigation start until the services table is drawn, and the bytes it
took (the page, its style and script, and the admin API answers it asked
for). The first load has an empty browser cache; the later ones revalidate.

    python3 bench/browser/dashboard_load.py LOGIN_LINK LOADS

Prints JSON: {"first": {"ms", "bytes", "requests"}, "again_ms": [...]}.
"""

import json
import sys

from playwright.sync_api import sync_playwright

LINK, LOADS = sys.argv[1], int(sys.argv[2])
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

MEASURE = """() => {
  const entries = [performance.getEntriesByType("navigation")[0], ...performance.getEntriesByType("resource")];
  return {
    ms: performance.now(),
    bytes: entries.reduce((sum, e) => sum + e.transferSize, 0),
    requests: entries.length,
  };
}"""

with sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
    page = browser.new_context().new_page()
    page.goto(LINK)  # logs in, then lands on the dashboard
    origin = page.url.split("/_locker")[0].rstrip("/")
    page.goto("about:blank")
    # The first load with an empty cache: a new context keeps the cookie only.
    cookies = page.context.cookies()
    fresh = browser.new_context()
    fresh.add_cookies(cookies)
    first_page = fresh.new_page()
    first_page.goto(origin + "/")
    first_page.wait_for_selector("#services")
    first = first_page.evaluate(MEASURE)
    again = []
    for _ in range(LOADS):
        first_page.goto(origin + "/?again")
        first_page.wait_for_selector("#services")
        again.append(first_page.evaluate(MEASURE)["ms"])
    browser.close()
print(json.dumps({"first": first, "again_ms": again}))
