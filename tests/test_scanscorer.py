"""One way to score a scan: every scorer is a ScanScorer, and one function builds every ScanResult."""

import time

import numpy as np
import pytest

from core.baselines.base import calibrate
from core.baselines.scorer import BaselineScorer
from core.baselines.spectral import LocalSpectralBaseline
from core.head_scoring import HeadCalibration, HeadScorer
from core.scoring import Scorer
from core.types import SAFEGEN_METHOD, Modality, ScanResult, ScanScorer, Volume, result_from_slice_maps
from tests.test_head import tiny_head
from tests.test_scoring import tiny_detectors, toy_calibration


def tiny_baseline() -> BaselineScorer:
    rng = np.random.default_rng(0)
    train, calib = rng.uniform(size=(8, 128, 128)), rng.uniform(size=(20, 128, 128))
    return BaselineScorer(calibrate(LocalSpectralBaseline().fit(train), calib))


SCORERS = {
    "seed": lambda: Scorer(*tiny_detectors(), toy_calibration()),
    "head": lambda: HeadScorer(tiny_head(), None, HeadCalibration(np.linspace(0.0, 1.0, 99))),
    "baseline": tiny_baseline,
}


@pytest.mark.parametrize("kind", sorted(SCORERS))
def test_every_scorer_is_a_scan_scorer_and_names_its_results(kind):
    scorer = SCORERS[kind]()
    assert isinstance(scorer, ScanScorer)
    image = np.zeros((128, 128), np.float32)
    image[32:96, 32:96] = np.random.default_rng(1).uniform(0.3, 1.0, size=(64, 64))
    volume = Volume(image, (1.0, 1.0), np.eye(4), Modality.OTHER)
    assert scorer.slices_to_score(volume).tolist() == [True]
    result = scorer.score_volume(volume)
    assert isinstance(result, ScanResult) and result.method == scorer.name
    assert result.tau == pytest.approx(scorer.tau) and len(scorer.calibration_scores) > 0
    assert result.heatmap.shape == result.mask.shape == image.shape
    # only SAFEGEN's seed scorer has the component scores and alpha; the others leave them out
    assert (result.alpha is not None) == (kind == "seed") and (result.score_diffusion is not None) == (kind == "seed")
    assert (scorer.name == SAFEGEN_METHOD) == (kind != "baseline")


def toy_scan() -> tuple[Volume, np.ndarray, np.ndarray]:
    """Three 64 x 64 display slices: a 3 x 3 block at 5.0 and a lone speck at 9.0 on slice 0, the
    same block on slice 1; slice scores 3.0, 1.0 and unscored."""
    maps = np.zeros((3, 64, 64), np.float32)
    maps[0, 10:13, 20:23] = 5.0
    maps[0, 40, 40] = 9.0  # one pixel: under the smallest region (8 / 128^2 of 64^2 = 2 pixels), dropped
    maps[1, 10:13, 20:23] = 5.0
    volume = Volume(np.zeros((64, 64, 3), np.float32), (1.0, 1.0, 2.0), np.eye(4), Modality.MR, source="toy")
    return volume, maps, np.array([3.0, 1.0, np.nan])


def to_scan_of(volume: Volume):
    return lambda maps, as_mask=False: volume.stack_display_slices(maps)


def test_result_from_slice_maps_known_answers():
    volume, maps, scores = toy_scan()
    seconds = {"prepare": 0.5}
    result = result_from_slice_maps(volume, scores, maps, 2.0, to_scan_of(volume), lambda s: 1.0 / (1.0 + s),
                                    method="toy", seconds=seconds, start=time.perf_counter(), warnings=["w"])
    assert (result.score, result.worst_slice, result.flag, result.p_value) == (3.0, 0, True, 0.25)
    assert result.flagged_slices.tolist() == [0] and result.tau == 2.0 and result.method == "toy"
    expected = np.zeros((64, 64), bool)
    expected[10:13, 20:23] = True  # the block; the speck is dropped; slice 1 (1.0 < tau) has no mask
    assert np.array_equal(volume.display_slice_of(result.mask, 0), expected)
    assert result.mask.dtype == np.uint8 and result.mask.sum() == 9
    assert result.heatmap.dtype == np.float32 and np.array_equal(volume.display_slices_of(result.heatmap), maps)
    assert result.score_diffusion is None and result.score_autoencoder is None and result.alpha is None
    assert result.reconstruction is None and result.spacing == (1.0, 1.0, 2.0) and result.source == "toy"
    assert {"prepare", "map_back", "total"} <= set(result.seconds) and result.warnings == ["w"]
    assert result.summary_at().total_mm2 == 9.0


def test_result_from_slice_maps_without_pixel_maps_has_an_empty_mask():
    volume, maps, scores = toy_scan()
    result = result_from_slice_maps(volume, scores, maps, 2.0, to_scan_of(volume), lambda s: 0.5, method="toy",
                                    seconds={}, start=time.perf_counter(), warnings=[], pixel_maps=False,
                                    reconstruction_maps=maps)
    assert result.flag and result.mask.sum() == 0 and result.mask_at(0.0).sum() == 0
    assert np.array_equal(volume.display_slices_of(result.reconstruction), maps)
