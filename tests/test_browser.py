"""End-to-end: the real server in headless Chromium, real clicks, keys and uploads."""

import gzip
import io
import re

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.browser


def _wait_idle(page):
    """Wait until Streamlit has finished the current script run."""
    page.wait_for_selector("[data-testid='stStatusWidget']", state="detached", timeout=60_000)


def test_demo_scan_is_shown_and_the_slider_moves_slices(page, streamlit_server):
    page.goto(streamlit_server)
    page.get_by_role("heading", name="Scan review").wait_for()
    caption = page.get_by_text(re.compile(r"Slice \d+ of 189"))
    caption.wait_for()
    before = caption.inner_text()
    image = page.locator("[data-testid='stImage'] img").first
    image.wait_for()
    box = image.bounding_box()
    assert box["width"] > 300 and box["height"] > 300

    n_before = int(re.search(r"Slice (\d+)", before).group(1))
    # The range input itself is visually hidden; a reader clicks the thumb, then uses the keyboard.
    thumb = page.locator("[data-testid='stSliderThumbValue']").locator("xpath=..")
    thumb.click()
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    # The caption under the image changes only after the server re-ran the page with the new slice.
    page.get_by_text(f"Slice {n_before + 5} of 189").wait_for()
    page.screenshot(path="/tmp/safegen_scan_review.png", full_page=True)


def _upload(page, name, data, mime="application/octet-stream"):
    page.get_by_text("Upload", exact=True).click()
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(
        files=[{"name": name, "mimeType": mime, "buffer": data}]
    )
    _wait_idle(page)


def test_a_corrupt_upload_gets_a_clear_message_not_a_traceback(page, streamlit_server):
    page.goto(streamlit_server)
    page.get_by_role("heading", name="Scan review").wait_for()
    truncated = gzip.compress(b"\x5c\x01" + b"\0" * 600)[:40]
    _upload(page, "broken.nii.gz", truncated)
    alert = page.get_by_text(re.compile("broken.nii.gz.*cannot be used"))
    alert.wait_for()
    assert "Traceback" not in page.content()


def test_an_uploaded_png_is_shown(page, streamlit_server):
    page.goto(streamlit_server)
    page.get_by_role("heading", name="Scan review").wait_for()
    pixels = (np.add.outer(np.arange(96), np.arange(80)) % 256).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    _upload(page, "gradient.png", buffer.getvalue(), "image/png")
    page.get_by_text(re.compile(r"gradient\.png.*96 x 80")).wait_for()
    page.get_by_text(re.compile(r"Slice 1 of 1")).wait_for()
