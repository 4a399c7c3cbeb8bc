"""The SAFEGEN score: both detectors, calibrated, combined per pixel, thresholded at tau.

Data flow for one scan::

    Volume --normalise (MR rule)--> display slices --model grid 128x128--> batches
      --DiffusionDetector--> raw map_d      --RobustScale (calib)--> z_d
      --AutoencoderDetector--> raw map_ae   --RobustScale (calib)--> z_ae
      combined map  M = alpha * z_d + (1 - alpha) * z_ae            (per pixel, robust-z units)
      slice score   S = mean of the top 1 % of M                    (same units as M)
      flag          S > tau       mask  M > tau on flagged slices   (tau in the same units)
      maps back to the scan's own array layout

``tau`` is the conformal threshold of the clean calibration scores at the configured false-alarm
rate (default 5 % of clean slices), so one number is both the image threshold and the heatmap
tolerance: a flagged slice always has pixels above tau, and the mask shows where.
``alpha`` defaults to the value that maximised image AUROC on a *validation* benchmark (simulated
artifacts on the ``val`` split), never on the reported test benchmark.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from core.calibration import ConformalCalibrator, RobustScale
from core.detectors.autoencoder import AutoencoderDetector
from core.detectors.base import top_fraction_mean
from core.detectors.diffusion import DiffusionDetector
from core.domain import domain_warnings
from core.metrics import auroc_standard_error, image_auroc
from core.preprocess import GRID_SIZE, foreground_mask, maps_to_volume, normalise_for_models, to_model_batch
from core.profiles import DEFAULT_PROFILE, Profile, get_profile
from core.types import SAFEGEN_METHOD, ScanResult, Volume, maps_on_scan, result_from_slice_maps

ALPHA_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)  # alpha is chosen and calibrated on this grid
DEFAULT_FALSE_ALARM_RATE = 0.05
FOREGROUND_LEVEL = 0.05  # normalised intensity above which a grid pixel is tissue (for fitting scales)
MIN_SLICE_AREA_FRACTION = 0.25  # as the reference set: thinner end slices of a volume are not scored


def snap_alpha(alpha: float) -> float:
    """``alpha`` on :data:`ALPHA_GRID` (steps of 0.05); outside [0, 1] is an error."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return float(ALPHA_GRID[np.argmin(np.abs(ALPHA_GRID - alpha))])


def combine(z_diffusion: np.ndarray, z_autoencoder: np.ndarray, alpha: float) -> np.ndarray:
    """``alpha * z_diffusion + (1 - alpha) * z_autoencoder``, per pixel."""
    return (alpha * z_diffusion + (1.0 - alpha) * z_autoencoder).astype(np.float32)


@dataclass(frozen=True)
class Calibration:
    """Everything fitted on real normal calibration images (and alpha on the validation benchmark).

    Attributes:
        scales: robust z-scale per raw map: ``diffusion``, ``diffusion_nll``, ``autoencoder``.
        calib_scores: ``(len(ALPHA_GRID), N)`` combined slice score of each calibration slice at
            each grid alpha (alpha 1 is the diffusion map alone, 0 the autoencoder alone).
        nll_calib_scores: ``(N,)`` calibration slice scores of the diffusion bound map alone.
        alpha: default alpha.
        false_alarm_rate: default rate of clean slices flagged.
        score_fraction: share of pixels averaged into a slice score.
        metadata: how it was made (files, counts, validation AUROC per alpha).
    """

    scales: dict[str, RobustScale]
    calib_scores: np.ndarray
    nll_calib_scores: np.ndarray
    alpha: float
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE
    score_fraction: float = 0.01
    metadata: dict = field(default_factory=dict)

    def calibrator(self, alpha: float) -> ConformalCalibrator:
        return ConformalCalibrator(self.calib_scores[int(np.argmin(np.abs(ALPHA_GRID - snap_alpha(alpha))))])

    def tau(self, alpha: float, false_alarm_rate: float | None = None) -> float:
        return self.calibrator(alpha).threshold(false_alarm_rate or self.false_alarm_rate)

    def save(self, path: Path) -> None:
        payload = {
            "alpha": self.alpha,
            "false_alarm_rate": self.false_alarm_rate,
            "score_fraction": self.score_fraction,
            "scales": {k: asdict(v) for k, v in self.scales.items()},
            "alpha_grid": ALPHA_GRID.tolist(),
            "calib_scores": np.round(self.calib_scores, 5).tolist(),
            "nll_calib_scores": np.round(self.nll_calib_scores, 5).tolist(),
            "metadata": self.metadata,
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=1))

    @classmethod
    def load(cls, path: Path) -> "Calibration":
        raw = json.loads(Path(path).read_text())
        if not np.allclose(raw["alpha_grid"], ALPHA_GRID):
            raise ValueError(f"{path} was fitted on another alpha grid; run `python -m workflows.cli calibrate` again")
        return cls(
            scales={k: RobustScale(**v) for k, v in raw["scales"].items()},
            calib_scores=np.asarray(raw["calib_scores"], dtype=np.float64),
            nll_calib_scores=np.asarray(raw["nll_calib_scores"], dtype=np.float64),
            alpha=float(raw["alpha"]),
            false_alarm_rate=float(raw["false_alarm_rate"]),
            score_fraction=float(raw["score_fraction"]),
            metadata=raw.get("metadata", {}),
        )


@dataclass(frozen=True)
class ComponentMaps:
    """Calibrated (robust-z) maps of each detector for a batch of grid slices, ``(B, H, W)`` each."""

    diffusion: np.ndarray
    autoencoder: np.ndarray
    diffusion_nll: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    reconstruction: np.ndarray | None = None  # the autoencoder's pseudo-normal slices, [0, 1]


def raw_component_maps(
    diffusion: DiffusionDetector,
    autoencoder: AutoencoderDetector,
    grid: np.ndarray,
    *,
    batch_size: int = 16,
    with_nll: bool = False,
    progress=None,
) -> dict[str, np.ndarray | dict]:
    """Raw maps of both detectors for ``(N, 1, H, W)`` grid slices, in batches, with timings."""
    out: dict[str, list] = {"diffusion": [], "autoencoder": [], "diffusion_nll": [], "reconstruction": []}
    seconds = {"diffusion": 0.0, "autoencoder": 0.0}
    for start in range(0, len(grid), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(grid[start : start + batch_size], dtype=np.float32))
        t0 = time.perf_counter()
        d = diffusion.score_batch(x, with_nll=with_nll)
        t1 = time.perf_counter()
        a = autoencoder.score_batch(x)
        t2 = time.perf_counter()
        seconds["diffusion"] += t1 - t0
        seconds["autoencoder"] += t2 - t1
        out["diffusion"].append(d.reconstruction_map)
        out["autoencoder"].append(a.pixel_map)
        out["reconstruction"].append(a.reconstruction)
        if with_nll:
            out["diffusion_nll"].append(d.nll_map)
        if progress is not None:
            progress(len(x))
    maps = {k: np.concatenate(v) for k, v in out.items() if v}
    maps["seconds"] = seconds
    return maps


def slices_to_score(volume: Volume) -> np.ndarray:
    """Bool per display slice: enough tissue to be comparable with the reference slices, so it is
    scored (every scorer's ``slices_to_score``; NaN in :attr:`core.types.ScanResult.slice_scores`
    elsewhere)."""
    if not volume.is_3d:
        return np.ones(1, dtype=bool)
    tissue = foreground_mask(volume.array, volume.modality)
    area = tissue.sum(axis=(0, 1))
    if area.max() == 0:
        return np.ones(volume.n_slices, dtype=bool)
    return area >= MIN_SLICE_AREA_FRACTION * area.max()


@dataclass
class PreparedScan:
    """A scan made ready for any slice model (SAFEGEN's or a baseline's), and the way back.

    Attributes:
        normalised: the scan in [0, 1] (:func:`core.preprocess.normalise_for_models`).
        grid: ``(N, 1, 128, 128)`` model-grid slices, one per display slice.
        transforms: how each grid slice maps back onto the scan (:func:`core.preprocess.maps_to_volume`).
        scored: bool per display slice: scored or not (:func:`slices_to_score`).
        warnings: what a user should know before reading the scores.
    """

    normalised: Volume
    grid: np.ndarray
    transforms: list
    scored: np.ndarray
    warnings: list[str]

    @classmethod
    def of(cls, volume: Volume, profile: Profile | str | None = None) -> "PreparedScan":
        """Prepare ``volume`` for the models of ``profile`` (default brain MRI T1); a scan of another
        modality is prepared all the same, with a warning that its scores say little."""
        profile = get_profile(profile or DEFAULT_PROFILE)
        warnings = domain_warnings(volume, profile.domain_spec)
        normalised = normalise_for_models(volume, profile.modality, profile.window)
        grid, transforms = to_model_batch(normalised, GRID_SIZE)
        scored = slices_to_score(volume)
        if not scored.all():
            warnings.append(
                f"{int((~scored).sum())} of {len(scored)} slices hold too little tissue to compare with the "
                "reference slices and were not scored"
            )
        return cls(normalised, grid, transforms, scored, warnings + list(volume.warnings))

    def to_scan(self, grid_maps: np.ndarray, as_mask: bool = False) -> np.ndarray:
        """Grid maps ``(N, H, W)`` back onto the scan (:data:`core.types.ToScan`)."""
        return maps_to_volume(grid_maps, self.transforms, self.normalised, as_mask=as_mask)


class Scorer:
    """The two trained detectors plus their calibration: scans in, :class:`ScanResult` out
    (a :class:`core.types.ScanScorer`: SAFEGEN's seed scorer, under the segmentation head)."""

    name = SAFEGEN_METHOD

    def __init__(
        self,
        diffusion: DiffusionDetector,
        autoencoder: AutoencoderDetector,
        calibration: Calibration,
        *,
        alpha: float | None = None,
        tau: float | None = None,
        false_alarm_rate: float | None = None,
        batch_size: int = 16,
        profile: Profile | str | None = None,
    ) -> None:
        self.profile = get_profile(profile or DEFAULT_PROFILE)
        self.diffusion = diffusion
        self.autoencoder = autoencoder
        self.calibration = calibration
        self.alpha = snap_alpha(calibration.alpha if alpha is None else alpha)
        self.false_alarm_rate = false_alarm_rate or calibration.false_alarm_rate
        self.tau = float(tau) if tau is not None else calibration.tau(self.alpha, self.false_alarm_rate)
        self.batch_size = batch_size
        self._calibrator = calibration.calibrator(self.alpha)

    @classmethod
    def load(
        cls,
        diffusion_weights: Path | None = None,
        autoencoder_weights: Path | None = None,
        calibration_file: Path | None = None,
        *,
        device: str = "cpu",
        profile: Profile | str | None = None,
        **settings,
    ) -> "Scorer":
        """A profile's committed models (default brain MRI T1), e.g. ``Scorer.load(alpha=0.5)`` or
        ``Scorer.load(profile="ct_head")``; files given explicitly replace the profile's.

        Raises:
            FileNotFoundError: a weights or calibration file is missing, naming the command that makes it.
        """
        profile = get_profile(profile or DEFAULT_PROFILE)
        diffusion_weights = diffusion_weights or profile.model_file("diffusion")
        autoencoder_weights = autoencoder_weights or profile.model_file("autoencoder")
        calibration_file = calibration_file or profile.calibration_file()
        suffix = "" if profile is DEFAULT_PROFILE else f" --profile {profile.name}"
        for path, command in ((diffusion_weights, "train diffusion"), (autoencoder_weights, "train autoencoder"),
                              (calibration_file, "calibrate")):
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path} is missing; make it with `python -m workflows.cli {command}{suffix}`")
        return cls(
            DiffusionDetector.load(diffusion_weights).to(device),
            AutoencoderDetector.load(autoencoder_weights).to(device),
            Calibration.load(calibration_file),
            profile=profile,
            **settings,
        )

    @classmethod
    def from_folder(cls, models_dir: Path | None = None, *, profile: Profile | str | None = None,
                    **settings) -> "Scorer":
        """:meth:`load` with the profile's three files under their usual names in ``models_dir``
        (default: the profile's own folder, ``models/`` for the built-in profiles)."""
        profile = get_profile(profile or DEFAULT_PROFILE)
        files = (profile.model_file("diffusion", models_dir), profile.model_file("autoencoder", models_dir),
                 profile.calibration_file(models_dir))
        return cls.load(*files, profile=profile, **settings)

    def calibrated_maps(self, grid: np.ndarray, *, with_nll: bool = False, progress=None) -> ComponentMaps:
        raw = raw_component_maps(
            self.diffusion, self.autoencoder, grid, batch_size=self.batch_size, with_nll=with_nll, progress=progress
        )
        scales = self.calibration.scales
        return ComponentMaps(
            diffusion=scales["diffusion"](raw["diffusion"]),
            autoencoder=scales["autoencoder"](raw["autoencoder"]),
            diffusion_nll=scales["diffusion_nll"](raw["diffusion_nll"]) if with_nll else None,
            seconds=raw["seconds"],
            reconstruction=raw.get("reconstruction"),
        )

    @property
    def calibration_scores(self) -> np.ndarray:
        """The clean calibration slices' scores at this scorer's alpha (its tau and p-values count against them)."""
        return self._calibrator.scores

    def slice_scores(self, combined: np.ndarray) -> np.ndarray:
        """Slice score of each combined map ``(B, H, W)``: the mean of its top ``score_fraction`` of pixels."""
        return top_fraction_mean(combined, self.calibration.score_fraction)

    def score_volume(self, volume: Volume, *, explainer=None, progress=None) -> ScanResult:
        """Score every slice of a scan (see the module docstring).

        Args:
            volume: the scan.
            explainer: a :class:`core.explain.Explainer` of this scorer that makes the heatmap and
                mask; None = the combined map itself (the ``residual`` explainer).
            progress: called with the number of slices done, per batch.
        """
        start = time.perf_counter()
        scan = PreparedScan.of(volume, self.profile)
        grid, scored = scan.grid, scan.scored
        seconds: dict[str, float] = {"prepare": time.perf_counter() - start}
        maps = self.calibrated_maps(grid[scored], progress=progress)
        seconds.update(maps.seconds)
        combined_scored = combine(maps.diffusion, maps.autoencoder, self.alpha)
        combined = np.zeros((len(grid), *grid.shape[2:]), dtype=np.float32)
        combined[scored] = combined_scored
        slice_scores = np.full(len(grid), np.nan)
        slice_scores[scored] = self.slice_scores(combined_scored)
        component = {
            "diffusion": np.full(len(grid), np.nan),
            "autoencoder": np.full(len(grid), np.nan),
        }
        fraction = self.calibration.score_fraction
        component["diffusion"][scored] = top_fraction_mean(maps.diffusion, fraction)
        component["autoencoder"][scored] = top_fraction_mean(maps.autoencoder, fraction)
        explained = combined
        if explainer is not None and explainer.name != "residual":
            t0 = time.perf_counter()
            explained = np.zeros_like(combined)
            explained[scored] = explainer.maps(grid[scored], residual=combined_scored)
            seconds["explain"] = time.perf_counter() - t0
        recon_grid = np.zeros_like(combined)
        recon_grid[scored] = maps.reconstruction
        result = result_from_slice_maps(
            volume, slice_scores, explained, self.tau, scan.to_scan, self._calibrator.p_value, method=self.name,
            seconds=seconds, start=start, warnings=scan.warnings,
            explainer="residual" if explainer is None else str(explainer.name), reconstruction_maps=recon_grid,
            profile=self.profile.name,
        )
        worst = result.worst_slice
        return replace(result, score_diffusion=float(component["diffusion"][worst]),
                       score_autoencoder=float(component["autoencoder"][worst]), alpha=self.alpha)

    def explain(self, volume: Volume, result: ScanResult, explainer, *, progress=None) -> ScanResult:
        """``result`` (of :meth:`score_volume` on ``volume``) with another explainer's heatmap and mask.

        Only the explainer runs (the scores, flags and tau stay); the dashboard calls this when a
        reader switches explainers, so the detectors do not run again.
        """
        start = time.perf_counter()
        scan = PreparedScan.of(volume, self.profile)
        scored = np.isfinite(result.slice_scores)
        explained = np.zeros((len(scan.grid), *scan.grid.shape[2:]), dtype=np.float32)
        explained[scored] = explainer.maps(scan.grid[scored], progress=progress)
        heatmap, mask = maps_on_scan(explained, result.tau, result.flags_at(result.tau), scan.to_scan)
        seconds = {**result.seconds, "explain": time.perf_counter() - start}
        return replace(result, heatmap=heatmap, mask=mask, explainer=str(explainer.name), seconds=seconds)

    @staticmethod
    def slices_to_score(volume: Volume) -> np.ndarray:
        return slices_to_score(volume)


def fit_calibration(
    diffusion: DiffusionDetector,
    autoencoder: AutoencoderDetector,
    calib_images: np.ndarray,
    val_images: np.ndarray,
    val_labels: np.ndarray,
    *,
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
    score_fraction: float = 0.01,
    batch_size: int = 16,
    progress=None,
    metadata: dict | None = None,
) -> Calibration:
    """Fit the robust scales and conformal scores on clean calibration slices; pick alpha on validation.

    Args:
        diffusion, autoencoder: the trained detectors.
        calib_images: ``(N, H, W)`` real normal slices of the ``calib`` split (the CLI passes the real
            slices only, not their augmented copies: tau must match real clean scans).
        val_images, val_labels: a validation benchmark (``val`` split corrupted by the simulator),
            labels 1 = artifact. alpha is the **smallest** grid alpha whose image AUROC here is within
            one standard error (Hanley-McNeil, at the best AUROC) of the best: differences smaller
            than that are noise on a benchmark this size, and a smaller alpha leans on the
            autoencoder, which is about 70 times cheaper than the diffusion model (at alpha 0 the
            explainers do not run the diffusion model at all).
        false_alarm_rate: default share of clean slices flagged.
        score_fraction, batch_size, progress: as in :class:`Scorer`.
        metadata: recorded in the calibration file.
    """
    raw = raw_component_maps(diffusion, autoencoder, calib_images[:, None], batch_size=batch_size,
                             with_nll=True, progress=progress)
    tissue = calib_images > FOREGROUND_LEVEL
    scales = {k: RobustScale.fit(raw[k][tissue]) for k in ("diffusion", "diffusion_nll", "autoencoder")}
    z_d, z_a = scales["diffusion"](raw["diffusion"]), scales["autoencoder"](raw["autoencoder"])
    calib_scores = np.stack([top_fraction_mean(combine(z_d, z_a, a), score_fraction) for a in ALPHA_GRID])
    nll_scores = top_fraction_mean(scales["diffusion_nll"](raw["diffusion_nll"]), score_fraction)

    val = raw_component_maps(diffusion, autoencoder, val_images[:, None], batch_size=batch_size, progress=progress)
    v_d, v_a = scales["diffusion"](val["diffusion"]), scales["autoencoder"](val["autoencoder"])
    aurocs = np.array([image_auroc(val_labels, top_fraction_mean(combine(v_d, v_a, a), score_fraction))
                       for a in ALPHA_GRID])
    n_artifacts = int(np.sum(val_labels))
    tolerance = auroc_standard_error(aurocs.max(), n_artifacts, len(val_labels) - n_artifacts)
    alpha = float(ALPHA_GRID[np.flatnonzero(aurocs >= aurocs.max() - tolerance)[0]])
    info = {
        **(metadata or {}),
        "calib_images": int(len(calib_images)),
        "val_images": int(len(val_images)),
        "val_artifacts": int(np.sum(val_labels)),
        "val_auroc_per_alpha": {f"{a:.2f}": round(float(v), 4) for a, v in zip(ALPHA_GRID, aurocs, strict=True)},
        "alpha_rule": f"smallest alpha within one standard error ({tolerance:.4f}) of the best validation AUROC",
    }
    return Calibration(scales, calib_scores, nll_scores, alpha, false_alarm_rate, score_fraction, info)
