"""Calibration: robust z-scales and conformal p-values against distributions with known answers."""

import numpy as np
import pytest

from core.calibration import MAD_TO_SD, MIN_SCALE, ConformalCalibrator, RobustScale


def test_robust_scale_of_a_normal_sample_is_its_mean_and_sd():
    values = np.random.default_rng(0).normal(3.0, 2.0, size=200_000)
    scale = RobustScale.fit(values)
    assert scale.median == pytest.approx(3.0, abs=0.02)
    assert scale.scale == pytest.approx(2.0, abs=0.02)
    assert scale(np.array([3.0, 7.0])) == pytest.approx([0.0, 2.0], abs=0.03)


def test_robust_scale_ignores_outliers_and_nans():
    exact = RobustScale.fit(np.array([1.0, 2.0, 3.0, 4.0, 100.0, np.nan]))
    assert exact.median == 3.0  # the outlier moves neither the median ...
    assert exact.scale == pytest.approx(MAD_TO_SD * 1.0)  # ... nor the MAD (|d| = 2, 1, 0, 1, 97)
    assert RobustScale.fit(np.ones(10)).scale == MIN_SCALE  # constant maps do not divide by zero
    with pytest.raises(ValueError, match="empty"):
        RobustScale.fit(np.array([np.nan]))


def test_conformal_p_values_and_threshold_known_answers():
    calibrator = ConformalCalibrator(np.arange(1, 100))  # 1..99, n = 99
    assert calibrator.p_value(100.0) == pytest.approx(1 / 100)
    assert calibrator.p_value(0.0) == pytest.approx(1.0)
    assert calibrator.p_value(50.0) == pytest.approx(51 / 100)  # 50..99 are >= 50
    assert calibrator.threshold(0.05) == 95.0  # ceil(100 * 0.95) = 95th smallest
    assert calibrator.threshold(0.001) == 99.0  # below 1/(n+1): the largest score
    with pytest.raises(ValueError):
        calibrator.threshold(0.0)
    with pytest.raises(ValueError):
        ConformalCalibrator(np.array([1.0, np.nan]))


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.2])
def test_conformal_threshold_flags_the_configured_share_of_new_clean_scores(rate):
    rng = np.random.default_rng(1)
    calibrator = ConformalCalibrator(rng.normal(size=1999))
    fresh = rng.normal(size=200_000)  # new clean images from the same distribution
    flagged = np.mean(fresh > calibrator.threshold(rate))
    assert flagged == pytest.approx(rate, abs=0.015)
    assert flagged <= rate + 0.015
    # p-values of clean scores are uniform: P(p <= rate) is about rate.
    assert np.mean(calibrator.p_value(fresh) <= rate) == pytest.approx(rate, abs=0.015)
