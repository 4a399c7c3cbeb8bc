"""MRIQC-style image-quality metrics (IQMs) with a normative z-score: an image-level baseline.

MRIQC (Esteban et al. 2017, PLoS One 12(9):e0184661; https://mriqc.readthedocs.io, "Measures for the
structural images") computes no-reference IQMs of a 3-D T1w scan and compares them with a population.
Here each IQM is adapted to one 2-D model-grid slice in [0, 1]; "tissue" is the cleaned mask
``opening(x > 0.05, 3 x 3)`` with its holes filled (standing in for MRIQC's head mask) and the
"background" every pixel more than ``BACKGROUND_MARGIN = 2`` px from the tissue (MRIQC's air mask;
the margin leaves the partial-volume fringe out of both). ``t`` are the tissue pixels, ``b`` the
background pixels, ``hi`` / ``lo`` the tissue pixels above / at-or-below the tissue median (a 2-class
split standing in for MRIQC's WM / GM segmentation; a flat tissue has no split and both classes are
all of ``t``). Floors: ``STD_FLOOR = 1e-3`` for a standard deviation, ``ENERGY_FLOOR = 1e-6`` for a
mean squared intensity. An empty tissue mask gives 0 for every tissue-based IQM.

* ``snr`` = mean(t) / max(std(t), STD_FLOOR)  (MRIQC ``snr``; a flat disc of 0.8 gives 800)
* ``cnr`` = (mean(hi) - mean(lo)) / sqrt(std(b)^2 + std(hi)^2 + std(lo)^2 + STD_FLOOR^2)  (MRIQC ``cnr``)
* ``efc`` = sum_i (x_i / B) ln(x_i / B) / (sqrt(N) ln(1 / sqrt(N))), B = sqrt(sum_i x_i^2), over all N
  pixels (MRIQC ``efc`` exactly, with the slice as the volume; 0 for an all-zero slice)
* ``fber`` = log10((mean(t^2) + ENERGY_FLOOR) / (mean(b^2) + ENERGY_FLOOR))  (MRIQC ``fber`` uses medians
  and returns -1 for an empty background, i.e. for every skull-stripped slice: hence means, floor, log)
* ``wm2max`` = median(hi) / max(P99.95(t), STD_FLOOR)  (MRIQC ``wm2max``)
* ``lap_mad`` = 1.4826 MAD of the 3 x 3 Laplacian over the tissue eroded by 2 px: a robust noise /
  texture level (not an MRIQC IQM; in the spirit of its noise IQMs). The erosion keeps the tissue /
  background edge out and the MAD ignores the sparse anatomical edges that a std would follow.
* ``tissue_fraction`` = tissue pixels / all pixels

:meth:`IQMBaseline.fit` stores each IQM's median and ``1.4826 MAD`` over real normal slices; a slice's
score is the root-mean-square of its robust z-scores, so a slice unlike the normal ones in any IQM
scores high.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from core.baselines.base import TISSUE_LEVEL, Baseline
from core.calibration import MAD_TO_SD

STD_FLOOR = 1e-3
ENERGY_FLOOR = 1e-6
BACKGROUND_MARGIN = 2  # px of partial-volume fringe between tissue and background, in neither
REL_SCALE_FLOOR = 0.01  # an IQM's robust scale is at least 1 % of its normal median (plus 1e-6)
IQM_NAMES = ("snr", "cnr", "efc", "fber", "wm2max", "lap_mad", "tissue_fraction")


def as_batch(images: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` float64 copy of a batch of slices; anything else raises ``ValueError``."""
    images = np.asarray(images, dtype=np.float64)
    if images.ndim != 3:
        raise ValueError(f"expected (N, H, W) slices, got shape {images.shape}")
    return images


def tissue_mask(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` bool: pixels above ``TISSUE_LEVEL``, opened with a 3 x 3 square, holes filled."""
    mask = ndimage.binary_opening(image > TISSUE_LEVEL, structure=np.ones((3, 3), bool))
    return ndimage.binary_fill_holes(mask)


def _std(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else 0.0


def _efc(image: np.ndarray) -> float:
    x = np.abs(image).ravel()
    energy = np.sqrt(np.sum(x**2))
    if energy == 0.0:
        return 0.0
    n = x.size
    efc_max = np.sqrt(n) * np.log(1.0 / np.sqrt(n))  # every pixel equal: the most "unfocused" image
    return float(np.sum((x / energy) * np.log((x + 1e-16) / energy)) / efc_max)


def slice_iqms(image: np.ndarray) -> dict[str, float]:
    """The IQMs of one ``(H, W)`` slice (formulas in the module docstring)."""
    mask = tissue_mask(image)
    t, b = image[mask], image[~ndimage.binary_dilation(mask, iterations=BACKGROUND_MARGIN)]
    out = {"efc": _efc(image), "tissue_fraction": float(mask.mean())}
    out["fber"] = float(np.log10((np.mean(t**2) if t.size else 0.0) + ENERGY_FLOOR)
                        - np.log10((np.mean(b**2) if b.size else 0.0) + ENERGY_FLOOR))
    if t.size == 0:
        return {**out, "snr": 0.0, "cnr": 0.0, "wm2max": 0.0, "lap_mad": 0.0}
    median = np.median(t)
    hi, lo = t[t > median], t[t <= median]
    if hi.size == 0 or lo.size == 0:  # flat tissue: no contrast to split on
        hi = lo = t
    out["snr"] = float(t.mean() / max(_std(t), STD_FLOOR))
    noise = np.sqrt(_std(b) ** 2 + _std(hi) ** 2 + _std(lo) ** 2 + STD_FLOOR**2)
    out["cnr"] = float((hi.mean() - lo.mean()) / noise)
    out["wm2max"] = float(np.median(hi) / max(np.percentile(t, 99.95), STD_FLOOR))
    inner = ndimage.binary_erosion(mask, iterations=2)
    laplacian = ndimage.laplace(image)[inner]
    out["lap_mad"] = float(MAD_TO_SD * np.median(np.abs(laplacian - np.median(laplacian)))) if laplacian.size else 0.0
    return out


class IQMBaseline(Baseline):
    """MRIQC-style IQMs of each slice, scored by their robust distance to the normal slices' IQMs."""

    name = "mriqc_iqm"
    title = "MRIQC-style IQMs (normative z)"
    reference = "Esteban et al. 2017, PLoS One 12(9):e0184661 (MRIQC); mriqc.readthedocs.io IQM definitions"
    differs = ("MRIQC's 3-D IQMs adapted to single 2-D 128 x 128 slices in [0, 1] (a thresholded tissue mask "
               "instead of its head mask and FSL segmentation, a median split instead of WM / GM, floors "
               "for the skull-stripped zero background); no trained classifier (MRIQC's own predicts "
               "rater labels): a normative z against the median / MAD of the few real reference slices "
               "available offline, combined by root-mean-square.")
    pixel_maps = False

    def __init__(self) -> None:
        self.median: np.ndarray | None = None
        self.scale: np.ndarray | None = None

    def metrics(self, images: np.ndarray) -> pd.DataFrame:
        """One row per slice, one column per IQM (``IQM_NAMES``)."""
        rows = [slice_iqms(image) for image in as_batch(images)]
        return pd.DataFrame(rows, columns=list(IQM_NAMES))

    def fit(self, train: np.ndarray) -> "IQMBaseline":
        values = self.metrics(train).to_numpy()
        self.median = np.median(values, axis=0)
        mad = np.median(np.abs(values - self.median), axis=0)
        self.scale = np.maximum(MAD_TO_SD * mad, REL_SCALE_FLOOR * np.abs(self.median) + 1e-6)
        return self

    def zscores(self, images: np.ndarray) -> pd.DataFrame:
        """Robust z-score of each IQM against the fitted normal slices, same layout as :meth:`metrics`."""
        if self.median is None:
            raise RuntimeError("fit() the IQM baseline on normal slices first")
        table = self.metrics(images)
        return (table - self.median) / self.scale

    def raw_scores(self, images: np.ndarray) -> np.ndarray:
        """``(N,)`` root-mean-square of each slice's IQM z-scores."""
        z = self.zscores(images).to_numpy()
        return np.sqrt(np.mean(z**2, axis=1))
