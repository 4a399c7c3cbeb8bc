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


def test_demo_scan_is_shown_and_the_slider_moves_slices(page, streamlit_server, artifacts_dir):
    page.goto(streamlit_server)
    page.get_by_role("heading", name="Scan review").wait_for()
    # The first visit to a demo scores it (about 30 s for MNI152's 120 brain slices on 2 cores).
    page.get_by_text("Score (worst slice)").wait_for(timeout=120_000)
    caption = page.get_by_text(re.compile(r"Slice \d+ of 189"))
    caption.wait_for()
    before = caption.inner_text()
    image = page.locator("[data-testid='stImage'] img").first
    image.wait_for()
    box = image.bounding_box()
    assert box["width"] > 300 and box["height"] > 300

    n_before = int(re.search(r"Slice (\d+)", before).group(1))
    # A reader focuses the slider thumb (tab or click), then uses the arrow keys.
    thumb = page.get_by_role("slider", name="Axial slice")
    # The caption under the image changes only after the server re-ran the page with the new slice;
    # one key at a time, focusing the thumb again each time: the rerun redraws the slider and the
    # focus falls back to the page (measured in Chromium with Streamlit 1.67).
    for step in range(1, 6):
        thumb.focus()
        page.keyboard.press("ArrowRight")
        page.get_by_text(f"Slice {n_before + step} of 189").wait_for()
    page.screenshot(path=str(artifacts_dir / "scan_review.png"), full_page=True)


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
    page.get_by_text(re.compile(r"gradient\.png.*96 x 80 voxels · 1 x 1 mm")).wait_for()
    page.get_by_text(re.compile(r"Slice 1 of 1")).wait_for()
    # a picture states no pixel size: the reader can give it, and the scan is read (and scored) at it
    size = page.get_by_label("Pixel size of images that state none (mm)", exact=True)
    size.fill("1.8")
    size.press("Enter")
    page.get_by_text(re.compile(r"gradient\.png.*96 x 80 voxels · 1\.8 x 1\.8 mm")).wait_for()
    # (said where the scan is described, and again among the score's notes once it is scored)
    page.get_by_text("gradient.png states no pixel size: read at 1.8 mm per pixel, as asked").first.wait_for()


def test_tau_slider_redraws_the_mask_and_the_mask_downloads(page, streamlit_server, tmp_path, artifacts_dir):
    """A reader lowers tau with the keyboard: the verdict and mask follow; the NIfTI mask downloads."""
    import nibabel as nib

    page.goto(streamlit_server)
    page.get_by_role("heading", name="Scan review").wait_for()
    page.locator("[data-testid='stSelectbox']").filter(has_text="Demo scan").click()
    page.get_by_role("option", name=re.compile("CT slice — pydicom test file")).click()
    # Wait for this scan's own page: the previous demo's metrics are on screen until the rerun ends.
    page.get_by_text(re.compile(r"CT_small\.dcm · CT")).wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"Slice 1 of 1")).wait_for(timeout=60_000)
    _wait_idle(page)
    tau = page.get_by_role("slider", name="Tolerance τ (z units)")
    before = float(tau.get_attribute("aria-valuetext") or "nan")
    caption = page.get_by_text(re.compile(r"Unsafe mask at τ = 0\.00 \((\d+) px, \d+ region"))
    for _ in range(3):  # a key press can land while the slider is being re-mounted by a rerun: retry
        tau.focus()
        page.keyboard.press("Home")  # tau = 0: every scored pixel above 0 is unsafe
        _wait_idle(page)
        try:
            caption.wait_for(timeout=10_000)
            break
        except Exception:
            continue
    # CT_small is a spine slice 85 mm across: "Out of domain: no verdict", with the slices above tau said
    page.get_by_text(re.compile(r"Out of domain: no verdict.*above τ = 0\.00")).wait_for()
    n_pixels = int(re.search(r"\((\d+) px,", caption.inner_text()).group(1))
    assert n_pixels > 0 and before > 0
    from playwright.sync_api import expect

    # The label names tau, so a button left over from the previous run (another tau) cannot match.
    button = page.get_by_role("button", name="Download the mask at τ = 0.00 (NIfTI)")
    expect(button).to_have_count(1, timeout=30_000)
    with page.expect_download() as download_info:
        button.click()
    target = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(target)
    mask = nib.load(str(target))
    assert target.name.endswith("_tau0.00.nii.gz") and mask.shape == (128, 128)
    assert set(np.unique(np.asarray(mask.dataobj)).tolist()) <= {0, 1}
    assert int(np.asarray(mask.dataobj).sum()) == n_pixels  # the file holds the mask on screen
    with page.expect_download() as summary_info:
        page.get_by_role("button", name="Summary (PDF)").click()
    summary = tmp_path / summary_info.value.suggested_filename
    summary_info.value.save_as(summary)
    assert summary.name.endswith("_tau0.00.pdf") and summary.read_bytes().startswith(b"%PDF-")
    page.screenshot(path=str(artifacts_dir / "tau_mask.png"), full_page=True)


def test_clicking_the_slice_score_plot_jumps_to_that_slice(page, streamlit_server):
    page.goto(streamlit_server)
    page.get_by_text("Score (worst slice)").wait_for(timeout=120_000)
    _wait_idle(page)
    slider = page.get_by_role("slider", name="Axial slice")
    worst = int(slider.get_attribute("aria-valuetext"))
    page.get_by_text(f"Slice {worst} of 189").wait_for()
    points = page.locator(".js-plotly-plot .scatterlayer .point")
    points.nth(100).wait_for()
    assert points.count() == 120  # one marker per scored slice (the 69 tissue-poor slices have none)
    points.nth(60).click(force=True)  # the 61st scored slice
    caption = page.get_by_text(re.compile(r"Slice \d+ of 189"))
    page.wait_for_function(
        "w => !document.body.innerText.includes(`Slice ${w} of 189`)", arg=worst, timeout=30_000
    )
    _wait_idle(page)
    shown = int(re.search(r"Slice (\d+)", caption.inner_text()).group(1))
    assert shown != worst and slider.get_attribute("aria-valuetext") == str(shown)


def test_batch_screening_of_uploaded_files_exports_a_ranked_csv(page, streamlit_server, tmp_path, artifacts_dir):
    import csv

    from core.artifacts import simulate
    from core.profiles import KNOWN_SUBJECTS
    from core.reference import subject_slices

    slices = subject_slices(KNOWN_SUBJECTS[0]).images
    checker = simulate(slices[len(slices) // 2], "checkerboard", 3, np.random.default_rng(7)).image  # flagged: 0.999
    buffer = io.BytesIO()
    Image.fromarray(np.round(checker * 65535).astype(np.uint16)).save(buffer, format="PNG")
    page.goto(streamlit_server)
    page.get_by_role("heading", name="Scan review").wait_for()
    page.get_by_role("link", name=re.compile("Batch screening")).click()
    page.get_by_role("heading", name="Batch screening").wait_for()
    page.get_by_text("Upload files", exact=True).click()  # the page opens on the generated demo set
    page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(files=[
        {"name": "checkerboard.png", "mimeType": "image/png", "buffer": buffer.getvalue()},
        {"name": "broken.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\n not really"},
    ])
    _wait_idle(page)
    page.get_by_role("button", name="Score 2 file(s)").click()
    page.get_by_text("Worst cases").wait_for(timeout=60_000)
    # the batch runs in the background: its figures show from the first file on, so wait until it is done
    page.get_by_text(re.compile("^Running: ")).wait_for(state="detached", timeout=60_000)
    _wait_idle(page)
    with page.expect_download() as download_info:
        page.get_by_role("button", name=re.compile("Download the table")).click()
    target = tmp_path / "screening.csv"
    download_info.value.save_as(target)
    rows = list(csv.DictReader(target.open()))
    assert [r["file"] for r in rows] == ["checkerboard.png", "broken.png"]
    assert rows[0]["flag"] == "True" and rows[1]["error"] and not rows[1]["score"]
    page.screenshot(path=str(artifacts_dir / "batch.png"), full_page=True)
    # ... and the uploads' generator report card: one readable image, no copy, flagged; the broken file is left out
    page.get_by_text("Generator report card").click()
    page.get_by_role("button", name="Make the report card").click()
    images = page.get_by_test_id("stMetric").filter(has_text="Images")
    images.wait_for(timeout=120_000)  # the copy threshold's calibration runs once per server
    metrics = {m.get_by_test_id("stMetricLabel").inner_text(): m.get_by_test_id("stMetricValue").inner_text()
               for m in page.get_by_test_id("stMetric").all()}
    assert (metrics["Images"], metrics["Likely copies"], metrics["Flagged for artifacts"]) == ("1", "0", "1"), metrics


def _niivue_tile(canvas, box: tuple[float, float, float, float]) -> np.ndarray:
    """Grey pixels of the part ``box`` (left, top, right, bottom as fractions) of NiiVue's canvas."""
    shot = np.asarray(Image.open(io.BytesIO(canvas.screenshot())).convert("L"), dtype=np.float32)
    h, w = shot.shape
    left, top, right, bottom = box
    return shot[int(top * h):int(bottom * h), int(left * w):int(right * w)]


def _niivue_settled(page, canvas, box) -> np.ndarray:
    """The tile once the page's reruns (the crosshair reports) are over and two screenshots agree."""
    from tests.browser_helpers import settled

    settled(page)
    last = _niivue_tile(canvas, box)
    for _ in range(20):
        page.wait_for_timeout(500)
        now = _niivue_tile(canvas, box)
        if np.array_equal(now, last):
            return now
        last = now
    raise AssertionError("NiiVue's picture did not settle")


def test_niivue_viewer_scrolls_zooms_and_drags_the_window(page, streamlit_server, artifacts_dir):
    """The NiiVue viewer on a demo volume, driven as in OHIF / 3D Slicer: the mouse wheel over the axial
    view moves the slice (and the page follows the crosshair), the viewer's Zoom mode with a right-drag
    zooms in, and a right-drag sets the window."""
    from scipy import ndimage

    page.goto(streamlit_server)
    page.get_by_text("Score (worst slice)").wait_for(timeout=300_000)
    _wait_idle(page)
    page.get_by_text("NiiVue (scroll, drag window/level, zoom)").click()
    frame = page.frame_locator("iframe[title*='niivue']")
    frame.get_by_text("matrix size: 197 x 233 x 189").wait_for(timeout=120_000)  # the volume has loaded
    canvas = frame.locator("canvas")
    # NiiVue opens at the centre voxel (98, 116, 94): the page says so before any report from the viewer
    caption = page.get_by_text(re.compile(r"Crosshair on axial slice \d+ of 189"))
    assert "Crosshair on axial slice 95 of 189" in caption.inner_text()
    # Multiplanar layout of a 197 x 233 x 189 volume: coronal and sagittal on top, axial bottom left.
    axial = (0.02, 0.50, 0.45, 0.95)
    start = _niivue_settled(page, canvas, axial)
    # a brain is drawn, not a blank canvas: headless Chromium renders WebGL in software (SwiftShader)
    # under the browser fixture's flags, --disable-gpu included; no WebGL flag is needed
    assert start.std() > 20
    page.screenshot(path=str(artifacts_dir / "niivue.png"))
    box = canvas.bounding_box()
    x, y = box["x"] + 0.23 * box["width"], box["y"] + 0.73 * box["height"]

    # (a) the wheel over the axial view scrolls slices; the page's crosshair caption follows
    page.mouse.move(x, y)
    for _ in range(5):
        page.mouse.wheel(0, -100)
        page.wait_for_timeout(150)
    page.wait_for_function("() => !document.body.innerText.includes('Crosshair on axial slice 95 of 189')")
    scrolled = _niivue_settled(page, canvas, axial)
    assert np.abs(scrolled - start).mean() > 2
    assert re.search(r"slice (\d+)", caption.inner_text()).group(1) != "95"

    # (b) Zoom mode (the viewer's menu), then a right-drag downwards: the brain fills more of the view
    zoom = frame.get_by_role("button", name="Zoom", exact=True)
    zoom.click()
    page.mouse.move(x, y)
    page.mouse.down(button="right")
    page.mouse.move(x, y + 80, steps=8)
    page.mouse.up(button="right")
    zoomed = _niivue_settled(page, canvas, axial)
    assert (zoomed > 10).mean() > (scrolled > 10).mean() + 0.2
    zoom.click()  # back to window/level

    # (c) a right-drag sets the window to the intensities in the dragged box (NiiVue's contrast mode):
    # a small box in the brightest uniform tissue (white matter) narrows the window to it, so grey
    # matter goes dark and the view's mean brightness drops
    local_mean = ndimage.uniform_filter(zoomed, 15)
    local_spread = ndimage.uniform_filter(zoomed**2, 15) - local_mean**2
    row, col = np.unravel_index(np.argmax(np.where(local_spread < 100, local_mean, 0)), zoomed.shape)
    bx, by = box["x"] + axial[0] * box["width"] + col, box["y"] + axial[1] * box["height"] + row
    page.mouse.move(bx - 5, by - 5)
    page.mouse.down(button="right")
    page.mouse.move(bx + 5, by + 5, steps=5)
    page.mouse.up(button="right")
    windowed = _niivue_settled(page, canvas, axial)
    assert windowed.mean() < zoomed.mean() - 10 and np.abs(windowed - zoomed).mean() > 10
    page.screenshot(path=str(artifacts_dir / "niivue_zoomed_windowed.png"))
