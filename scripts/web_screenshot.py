"""Screenshot of the `g2face serve` page for the README: anonymize a photo with a real model in
Debian's Chromium (Playwright) and save the page as PNG.

    python scripts/web_screenshot.py --model g2face-lite --out docs/images/web_page.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import sync_playwright

from g2face.web import SharedPipelines, WebSettings, background_server, create_app

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="g2face-lite", help="model name or weights file")
    parser.add_argument("--photo", type=Path, default=REPO / "tests/fixtures/grace_hopper.jpg")
    parser.add_argument("--out", type=Path, default=REPO / "docs/images/web_page.png")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()

    pipelines = SharedPipelines.from_pretrained(args.model)
    pipelines.load()
    with background_server(create_app(WebSettings(), pipelines)) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url)
        page.fill("#password", "correct horse battery staple")
        page.set_input_files("#files", str(args.photo))
        page.click("#start")
        page.locator(".card[data-state=done]").wait_for(timeout=300_000)
        page.locator(".card .after").evaluate("img => img.decode()")
        page.screenshot(path=str(args.out), full_page=True)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
