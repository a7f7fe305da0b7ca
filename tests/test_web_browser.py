"""The `g2face serve` page end to end in real Chromium (Debian's package, driven by Playwright):
drop a photo, anonymize, download, recover the download, download again, compare the files.

The tiny random model's faces are noise: the test checks the page's plumbing, not the model."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the web page needs the `web` extra: pip install -e '.[web]'")
pytest.importorskip("uvicorn", reason="the web page needs the `web` extra: pip install -e '.[web]'")
pytest.importorskip("playwright.sync_api", reason="playwright (the `dev` extra) is not installed")

from playwright.sync_api import sync_playwright

from g2face.io import read_image
from g2face.models.zoo import build_model, tiny_config
from g2face.pipeline.g2face import G2FacePipeline
from g2face.web import SharedPipelines, WebSettings, background_server, create_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
PASSWORD = "correct horse battery staple"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} not found: apt-get install chromium (Debian's package)"
)


@pytest.fixture
def browser():
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def drop_file(page, selector: str, path: Path, mime: str) -> None:
    """Drag-and-drop as a person does it: a `drop` event whose DataTransfer holds the file."""
    page.evaluate(
        """([selector, name, mime, data]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            document.querySelector(selector).dispatchEvent(
                new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
        }""",
        [selector, path.name, mime, base64.b64encode(path.read_bytes()).decode()],
    )


def run_and_download(page, action: str, target: Path) -> Path:
    page.click("#start")
    card = page.locator(f".card[data-action={action}]").first
    card.locator("xpath=self::*[@data-state='done' or @data-state='failed']").wait_for(timeout=120_000)
    assert card.get_attribute("data-state") == "done", card.locator(".status").inner_text()
    with page.expect_download() as download:
        card.locator("a.download").click()
    download.value.save_as(target)
    return target


def test_anonymize_download_recover_in_chromium(browser, fixtures_dir, tmp_path):
    temp_root = tmp_path / "server-temp"
    temp_root.mkdir()
    photo = fixtures_dir / "grace_hopper.jpg"
    original = read_image(photo).rgb
    app = create_app(
        WebSettings(temp_root=temp_root),
        SharedPipelines.of(G2FacePipeline(build_model(tiny_config())), "tiny random model"),
    )
    with background_server(app) as url:
        page = browser.new_page(accept_downloads=True, viewport={"width": 1200, "height": 1000})
        page.goto(url)
        page.fill("#password", PASSWORD)
        drop_file(page, "#drop", photo, "image/jpeg")
        assert "1 photo chosen: grace_hopper.jpg" in page.inner_text("#drop-text")
        anonymized = run_and_download(page, "anonymize", tmp_path / "anonymized.png")
        card = page.locator(".card[data-action=anonymize]").first
        assert card.locator(".status").inner_text() == "1 face anonymized"
        assert card.locator(".boxes rect").count() == 1
        box = [float(card.locator(".boxes rect").get_attribute(k)) for k in ("x", "y", "width", "height")]
        page.screenshot(path=str(tmp_path / "web_page_anonymize.png"), full_page=True)

        page.click("#tab-recover")
        page.set_input_files("#files", str(anonymized))
        recovered = run_and_download(page, "recover", tmp_path / "recovered.png")
        faces = page.locator(".card[data-action=recover] .faces li").all_inner_texts()
        assert faces == ["face 1: recovered exactly (original pixels from the file's recovery container)"]
        page.screenshot(path=str(tmp_path / "web_page_recover.png"), full_page=True)

    down = read_image(anonymized)
    assert down.block is not None  # the downloaded file carries its recovery container
    x0, y0 = int(box[0]), int(box[1])
    x1, y1 = int(box[0] + box[2]), int(box[1] + box[3])
    assert np.abs(down.rgb[y0:y1, x0:x1].astype(int) - original[y0:y1, x0:x1]).mean() > 5
    np.testing.assert_array_equal(read_image(recovered).rgb, original)
    assert list(temp_root.iterdir()) == []
