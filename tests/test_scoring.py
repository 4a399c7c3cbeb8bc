"""The SAFEGEN score: combination and calibration known answers, then the committed brain-MRI models."""

import numpy as np
import pytest
import torch

from core.artifacts import simulate
from core.calibration import RobustScale
from core.detectors.autoencoder import AutoencoderDetector, build_autoencoder
from core.detectors.diffusion import DiffusionDetector, build_diffusion_unet
from core.metrics import auroc_standard_error, dice
from core.profiles import KNOWN_SUBJECTS
from core.reference import subject_slices
from core.scoring import (
    ALPHA_GRID,
    Calibration,
    Scorer,
    combine,
    fit_calibration,
    snap_alpha,
)
from core.types import Modality, Volume
from tests.test_autoencoder import TINY as TINY_AE
from tests.test_autoencoder import phantoms, plant_blob
from tests.test_diffusion import TINY as TINY_DIFFUSION


def test_snap_alpha_and_combine_known_answers():
    assert snap_alpha(0.52) == 0.5 and snap_alpha(0.0) == 0.0 and snap_alpha(1.0) == 1.0
    assert snap_alpha(0.124) == 0.1 and snap_alpha(0.126) == 0.15
    with pytest.raises(ValueError):
        snap_alpha(1.2)
    d, a = np.array([2.0, 4.0]), np.array([0.0, -4.0])
    assert combine(d, a, 0.25).tolist() == [0.5, -2.0]
    assert combine(d, a, 1.0).tolist() == d.tolist() and combine(d, a, 0.0).tolist() == a.tolist()


def toy_calibration(n: int = 99) -> Calibration:
    """Calibration scores 1..99 at every alpha, so tau at 5 % is 95 (see test_calibration)."""
    scores = np.tile(np.arange(1.0, n + 1), (len(ALPHA_GRID), 1))
    scales = {k: RobustScale(0.0, 1.0) for k in ("diffusion", "diffusion_nll", "autoencoder")}
    return Calibration(scales, scores, scores[0], alpha=0.4, metadata={"note": "toy"})


def test_calibration_round_trips_and_gives_the_conformal_tau(tmp_path):
    calibration = toy_calibration()
    assert calibration.tau(0.4) == 95.0 and calibration.tau(0.4, 0.2) == 80.0
    calibration.save(tmp_path / "calibration.json")
    loaded = Calibration.load(tmp_path / "calibration.json")
    assert loaded.alpha == 0.4 and loaded.metadata == {"note": "toy"}
    np.testing.assert_allclose(loaded.calib_scores, calibration.calib_scores)
    assert loaded.scales["autoencoder"] == RobustScale(0.0, 1.0)


def tiny_detectors() -> tuple[DiffusionDetector, AutoencoderDetector]:
    torch.manual_seed(0)
    return (DiffusionDetector(build_diffusion_unet(TINY_DIFFUSION), TINY_DIFFUSION),
            AutoencoderDetector(build_autoencoder(TINY_AE), TINY_AE))


def test_fit_calibration_fits_scales_on_tissue_and_picks_the_smallest_alpha_within_one_se_of_the_best():
    diffusion, autoencoder = tiny_detectors()
    calib = phantoms(12, seed=3)
    clean, blob = phantoms(4, seed=4), plant_blob(phantoms(4, seed=4))[0]
    val_images, val_labels = np.concatenate([clean, blob]), np.array([0] * 4 + [1] * 4)
    calibration = fit_calibration(diffusion, autoencoder, calib, val_images, val_labels, batch_size=5)
    assert calibration.calib_scores.shape == (len(ALPHA_GRID), 12) and calibration.nll_calib_scores.shape == (12,)
    assert set(calibration.scales) == {"diffusion", "diffusion_nll", "autoencoder"}
    aurocs = calibration.metadata["val_auroc_per_alpha"]
    se = auroc_standard_error(max(aurocs.values()), 4, 4)
    within = [float(a) for a, v in aurocs.items() if v >= max(aurocs.values()) - se - 1e-4]
    assert calibration.alpha == min(within)  # the cheapest alpha whose AUROC is not worse beyond noise
    assert calibration.metadata["val_artifacts"] == 4 and calibration.metadata["calib_images"] == 12
    # The scales are the median / MAD of the raw calibration maps on tissue: tissue z-maps centre on 0.
    scorer = Scorer(diffusion, autoencoder, calibration, alpha=0.5)
    maps = scorer.calibrated_maps(calib[:, None])
    tissue = calib > 0.05
    assert np.median(maps.autoencoder[tissue]) == pytest.approx(0.0, abs=1e-3)
    assert np.median(maps.diffusion[tissue]) == pytest.approx(0.0, abs=1e-3)
    # tau is the conformal threshold of the stored scores at 5 %: with 12 slices, ceil(13 * 0.95) = 13 > 12,
    # so it is capped at the largest calibration score (alpha 0.5 is row 10 of the grid).
    assert scorer.tau == calibration.calib_scores[10].max()


def test_missing_models_name_the_command_that_makes_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="train diffusion"):
        Scorer.load(tmp_path / "d.pt", tmp_path / "a.pt", tmp_path / "c.json")


# ---------------------------------------------------------------------------------------------
# The committed brain-MRI T1 models (models/): real slices, simulated artifacts.
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    return Scorer.load()


@pytest.fixture(scope="module")
def mni_slice() -> np.ndarray:
    """A mid-brain axial slice of the MNI152 template on the 128x128 model grid, in [0, 1]."""
    slices = subject_slices(KNOWN_SUBJECTS[0])
    return slices.images[len(slices.images) // 2]


def picture(image: np.ndarray) -> Volume:
    return Volume(image.astype(np.float32), (1.0, 1.0), np.eye(4), Modality.OTHER)


# Measured with the committed models (see the issue-4 note): at severity 3 a dropout, a lesion, a bias
# spot and ghosting raise the score of the very same slice and the heatmap peaks on the artifact;
# only the dropout and ghosting cross the 5 % tau on this slice. Checkerboards, noise patches, blur,
# ringing and duplication are NOT detected by these models yet, so they are not asserted here.
@pytest.mark.parametrize("kind", ["dropout", "lesion", "bias_spot", "ghosting"])
def test_a_simulated_artifact_scores_higher_than_its_clean_twin(scorer, mni_slice, kind):
    corrupted = simulate(mni_slice, kind, 3, np.random.default_rng(7))
    clean_result = scorer.score_volume(picture(mni_slice))
    bad_result = scorer.score_volume(picture(corrupted.image))
    assert bad_result.score > clean_result.score + 0.5  # robust-z units
    assert bad_result.p_value <= clean_result.p_value
    assert corrupted.mask[np.unravel_index(np.argmax(bad_result.heatmap), (128, 128))]  # the peak is on it
    assert not clean_result.flag and clean_result.mask.sum() == 0  # an unflagged slice has an empty mask
    assert bad_result.heatmap.shape == (128, 128) and bad_result.mask.dtype == np.uint8


def test_a_severe_dropout_is_flagged_and_masked(scorer, mni_slice):
    corrupted = simulate(mni_slice, "dropout", 3, np.random.default_rng(7))
    result = scorer.score_volume(picture(corrupted.image))
    assert result.flag and result.score > scorer.tau
    assert dice(result.mask.astype(bool), corrupted.mask) > 0.3
    assert result.mask[corrupted.mask].mean() > 5 * result.mask[~corrupted.mask].mean()


def test_a_real_volume_is_scored_slice_by_slice_in_its_own_layout(scorer):
    from dataclasses import replace

    from core.io import load_volume

    volume = load_volume(KNOWN_SUBJECTS[0].path, modality=Modality.MR)
    middle = volume.array.shape[2] // 2
    block = replace(volume, array=volume.array[:, :, middle - 2 : middle + 2].copy())
    result = scorer.score_volume(block)
    assert result.heatmap.shape == block.array.shape and result.mask.shape == block.array.shape
    assert result.slice_scores.shape == (4,) and np.all(np.isfinite(result.slice_scores))
    assert result.score == pytest.approx(np.nanmax(result.slice_scores))
    assert not result.flag  # real normal anatomy (a reference subject) stays under tau
    assert {"prepare", "diffusion", "autoencoder", "map_back", "total"} <= set(result.seconds)


def test_mask_at_another_tau_needs_no_model():
    from core.types import ScanResult

    heat = np.zeros((4, 4, 3), np.float32)
    heat[1, 1, 0], heat[2, 2, 1], heat[0, 0, 2] = 6.0, 3.0, 9.0
    result = ScanResult("x", 9.0, 0.0, 9.0, 0.01, True, heat, (heat > 5).astype(np.uint8),
                        np.array([6.0, 3.0, np.nan]), 2, 0.0, 5.0, {})
    assert result.flags_at(5.0).tolist() == [True, False, False]  # the NaN (unscored) slice never flags
    assert result.mask_at(5.0).sum() == 1 and result.mask_at(5.0)[1, 1, 0] == 1
    assert result.mask_at(2.0).sum() == 2 and result.mask_at(2.0)[2, 2, 1] == 1
    assert result.mask_at(7.0).sum() == 0  # no slice scores above 7
    assert result.mask_at(5.0).dtype == np.uint8 and result.flagged_slices.tolist() == [0]


@pytest.mark.parametrize("name", ["saliency", "shap"])
def test_an_explainer_replaces_heatmap_and_mask_but_not_the_scores(scorer, mni_slice, name):
    from core.explain import Explainer

    corrupted = simulate(mni_slice, "dropout", 3, np.random.default_rng(7))
    volume = picture(corrupted.image)
    explainer = Explainer.load(scorer, name, shap_samples=100)
    plain = scorer.score_volume(volume)
    explained = scorer.score_volume(volume, explainer=explainer)
    assert explained.explainer == name and plain.explainer == "residual"
    assert explained.score == plain.score and explained.flag and explained.tau == plain.tau
    assert not np.allclose(explained.heatmap, plain.heatmap)
    # The explainer's map points at the dropout too, and its tau mask overlaps it.
    assert corrupted.mask[np.unravel_index(np.argmax(explained.heatmap), (128, 128))]
    assert dice(explained.mask.astype(bool), corrupted.mask) > 0.1
    # Re-explaining a stored result gives the same maps without running the detectors.
    again = scorer.explain(volume, plain, explainer)
    np.testing.assert_allclose(again.heatmap, explained.heatmap, atol=1e-5)
    assert np.array_equal(again.mask, explained.mask) and again.score == plain.score
    summary = again.summary_at()
    assert summary.total_mm2 == again.mask.sum() and summary.n_regions >= 1


def test_the_result_carries_the_autoencoders_reconstruction_in_the_scans_layout(scorer, mni_slice):
    import torch

    result = scorer.score_volume(picture(mni_slice))  # a 128x128 picture: the model grid itself
    expected = scorer.autoencoder.reconstruct(torch.from_numpy(mni_slice[None, None].copy()))[0, 0].numpy()
    assert result.reconstruction.shape == mni_slice.shape
    np.testing.assert_allclose(result.reconstruction, expected, atol=1e-5)
