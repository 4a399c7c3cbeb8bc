"""A baseline behind SAFEGEN's scoring interface: ``score --method NAME`` and the dashboard's detector choice.

:class:`BaselineScorer` is a :class:`core.types.ScanScorer`, as SAFEGEN's scorers are, so the folder
scorer, the Scan-review page and the batch page can run any baseline of :func:`core.baselines.factories`
in SAFEGEN's place. Each scan goes through the same preparation (:class:`core.scoring.PreparedScan`:
normalisation, 128 x 128 model grid, slices with too little tissue left unscored) and its maps come
back onto the scan the same way (:func:`core.types.result_from_slice_maps`).

A baseline is fitted when it is first asked for (:func:`fit_baseline`): on the reference ``train``
slices, calibrated on the real ``calib`` slices (:func:`core.baselines.base.calibrate`: robust z-maps,
its own tau flagging at most 5 % of them). That takes 1-15 s for the committed baselines
(``evaluate --methods all`` prints each fit time) and needs the reference slices, which are built
first if they are missing (about 5 s, as ``make reference``). Nothing is downloaded and no weights
are stored: a fit is seeded, so the same reference gives the same baseline.

What a baseline result lacks: ``score_diffusion``, ``score_autoencoder`` and ``alpha`` are None (they
describe SAFEGEN's two detectors), there is no reconstruction, the heatmap is the method's own
calibrated map (explainers explain SAFEGEN's score only), and an image-level method (``pixel_maps =
False``) has an all-zero heatmap and mask.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from core.baselines import factories, method_choices
from core.baselines.base import CalibratedBaseline, calibrate
from core.calibration import ConformalCalibrator
from core.reference import build_reference, load_split
from core.resources import PROJECT_ROOT
from core.scoring import PreparedScan, slices_to_score
from core.types import ScanResult, Volume, result_from_slice_maps

REFERENCE_DIR = PROJECT_ROOT / "data" / "reference"


def fit_baseline(name: str, reference_dir: Path = REFERENCE_DIR, *, progress=None) -> CalibratedBaseline:
    """Fit baseline ``name`` on the reference ``train`` slices and calibrate it on the real ``calib`` slices.

    Builds the reference slices first (seed 0, as ``make reference``) when ``reference_dir`` has none.

    Raises:
        ValueError: ``name`` is not a baseline.
    """
    known = factories()
    if name not in known:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(method_choices())}")
    reference_dir = Path(reference_dir)
    if not (reference_dir / "calib.npz").is_file():
        build_reference(reference_dir, seed=0)
    train = load_split(reference_dir, "train").images
    calib_split = load_split(reference_dir, "calib")
    method = known[name]().fit(train)
    if progress is not None:
        progress(len(train))
    return calibrate(method, calib_split.images[calib_split.augmentation == 0])


class BaselineScorer:
    """A calibrated baseline that scores scans like SAFEGEN's scorers (see the module docstring).

    Args:
        calibrated: the fitted baseline with its z-scale and calibration scores.
        tau: a fixed threshold (default: the baseline's own, at ``false_alarm_rate``).
        false_alarm_rate: share of clean calibration slices flagged at the default tau (default 5 %).
        batch_size: slices per call of the method.
    """

    def __init__(self, calibrated: CalibratedBaseline, *, tau: float | None = None,
                 false_alarm_rate: float | None = None, batch_size: int = 16) -> None:
        self.calibrated = calibrated
        self.name = calibrated.method.name
        self.title = calibrated.method.title
        self._calibrator = ConformalCalibrator(calibrated.calib_scores)
        if tau is not None:
            self.tau = float(tau)
        elif false_alarm_rate is not None:
            self.tau = self._calibrator.threshold(false_alarm_rate)
        else:
            self.tau = float(calibrated.tau)
        self.batch_size = batch_size

    @classmethod
    def fit(cls, name: str, reference_dir: Path = REFERENCE_DIR, **settings) -> "BaselineScorer":
        """:func:`fit_baseline`, then a scorer with ``settings`` (``tau``, ``false_alarm_rate``, ``batch_size``)."""
        return cls(fit_baseline(name, reference_dir), **settings)

    @property
    def pixel_maps(self) -> bool:
        return self.calibrated.method.pixel_maps

    @property
    def calibration_scores(self) -> np.ndarray:
        """The clean calibration slices' scores its tau and p-values count against."""
        return self.calibrated.calib_scores

    @staticmethod
    def slices_to_score(volume: Volume) -> np.ndarray:
        return slices_to_score(volume)

    def score_volume(self, volume: Volume, *, explainer=None, progress=None) -> ScanResult:
        """Score every slice of a scan with the baseline; ``explainer`` must be None or ``residual``
        (the method's own map): explainers explain SAFEGEN's score, not a baseline's."""
        if explainer is not None and str(getattr(explainer, "name", explainer)) != "residual":
            raise ValueError(f"explainers explain SAFEGEN's score; the {self.name} baseline shows its own map")
        start = time.perf_counter()
        scan = PreparedScan.of(volume)
        seconds = {"prepare": time.perf_counter() - start}
        t0 = time.perf_counter()
        slices = scan.grid[scan.scored][:, 0]
        maps_scored, scores_scored = [], []
        for first in range(0, len(slices), self.batch_size):
            maps, scores = self.calibrated(slices[first : first + self.batch_size])
            scores_scored.append(scores)
            if maps is not None:
                maps_scored.append(maps)
            if progress is not None:
                progress(len(scores))
        seconds[self.name] = time.perf_counter() - t0
        slice_scores = np.full(len(scan.grid), np.nan)
        slice_scores[scan.scored] = np.concatenate(scores_scored)
        grid_maps = np.zeros((len(scan.grid), *scan.grid.shape[2:]), dtype=np.float32)
        if maps_scored:
            grid_maps[scan.scored] = np.concatenate(maps_scored)
        warnings = list(scan.warnings)
        if not self.pixel_maps:
            warnings.append(f"{self.title} scores whole images only: it has no heatmap or mask")
        return result_from_slice_maps(
            volume, slice_scores, grid_maps, self.tau, scan.to_scan, self._calibrator.p_value, method=self.name,
            seconds=seconds, start=start, warnings=warnings, pixel_maps=self.pixel_maps,
        )
