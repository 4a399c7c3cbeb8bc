"""Putting raw detector outputs on scales that mean something, using real normal images only.

Two tools, both fitted on the held-out ``calib`` split of the reference set (never on training
images, never on the benchmark that is reported):

* :class:`RobustScale` turns a raw pixel map into a robust z-score map ``(x - median) / (1.4826 MAD)``
  using the pooled foreground pixels of the calibration images. After it, "3" means three robust
  standard deviations above a typical real pixel for *either* detector, so the diffusion map and
  the autoencoder map can be added with a weight ``alpha``.
* :class:`ConformalCalibrator` turns an image score into a conformal p-value
  ``(1 + #{calibration scores >= s}) / (n + 1)`` and gives the threshold that flags at most a chosen
  fraction of clean images (split-conformal guarantee for exchangeable clean images).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAD_TO_SD = 1.4826  # MAD of a normal distribution times this is its standard deviation
MIN_SCALE = 1e-6


@dataclass(frozen=True)
class RobustScale:
    """``z = (x - median) / scale`` with ``scale = 1.4826 * MAD`` of the fitted values."""

    median: float
    scale: float

    @classmethod
    def fit(cls, values: np.ndarray) -> "RobustScale":
        """Fit on a sample of raw values (e.g. calibration foreground pixels); NaNs are ignored."""
        values = np.asarray(values, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        if values.size == 0:
            raise ValueError("cannot fit a scale on an empty sample")
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        return cls(median, max(MAD_TO_SD * mad, MIN_SCALE))

    def __call__(self, values: np.ndarray) -> np.ndarray:
        return ((np.asarray(values, dtype=np.float32) - self.median) / self.scale).astype(np.float32)


def smallest_p_value(n: int, tests: int = 1) -> float:
    """The smallest p-value :meth:`ConformalCalibrator.p_value` can give with ``n`` calibration scores,
    ``1 / (n + 1)`` (a score above all of them); times ``tests``, capped at 1, for a Bonferroni p over
    that many slices."""
    return min(1.0, tests / (n + 1.0))


@dataclass(frozen=True)
class ConformalCalibrator:
    """Split-conformal p-values and thresholds from clean calibration scores."""

    scores: np.ndarray  # sorted ascending

    def __post_init__(self) -> None:
        scores = np.sort(np.asarray(self.scores, dtype=np.float64).ravel())
        if scores.size == 0 or not np.isfinite(scores).all():
            raise ValueError("calibration scores must be a non-empty array of finite numbers")
        object.__setattr__(self, "scores", scores)

    @property
    def n(self) -> int:
        return int(self.scores.size)

    def p_value(self, score: np.ndarray | float) -> np.ndarray:
        """``(1 + #{calibration >= score}) / (n + 1)``: small for scores unlike the clean ones."""
        score = np.asarray(score, dtype=np.float64)
        at_least = self.n - np.searchsorted(self.scores, score, side="left")
        return (1.0 + at_least) / (self.n + 1.0)

    def threshold(self, false_alarm_rate: float) -> float:
        """The smallest calibration score ``t`` such that flagging ``score > t`` flags at most
        ``false_alarm_rate`` of exchangeable clean images: the ``ceil((n + 1)(1 - rate))``-th
        smallest calibration score. Rates below ``1 / (n + 1)`` cannot be guaranteed and return
        the largest calibration score (the tightest this sample allows).
        """
        if not 0.0 < false_alarm_rate < 1.0:
            raise ValueError(f"false_alarm_rate must be in (0, 1), got {false_alarm_rate}")
        rank = math.ceil((self.n + 1) * (1.0 - false_alarm_rate))
        return float(self.scores[min(rank, self.n) - 1])
