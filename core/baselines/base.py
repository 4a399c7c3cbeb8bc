"""The interface every baseline detector implements, and how each gets its own threshold.

A baseline is fitted on real normal slices only (the reference ``train`` split), like SAFEGEN's
own detectors, and turns ``(N, H, W)`` model-grid slices in [0, 1] into raw per-pixel maps (or,
for an image-level method, raw image scores). :func:`calibrate` then puts every method on the
same footing as SAFEGEN's calibrated score, using clean real slices it was not fitted on (the
``calib`` split):

* pixel maps -> robust z-scores (median / 1.4826 MAD of the calib tissue pixels);
* slice score = the mean of the top 1 % of the z-map (SAFEGEN's ``top_fraction_mean``), or the
  method's own image score for image-level methods;
* the method's threshold tau = the split-conformal threshold that flags at most 5 % of the clean
  calib slices; its mask = z-map > tau on flagged slices (SAFEGEN's rule).

So "Dice at each method's own threshold" and "false alarms on clean images" mean the same thing
for every row of the comparison table.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from core.calibration import ConformalCalibrator, RobustScale
from core.detectors.base import top_fraction_mean

FALSE_ALARM_RATE = 0.05
SCORE_FRACTION = 0.01
TISSUE_LEVEL = 0.05  # a grid pixel above this normalised intensity is tissue (as core.scoring.FOREGROUND_LEVEL)


class Baseline(ABC):
    """A detector to compare SAFEGEN with. Subclasses set the class attributes and implement
    :meth:`raw_maps` (pixel methods) or :meth:`raw_scores` (image-level methods, ``pixel_maps = False``).

    Attributes:
        name: the ``--method`` name.
        title: a short human name for tables.
        reference: the paper or idea it follows.
        differs: what differs from the paper, and why (shown in the README and the report).
        pixel_maps: whether the method localises (False: image-level columns only).
    """

    name: str = ""
    title: str = ""
    reference: str = ""
    differs: str = ""
    pixel_maps: bool = True

    def fit(self, train: np.ndarray) -> "Baseline":
        """Learn what normal looks like from ``(N, H, W)`` real normal slices; returns ``self``."""
        return self

    def raw_maps(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W)`` raw anomaly maps (higher = less normal)."""
        raise NotImplementedError(f"{self.name} is image-level; use raw_scores")

    def raw_scores(self, images: np.ndarray) -> np.ndarray:
        """``(N,)`` raw image scores; pixel methods derive theirs from the calibrated map."""
        raise NotImplementedError(f"{self.name} has pixel maps; its score comes from calibrate()")


@dataclass
class CalibratedBaseline:
    """A fitted baseline with its z-scale, calib slice scores and threshold."""

    method: Baseline
    scale: RobustScale | None  # None for image-level methods
    calib_scores: np.ndarray
    tau: float

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
        """Calibrated ``(N, H, W)`` z-maps (None for image-level methods) and ``(N,)`` slice scores."""
        if not self.method.pixel_maps:
            return None, np.asarray(self.method.raw_scores(images), dtype=np.float64)
        maps = self.scale(self.method.raw_maps(images))
        return maps, top_fraction_mean(maps, SCORE_FRACTION)


def calibrate(method: Baseline, calib: np.ndarray, *, false_alarm_rate: float = FALSE_ALARM_RATE) -> CalibratedBaseline:
    """Fit the method's z-scale (pixel methods) and threshold on clean ``calib`` slices (see the module docstring)."""
    if method.pixel_maps:
        raw = method.raw_maps(calib)
        scale = RobustScale.fit(raw[calib > TISSUE_LEVEL])
        scores = top_fraction_mean(scale(raw), SCORE_FRACTION)
    else:
        scale, scores = None, np.asarray(method.raw_scores(calib), dtype=np.float64)
    tau = ConformalCalibrator(scores).threshold(false_alarm_rate)
    return CalibratedBaseline(method, scale, np.asarray(scores), tau)
