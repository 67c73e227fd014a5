"""Screenshots of a running dashboard, for the docs: after `make demo KEEP=1`,

    .venv/bin/python scripts/dashboard_screenshot.py            # reads the kept demo's URL and token
    .venv/bin/python scripts/dashboard_screenshot.py URL TOKEN

writes docs/dashboard.png (the host page, 1280 px wide), docs/dashboard-app.png (the demo app's
page with its history) and docs/dashboard-phone.png (the host page at 390 px), in Debian's
chromium driven by Playwright.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
KEPT = ROOT / ".watcher" / "demo"
DOCS = ROOT / "docs"


def kept_demo() -> tuple[str, str]:
    """The URL and token a `make demo KEEP=1` left in .watcher/demo/."""
    try:
        return (KEPT / "url").read_text().strip(), (KEPT / "token").read_text().strip()
    except FileNotFoundError:
        raise SystemExit("no kept demo: run `make demo KEEP=1` first, or pass URL and TOKEN") from None


def main(argv: list[str]) -> int:
    url, token = (argv[0].rstrip("/") + "/", argv[1]) if len(argv) == 2 else kept_demo()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        for name, width, page_path in (
            ("dashboard", 1280, ""),
            ("dashboard-app", 1280, "apps/demo"),
            ("dashboard-phone", 390, ""),
        ):
            page = browser.new_page(viewport={"width": width, "height": 900})
            page.goto(url + "login")
            page.fill("input[name=token]", token)
            page.click("button[type=submit]")
            page.goto(url + page_path)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(DOCS / f"{name}.png"), full_page=True)
            print(f"wrote docs/{name}.png")
            page.close()
        browser.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
