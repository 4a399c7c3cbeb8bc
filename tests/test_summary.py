"""The one-page scan summary (PNG / PDF): it renders what the result says, for 2-D and 3-D scans."""

import io

import numpy as np
import pytest
from PIL import Image

from core.summary import summary_page
from core.types import Modality, ScanResult, Volume, Window


def _result(heatmap: np.ndarray, slice_scores: np.ndarray, spacing) -> ScanResult:
    worst = int(np.nanargmax(slice_scores))
    return ScanResult("phantom", float(slice_scores[worst]), 0.0, float(slice_scores[worst]), 0.01, True, heatmap,
                      (heatmap > 5).astype(np.uint8), slice_scores, worst, 0.0, 5.0, {}, ["a warning"],
                      "residual", spacing)


def test_png_summary_of_a_2d_image_is_a_picture_and_pdf_is_a_pdf():
    image = np.zeros((64, 64), np.float32)
    image[16:48, 16:48] = 100.0
    heat = np.zeros_like(image)
    heat[20:30, 20:30] = 8.0
    volume = Volume(image, (1.0, 1.0), np.eye(4), Modality.OTHER, "phantom.png")
    result = _result(heat, np.array([8.0]), (1.0, 1.0))
    png = summary_page(result, volume, 5.0, 0, Window(50.0, 100.0, "Auto"))
    picture = Image.open(io.BytesIO(png))
    assert picture.format == "PNG" and picture.size == (909, 990)  # 8.27 x 9 inches at 110 dpi
    pdf = summary_page(result, volume, 5.0, 0, Window(50.0, 100.0, "Auto"), fmt="pdf")
    assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-64:]
    with pytest.raises(ValueError, match="png"):
        summary_page(result, volume, 5.0, 0, Window(50.0, 100.0), fmt="svg")


def test_summary_of_a_volume_draws_the_slice_and_its_overlay():
    image = np.zeros((40, 40, 3), np.float32)
    image[10:30, 10:30, :] = 100.0
    heat = np.zeros_like(image)
    heat[12:20, 12:20, 1] = 9.0  # an unsafe square on the middle slice
    volume = Volume(image, (1.0, 1.0, 2.0), np.eye(4), Modality.MR, "phantom.nii.gz")
    result = _result(heat, np.array([1.0, 9.0, 2.0]), (1.0, 1.0, 2.0))
    clean = np.asarray(Image.open(io.BytesIO(summary_page(result, volume, 5.0, 0, Window(50.0, 100.0)))))
    marked = np.asarray(Image.open(io.BytesIO(summary_page(result, volume, 5.0, 1, Window(50.0, 100.0)))))
    assert clean.shape == marked.shape
    # Slice 2 carries the coloured overlay and cyan outline; slice 1 has no colour above tau.
    def cyan(a):
        return int(np.sum((a[..., 0] < 40) & (a[..., 1] > 200) & (a[..., 2] > 200)))
    assert cyan(marked) > cyan(clean) + 20
