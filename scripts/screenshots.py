"""Take the README's dashboard screenshots from a running server (`make run` first).

    .venv/bin/python scripts/screenshots.py [URL]   # default http://127.0.0.1:8501

Writes docs/scan_review.png (the MNI152 demo on its worst slice), docs/scan_review_tau.png
(the CT demo with tau lowered to 0), docs/evaluation*.png (the Evaluation page on out/evaluation),
docs/head_ct_planes.png (the head-CT volume under its own profile, with the coronal and sagittal
views) and docs/batch_generated.png (Batch screening of the generated demo set). Uses Debian's
Chromium, as the browser tests do.
"""

import re
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

URL = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8501"
DOCS = Path(__file__).resolve().parent.parent / "docs"


def idle(page):
    page.wait_for_selector("[data-testid='stStatusWidget']", state="detached", timeout=120_000)


with sync_playwright() as p:
    browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    page.set_default_timeout(120_000)
    page.goto(URL)
    page.get_by_text("Score (worst slice)").wait_for()
    idle(page)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(DOCS / "scan_review.png"))
    page.set_viewport_size({"width": 1400, "height": 1000})
    page.locator("[data-testid='stSelectbox']").filter(has_text="Demo scan").click()
    page.get_by_role("option", name=re.compile("CT slice — pydicom test file")).click()
    page.get_by_text(re.compile(r"CT_small\.dcm · CT")).wait_for()
    idle(page)
    caption = page.get_by_text(re.compile(r"Unsafe mask at τ = 0\.00"))
    for _ in range(5):  # a key press can land while a rerun re-mounts the slider: retry
        page.get_by_role("slider", name="Tolerance τ (z units)").focus()
        page.keyboard.press("Home")
        idle(page)
        try:
            caption.wait_for(timeout=5_000)
            break
        except Exception:
            continue
    idle(page)
    page.get_by_text("Download the mask").first.scroll_into_view_if_needed()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(DOCS / "scan_review_tau.png"))
    # The Evaluation page on the full run in out/evaluation (`make evaluate` first).
    page.set_viewport_size({"width": 1400, "height": 1250})
    page.get_by_role("link", name="Evaluation").click()
    page.get_by_text("Image AUROC (combined)").wait_for()
    idle(page)
    page.wait_for_timeout(2500)
    page.screenshot(path=str(DOCS / "evaluation.png"))
    page.get_by_role("tab", name="Localisation (explainers)").click()
    page.wait_for_timeout(2500)
    page.screenshot(path=str(DOCS / "evaluation_explainers.png"))
    # The head-CT volume, scored by the head-CT profile (Auto), with the coronal and sagittal views.
    page.set_viewport_size({"width": 1400, "height": 1900})
    page.get_by_role("link", name="Scan review").click()
    page.locator("[data-testid='stSelectbox']").filter(has_text="Demo scan").click()
    page.get_by_role("option", name=re.compile("Head CT — InVesalius")).click()
    page.get_by_text(re.compile(r"Cranium\.inv3 · CT")).wait_for()
    page.get_by_text("Score (worst slice)").wait_for()
    idle(page)
    page.get_by_text("Coronal and sagittal views").click()
    page.get_by_text(re.compile(r"^Coronal \d+ of")).wait_for()
    idle(page)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(DOCS / "head_ct_planes.png"))
    # Batch screening of the generated demo set, with the per-group summary.
    page.set_viewport_size({"width": 1400, "height": 1700})
    page.get_by_role("link", name="Batch screening").click()
    page.get_by_role("button", name=re.compile(r"Score 56 file")).click()
    page.get_by_text("By group (manifest.csv)").wait_for(timeout=300_000)
    idle(page)
    page.wait_for_timeout(2000)
    page.screenshot(path=str(DOCS / "batch_generated.png"))
    browser.close()
print(f"wrote scan_review.png, scan_review_tau.png, evaluation.png, evaluation_explainers.png, head_ct_planes.png "
      f"and batch_generated.png in {DOCS}")
