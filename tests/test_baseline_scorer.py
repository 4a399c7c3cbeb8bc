"""A baseline behind SAFEGEN's scoring interface (``score --method NAME``), on real MNI152 slices with
a planted square (a known mask), from a small reference folder written here."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from core.baselines import method_choices
from core.baselines.scorer import BaselineScorer, fit_baseline
from core.types import Modality, Volume
from workflows.score_folder import score_folder
from tests.baseline_helpers import mid_brain_slices, planted, write_reference


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A reference folder of real MNI152 slices (even ones as ``train``, odd ones as ``calib``) and the calib slices."""
    fit, held = mid_brain_slices()
    return write_reference(tmp_path_factory.mktemp("reference"), fit, held), held


def picture(image: np.ndarray) -> Volume:
    """A 2-D picture (modality OT): normalised by its maximum, 1.0 here, so the model grid is the image itself."""
    return Volume(image, (1.0, 1.0), np.eye(4), Modality.OTHER, source="planted.png")


def test_a_pixel_baseline_scores_a_scan_as_in_the_comparison_and_masks_the_square(reference):
    folder, calib = reference
    scorer = BaselineScorer.fit("padim", folder)
    image, square = planted(calib[5])
    result = scorer.score_volume(picture(image))
    _, direct = scorer.calibrated(image[None])
    assert result.score == pytest.approx(float(direct[0]), abs=1e-4)  # same number as evaluate --methods
    assert result.method == "padim" and result.pixel_maps and result.reconstruction is None
    assert result.score_diffusion is None and result.alpha is None  # SAFEGEN's seed scorer only
    assert result.tau == pytest.approx(scorer.calibrated.tau) and result.flag
    assert result.mask.shape == image.shape
    assert result.mask[square].mean() > 0.75  # measured 0.84
    assert result.mask[~square].sum() < square.sum()  # the mask stays near the square
    clean = scorer.score_volume(picture(np.where(calib[5] > 0, calib[5] / calib[5].max(), 0.0)))
    assert clean.score < result.score


def test_an_image_level_baseline_never_draws_a_mask(reference):
    folder, calib = reference
    result = BaselineScorer.fit("mriqc_iqm", folder).score_volume(picture(planted(calib[5])[0]))
    assert not result.pixel_maps
    assert not result.heatmap.any() and not result.mask.any()
    assert not result.mask_at(-100.0).any()  # even a tau below every score marks no pixel
    assert any("whole images only" in w for w in result.warnings)


def test_a_fixed_tau_or_rate_overrides_the_baselines_own(reference):
    folder, _ = reference
    calibrated = fit_baseline("spectral_local", folder)
    assert BaselineScorer(calibrated, tau=3.5).tau == 3.5
    assert BaselineScorer(calibrated).tau == pytest.approx(calibrated.tau)
    loose = BaselineScorer(calibrated, false_alarm_rate=0.5).tau
    assert loose <= calibrated.tau
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        fit_baseline("nope", folder)


def test_score_folder_runs_a_baseline_and_refuses_safegen_only_options(reference, tmp_path, capsys):
    folder, calib = reference
    inputs = tmp_path / "in"
    inputs.mkdir()
    image, _ = planted(calib[5])
    Image.fromarray((image * 65535).astype(np.uint16)).save(inputs / "planted.png")
    assert score_folder(inputs, tmp_path / "out", method="padim", reference_dir=folder) == 0
    with (tmp_path / "out" / "scores.csv").open() as stream:
        row = next(csv.DictReader(stream))
    assert row["method"] == "padim" and row["flag"] == "1" and row["alpha"] == "" and row["score_diffusion"] == ""
    assert float(row["unsafe_area_mm2"]) > 100  # most of the 144 mm^2 square
    assert score_folder(inputs, tmp_path / "out2", method="padim", explainer="gradcam", reference_dir=folder) == 2
    assert "apply to SAFEGEN's score" in capsys.readouterr().err
    assert not (tmp_path / "out2").exists()  # refused before anything was written
    assert score_folder(inputs, tmp_path / "out3", method="nope") == 2
    assert method_choices()[0] == "safegen" and "padim" in method_choices()


def test_batch_screening_with_a_baseline_uses_its_tau_and_calibration_scores(reference):
    from workflows.screening import screen

    folder, calib = reference
    scorer = BaselineScorer.fit("mriqc_iqm", folder)
    image, _ = planted(calib[5])
    screening = screen([("planted.png", lambda: picture(image)), ("bad.png", lambda: 1 / 0)], scorer)
    assert screening.method == "mriqc_iqm" and screening.tau == pytest.approx(scorer.tau)
    assert len(screening.reference) == len(calib)  # the 12 calib slices it was calibrated on
    assert screening.table["error"].tolist() == ["", "ZeroDivisionError: division by zero"]
    assert screening.thumbnails["planted.png"].shape[2] == 3  # a grey thumbnail: no heatmap to overlay
