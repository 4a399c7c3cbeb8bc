"""SAFEGEN's score with the segmentation head: scans in, :class:`~core.types.ScanResult` out.

Data flow for one scan::

    Volume --robust_normalize (whole scan: one scale)--> display slices at about 1 mm
      --E_AE and S_diffusion reconstruct each slice on the 128 grid, put back on its pixels-->
      [image, AE reconstruction, diffusion reconstruction] --head--> probability map per pixel
      slice score = max of the box-averaged probability (core.detectors.head.slice_score; the box
      side is chosen on synthetic validation slices by calibrate-head)
      flag: slice score > tau; mask: core.masks.unsafe_mask(probability, tau, flags)
      maps resampled to the scan's own pixels and array layout

**One tau, two uses.** ``tau`` is a probability. A 2-D image is flagged when its slice score is
above the slice threshold, the conformal ``1 - rate`` quantile of clean calibration slices under
normal variation (:class:`HeadCalibration`). A volume is flagged when any scored slice is above the
**volume threshold**, the conformal ``1 - rate`` quantile of the volume scores (the highest slice
score) of clean whole volumes of the training subjects, as they install and under volume-wide
variation: calibrated on volumes, because the slices of one volume are neither independent nor like
the 2-D calibration images (a template's raw slices were flagged at 12 % by the slice threshold).
A calibration without volume scores (an older file) falls back to Bonferroni: the slice quantile at
``rate / n`` for ``n`` scored slices. The mask is the probability above the result's tau on its
flagged slices, so a flagged slice always shows where.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from skimage.transform import resize

from core.calibration import ConformalCalibrator
from core.detectors.head import HeadDetector, HeadInput, Reconstructor, slice_score
from core.detectors.head_training import (HeadTrainingConfig, ValidationSet, clean_training_volumes, draw_sample,
                                         split_source)
from core.domain import AppearanceModel, HeadFeatures, domain_warnings
from core.metrics import image_auroc
from core.preprocess import robust_normalize, robust_scale
from core.profiles import DEFAULT_PROFILE, Profile, get_profile
from core.scoring import DEFAULT_FALSE_ALARM_RATE, Scorer, slices_to_score
from core.types import SAFEGEN_METHOD, Modality, ScanResult, Volume, maps_on_scan, result_from_slice_maps

HEAD_SPACING_MM = 1.0
# Slices whose pixel size is within this ratio of 1 mm are scored as they are (no resampling).
SPACING_TOLERANCE = 1.25


def head_file(profile: Profile, models_dir: Path | None = None) -> Path:
    return profile.model_file("head", models_dir)


def head_calibration_file(profile: Profile, models_dir: Path | None = None) -> Path:
    return profile.models_dir(models_dir) / f"head_calibration_{profile.name}.json"


def calibration_file_of(head_path: Path, profile: Profile, models_dir: Path | None = None) -> Path:
    """Where a head file's calibration lives: the profile's calibration for the profile's head, else
    beside the file (``NAME.calibration.json``: the ablation heads of the evaluation)."""
    if Path(head_path).resolve() == head_file(profile, models_dir).resolve():
        return head_calibration_file(profile, models_dir)
    return Path(head_path).with_suffix(".calibration.json")


@dataclass(frozen=True)
class HeadCalibration:
    """Slice scores of clean calibration slices under normal variation, and the default rate.

    Attributes:
        calib_scores: ``(N,)`` slice scores of clean ``calib``-split slices, each under a fresh draw
            of :func:`core.variation.vary`.
        false_alarm_rate: the configured share of clean slices (2-D) or volumes (3-D) flagged.
        metadata: how it was made.
        score_window: the side of the box whose mean probability, at its maximum, is the slice score
            (:func:`core.detectors.head.slice_score`), chosen on synthetic validation slices.
        volume_scores: ``(V,)`` volume scores (highest slice score) of clean whole volumes
            (:func:`fit_volume_scores`), or None: volumes use the Bonferroni fallback.
    """

    calib_scores: np.ndarray
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE
    metadata: dict = field(default_factory=dict)
    score_window: int = 7
    volume_scores: np.ndarray | None = None

    @property
    def calibrator(self) -> ConformalCalibrator:
        return ConformalCalibrator(self.calib_scores)

    @property
    def volume_calibrator(self) -> ConformalCalibrator | None:
        """Conformal over clean calibration volumes, or None (Bonferroni over slices instead)."""
        return None if self.volume_scores is None else ConformalCalibrator(self.volume_scores)

    def slice_tau(self, rate: float | None = None) -> float:
        return self.calibrator.threshold(rate or self.false_alarm_rate)

    def volume_tau(self, n_slices: int, rate: float | None = None) -> float:
        """The per-slice threshold that flags at most ``rate`` of clean volumes: the conformal quantile of
        the calibration volumes' scores, or (no volume scores) Bonferroni over ``n_slices`` slices."""
        rate = rate or self.false_alarm_rate
        if self.volume_calibrator is not None:
            return self.volume_calibrator.threshold(rate)
        return self.calibrator.threshold(rate / max(int(n_slices), 1))

    def volume_p_value(self, score: float, n_slices: int) -> float:
        """The p-value of a volume whose highest slice score is ``score``: conformal against the
        calibration volumes, or the worst slice's p times ``n_slices`` (Bonferroni, at most 1)."""
        if self.volume_calibrator is not None:
            return float(self.volume_calibrator.p_value(score))
        return min(1.0, float(self.calibrator.p_value(score)) * max(int(n_slices), 1))

    @staticmethod
    def judged_as_image(n_scored: int) -> bool:
        """Whether a scan with ``n_scored`` scored slices is judged as an image (the slice threshold and
        p-value) rather than as a volume: one scored slice (a 2-D image, a one-slice NIfTI) is an image."""
        return int(n_scored) <= 1

    def tau_for(self, n_scored: int, rate: float | None = None) -> float:
        """The per-slice threshold of a scan with ``n_scored`` scored slices: :meth:`slice_tau` for an
        image (:meth:`judged_as_image`), else :meth:`volume_tau`."""
        if self.judged_as_image(n_scored):
            return self.slice_tau(rate)
        return self.volume_tau(n_scored, rate)

    def p_value_for(self, score: float, n_scored: int) -> float:
        """The p-value of a scan with ``n_scored`` scored slices whose highest slice score is ``score``:
        the slice's conformal p for an image (:meth:`judged_as_image`), else :meth:`volume_p_value`
        ("some slice is unlike clean volumes' slices")."""
        if self.judged_as_image(n_scored):
            return float(self.calibrator.p_value(score))
        return self.volume_p_value(score, n_scored)

    def save(self, path: Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        volumes = None if self.volume_scores is None else np.round(np.sort(self.volume_scores), 6).tolist()
        Path(path).write_text(json.dumps({"false_alarm_rate": self.false_alarm_rate,
                                          "score_window": self.score_window,
                                          "calib_scores": np.round(np.sort(self.calib_scores), 6).tolist(),
                                          "volume_scores": volumes,
                                          "metadata": self.metadata}, indent=1))

    @classmethod
    def load(cls, path: Path) -> "HeadCalibration":
        raw = json.loads(Path(path).read_text())
        volumes = raw.get("volume_scores")
        return cls(np.asarray(raw["calib_scores"], dtype=np.float64), float(raw["false_alarm_rate"]),
                   raw.get("metadata", {}), int(raw["score_window"]),
                   None if volumes is None else np.asarray(volumes, dtype=np.float64))


def to_head_resolution(image: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """A display slice resampled to about 1 mm pixels (unchanged when already within 1/1.25-1.25 mm)."""
    ratios = np.asarray(spacing, dtype=float) / HEAD_SPACING_MM
    if np.all((ratios <= SPACING_TOLERANCE) & (ratios >= 1 / SPACING_TOLERANCE)):
        return image
    shape = tuple(max(8, int(round(n * r))) for n, r in zip(image.shape, ratios, strict=True))
    return resize(image, shape, order=1, preserve_range=True, anti_aliasing=bool(np.any(ratios < 1))).astype(np.float32)


def back_to_slice(prob: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A map on the head's pixels put back on the slice's ``shape``."""
    if prob.shape == tuple(shape):
        return prob
    return resize(prob, shape, order=1, preserve_range=True, anti_aliasing=False).astype(np.float32)


@dataclass
class HeadScan:
    """A scan made ready for the head.

    Attributes:
        normalised: the scan, :func:`core.preprocess.robust_normalize` with one scale for all slices.
        slices: per scored display slice, the slice at about 1 mm.
        scored: bool per display slice: scored or not (:func:`core.scoring.slices_to_score`).
        warnings: what a user should know.
    """

    normalised: Volume
    slices: list[np.ndarray]
    scored: np.ndarray
    warnings: list[str]

    @classmethod
    def of(cls, volume: Volume, profile: Profile) -> "HeadScan":
        warnings = domain_warnings(volume, profile.domain_spec)
        normalised = volume.with_array(robust_normalize(volume.array, scale=robust_scale(volume.array, Modality.MR)))
        scored = slices_to_score(volume)
        if not scored.all():
            warnings.append(f"{int((~scored).sum())} of {len(scored)} slices hold too little tissue to compare "
                            "with the reference slices and were not scored")
        spacing = volume.display_spacing()
        slices = [to_head_resolution(normalised.display_slice(int(k)), spacing) for k in np.flatnonzero(scored)]
        return cls(normalised, slices, scored, warnings + list(volume.warnings))


class HeadScorer:
    """The head, the two detectors that feed it, and its calibration (see the module docstring): SAFEGEN's
    :class:`core.types.ScanScorer`.

    Args:
        head: the trained head.
        seed: the reconstruction scorer whose E_AE and S_diffusion make the head's input channels
            (its own alpha-combined score is the ``seed`` ablation of the evaluation); None for a head
            that sees the image alone.
        calibration: the head's :class:`HeadCalibration`.
        tau: a fixed tolerance (probability) instead of the calibrated thresholds.
        false_alarm_rate: the rate the thresholds are set for (default: the calibration's).
    """

    name = SAFEGEN_METHOD

    def __init__(self, head: HeadDetector, seed: Scorer | None, calibration: HeadCalibration, *,
                 tau: float | None = None, false_alarm_rate: float | None = None,
                 profile: Profile | str | None = None, batch_size: int = 16) -> None:
        if seed is None and tuple(head.config.inputs) != ("image",):
            raise ValueError(f"a head with inputs {head.config.inputs} needs the seed's detectors")
        self.head = head
        self.seed = seed
        self.calibration = calibration
        self.appearance: AppearanceModel | None = None  # the profile's appearance check, when fitted
        self._features: HeadFeatures | None = None
        self.profile = get_profile(profile or (seed.profile if seed is not None else DEFAULT_PROFILE))
        self.false_alarm_rate = false_alarm_rate or calibration.false_alarm_rate
        self.fixed_tau = None if tau is None else float(tau)
        self.reconstruct = Reconstructor(seed and seed.autoencoder, seed and seed.diffusion,
                                         diffusion_level=head.config.diffusion_level)
        self.batch_size = seed.batch_size if seed is not None else batch_size
        self.window = calibration.score_window

    @property
    def calibration_scores(self) -> np.ndarray:
        """The clean calibration slices' scores (under normal variation) its thresholds and p-values count against."""
        return self.calibration.calibrator.scores

    @property
    def tau(self) -> float:
        """The threshold of a 2-D image (a volume's depends on its slice count: :meth:`tau_for`)."""
        return self.fixed_tau if self.fixed_tau is not None else self.calibration.slice_tau(self.false_alarm_rate)

    def tau_for(self, n_scored: int) -> float:
        """The threshold of a scan with ``n_scored`` scored slices (:meth:`HeadCalibration.tau_for`), or the
        fixed one."""
        if self.fixed_tau is not None:
            return self.fixed_tau
        return self.calibration.tau_for(n_scored, self.false_alarm_rate)

    @classmethod
    def load(cls, models_dir: Path | None = None, *, profile: Profile | str | None = None, device: str = "cpu",
             tau: float | None = None, false_alarm_rate: float | None = None, **seed_settings) -> "HeadScorer":
        """A profile's committed head, calibration and the detectors that feed it.

        Raises:
            FileNotFoundError: a file is missing, naming the command that makes it.
        """
        profile = get_profile(profile or DEFAULT_PROFILE)
        return cls.from_files(head_file(profile, models_dir), head_calibration_file(profile, models_dir),
                              models_dir, profile=profile, device=device, tau=tau,
                              false_alarm_rate=false_alarm_rate, **seed_settings)

    @classmethod
    def from_files(cls, head_path: Path, calibration_path: Path | None, models_dir: Path | None = None, *,
                   profile: Profile | str | None = None, device: str = "cpu", tau: float | None = None,
                   false_alarm_rate: float | None = None, **seed_settings) -> "HeadScorer":
        """A head from its weights file and calibration (None: a placeholder, for fitting one), with
        the profile's detectors when its inputs need them (an image-only head runs without them).

        Raises:
            FileNotFoundError: a file is missing, naming the command that makes it.
        """
        profile = get_profile(profile or DEFAULT_PROFILE)
        for path, command in ((head_path, "train-head"), (calibration_path, "calibrate-head")):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{path} is missing; make it with `python -m workflows.cli {command}`")
        head = HeadDetector.load(head_path)
        seed = None
        if tuple(head.config.inputs) != (HeadInput.IMAGE,):
            seed = Scorer.from_folder(models_dir, profile=profile, device=device, **seed_settings)
        calibration = HeadCalibration.load(calibration_path) if calibration_path is not None else HeadCalibration(np.zeros(1))
        scorer = cls(head, seed, calibration, tau=tau, false_alarm_rate=false_alarm_rate, profile=profile)
        domain_file = profile.domain_file(models_dir)
        if Path(head_path).resolve() == head_file(profile, models_dir).resolve() and domain_file.is_file():
            scorer.appearance = AppearanceModel.load(domain_file)  # fitted on this head's features
        return scorer

    def unlike_training(self, slices: list[np.ndarray]) -> str | None:
        """The appearance check's warning for a scan's slices (as the head sees them; :mod:`core.domain`),
        or None: it did not speak, or the profile has no fitted check."""
        if self.appearance is None or not slices:
            return None
        if self._features is None:
            self._features = HeadFeatures(self.head)
        return self.appearance.warning(self.appearance.distances(np.stack([self._features(s) for s in slices])))

    def inputs(self, slices: list[np.ndarray], *, progress=None) -> list[np.ndarray]:
        """The head's input channels ``(C, H, W)`` of each slice (already normalised, at about 1 mm)."""
        out = []
        for start in range(0, len(slices), self.batch_size):
            part = slices[start : start + self.batch_size]
            out.extend(self.reconstruct(part, self.head.config.inputs))
            if progress is not None:
                progress(len(part))
        return out

    def score_slices(self, slices: list[np.ndarray]) -> np.ndarray:
        """Slice scores of normalised 1 mm slices (calibration and evaluation use this)."""
        probs = self.head.probability(self.inputs(slices))
        return np.array([slice_score(p, self.window) for p in probs])

    @staticmethod
    def slices_to_score(volume: Volume) -> np.ndarray:
        return slices_to_score(volume)

    def _explained(self, explainer, channels: list[np.ndarray], probs: list[np.ndarray], progress=None) -> list:
        """The maps the result shows: the probabilities, or ``explainer``'s maps on their scale."""
        if explainer is None or str(explainer.name) == "residual":
            return probs
        if not hasattr(explainer, "maps_of"):
            raise ValueError(f"the {explainer.name} explainer explains the reconstruction score, not the head; "
                             "load the head's (core.head_explain.load_explainer)")
        if not channels:
            return []
        return list(explainer.maps_of(np.stack(channels), progress=progress))

    @staticmethod
    def _display_maps(volume: Volume, scan: HeadScan, slice_maps: list[np.ndarray]) -> np.ndarray:
        """Maps of the scored slices, on the head's pixels, put back on every display slice's pixels
        ``(n_slices, rows, columns)`` (0 on unscored slices): the head's grid for :func:`core.types.maps_on_scan`."""
        shown_shape = scan.normalised.display_slice(0).shape
        display_maps = np.zeros((volume.n_slices, *shown_shape), dtype=np.float32)
        for k, m in zip(np.flatnonzero(scan.scored), slice_maps, strict=True):
            display_maps[k] = back_to_slice(m, shown_shape)
        return display_maps

    @staticmethod
    def _to_scan(volume: Volume):
        """The head's way back onto the scan (:data:`core.types.ToScan`): its maps are display slices."""
        return lambda display_maps, as_mask=False: volume.stack_display_slices(display_maps)

    def score_volume(self, volume: Volume, *, explainer=None, progress=None) -> ScanResult:
        """Score every slice of a scan (see the module docstring).

        Args:
            volume: the scan.
            explainer: None (the head's probability map) or a
                :class:`core.head_explain.HeadExplainer` whose map, on the probability scale, becomes
                the heatmap and mask.
            progress: called with the number of slices done, per batch.
        """
        start = time.perf_counter()
        scan = HeadScan.of(volume, self.profile)
        warnings = list(scan.warnings)
        if (unlike := self.unlike_training(scan.slices)) is not None:
            warnings.insert(0, unlike)
        seconds = {"prepare": time.perf_counter() - start}
        t0 = time.perf_counter()
        channels = self.inputs(scan.slices, progress=progress)
        seconds["reconstruct"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        probs = self.head.probability(channels)
        seconds["head"] = time.perf_counter() - t0
        slice_scores = np.full(volume.n_slices, np.nan)
        slice_scores[scan.scored] = [slice_score(p, self.window) for p in probs]
        n_scored = int(scan.scored.sum())
        tau = self.tau_for(n_scored)
        t0 = time.perf_counter()
        shown = self._explained(explainer, channels, probs)
        if explainer is not None and str(explainer.name) != "residual":
            seconds["explain"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        display_maps = self._display_maps(volume, scan, shown)
        reconstruction = None
        if "autoencoder" in self.head.config.inputs:  # E_AE's pseudo-normal slice, as the head saw it
            channel = list(self.head.config.inputs).index("autoencoder")
            reconstruction = self._display_maps(volume, scan, [c[channel] for c in channels])
        seconds["map_back"] = time.perf_counter() - t0

        def p_value(score: float) -> float:
            return self.calibration.p_value_for(score, n_scored)

        return result_from_slice_maps(
            volume, slice_scores, display_maps, tau, self._to_scan(volume), p_value, method=self.name,
            seconds=seconds, start=start, warnings=warnings,
            explainer="residual" if explainer is None else str(explainer.name), reconstruction_maps=reconstruction,
            profile=self.profile.name, head=True,
        )

    def explain(self, volume: Volume, result: ScanResult, explainer, *, progress=None) -> ScanResult:
        """``result`` with ``explainer``'s heatmap and mask; only the explainer runs (and the
        reconstructions it needs), the scores, flags and tau stay."""
        from dataclasses import replace as _replace

        start = time.perf_counter()
        scan = HeadScan.of(volume, self.profile)
        channels = self.inputs(scan.slices)
        shown = (self.head.probability(channels) if str(explainer.name) == "residual"
                 else self._explained(explainer, channels, [], progress=progress))
        heatmap, mask = maps_on_scan(self._display_maps(volume, scan, shown), result.tau, result.flags_at(result.tau),
                                     self._to_scan(volume))
        seconds = {**result.seconds, "explain": time.perf_counter() - start}
        return _replace(result, heatmap=heatmap, mask=mask, explainer=str(explainer.name), seconds=seconds)

    def explain_slices(self, volume: Volume, result: ScanResult, explainer,
                       order: list[int] | np.ndarray | None = None, *, chunk: int = 1
                       ) -> Iterator[tuple[int, np.ndarray]]:
        """``explainer``'s maps ``chunk`` scored slices at a time, in ``order``: a lazy generator, so
        whoever iterates can stop between chunks (close it) and keep what was done.

        The head's input channels are made per batch of :attr:`batch_size` scored slices in scan order,
        when a slice of that batch is first asked for: the same batches as :meth:`score_volume`, so a
        reconstruction input sees the same noise as when the slice was scored.

        Args:
            volume: the scan ``result`` scored.
            result: the scan's result (only its slice scores are read: which slices are scored).
            explainer: a :class:`core.head_explain.HeadExplainer` other than the residual.
            order: display-slice indices to explain, first first (e.g. :func:`outward_order`);
                unscored slices in it are skipped. None: every scored slice, in scan order.
            chunk: slices explained together: 1 for KernelSHAP (it explains one at a time anyway); a
                few for the gradient explainers, which are several times faster per slice in a batch.

        Yields:
            ``(display index, map)``: the map ``(rows, columns)`` on the display slice's pixels, on the
            probability scale (what :meth:`explained_from` takes).
        """
        if str(explainer.name) == "residual":
            raise ValueError("the residual map is the head's own: nothing to explain slice by slice")
        scan = HeadScan.of(volume, self.profile)
        if not np.array_equal(scan.scored, np.isfinite(result.slice_scores)):
            raise ValueError("the result was not scored on this volume (its scored slices differ)")
        position = {int(k): i for i, k in enumerate(np.flatnonzero(scan.scored))}
        shown_shape = scan.normalised.display_slice(0).shape
        batches: dict[int, list[np.ndarray]] = {}

        def channels_of(index: int) -> np.ndarray:
            batch, offset = divmod(position[index], self.batch_size)
            if batch not in batches:
                start = batch * self.batch_size
                batches[batch] = self.inputs(scan.slices[start : start + self.batch_size])
            return batches[batch][offset]

        wanted = [k for k in (sorted(position) if order is None else [int(k) for k in order]) if k in position]
        for start in range(0, len(wanted), max(chunk, 1)):
            part = wanted[start : start + max(chunk, 1)]
            maps = self._explained(explainer, [channels_of(k) for k in part], [])
            for index, one in zip(part, maps, strict=True):
                yield index, back_to_slice(one, shown_shape)

    def explained_from(self, volume: Volume, result: ScanResult, maps: dict[int, np.ndarray], explainer: str,
                       *, seconds: float | None = None) -> ScanResult:
        """``result`` (the residual map's) with the maps of :meth:`explain_slices` done so far: their
        slices show ``explainer``'s map, the others keep the head's probability map, and the mask is
        the one mask rule (:func:`core.types.maps_on_scan`) of that mixed map at the result's tau.

        Args:
            volume: the scan.
            result: its residual result (:meth:`score_volume` without an explainer).
            maps: display index -> map, as :meth:`explain_slices` yields them.
            explainer: the explainer's name.
            seconds: the explainer's wall time so far, recorded as ``seconds["explain"]``.

        Returns:
            the result; its ``explained_slices`` lists the explained slices, or is None once every
            scored slice is.
        """
        from dataclasses import replace as _replace

        if result.explainer != "residual":
            raise ValueError(f"explained_from starts from the residual result, got the {result.explainer} one")
        display_maps = volume.display_slices_of(result.heatmap).astype(np.float32)
        for index, one in maps.items():
            display_maps[index] = one
        heatmap, mask = maps_on_scan(display_maps, result.tau, result.flags_at(result.tau), self._to_scan(volume))
        scored = {int(k) for k in np.flatnonzero(np.isfinite(result.slice_scores))}
        done = None if scored <= set(maps) else tuple(sorted(int(k) for k in maps))
        timing = {**result.seconds, "explain": seconds} if seconds is not None else dict(result.seconds)
        return _replace(result, heatmap=heatmap, mask=mask, explainer=str(explainer), seconds=timing,
                        explained_slices=done)


def outward_order(first: int, indices: list[int] | np.ndarray) -> list[int]:
    """``indices`` (display slices) ordered from ``first`` outward: the nearest first, ties to the
    higher slice (``first``, ``first + 1``, ``first - 1``, ``first + 2`` ...). ``first`` itself need
    not be among them (an unscored shown slice: its nearest scored neighbours lead)."""
    return sorted((int(k) for k in indices), key=lambda k: (abs(k - first), -k))


def load_detector(models_dir: Path | None = None, *, profile: Profile | str | None = None, **settings):
    """The profile's SAFEGEN scorer: the head (:class:`HeadScorer`) where the profile has one trained
    and calibrated, else the seed's reconstruction scorer (:class:`core.scoring.Scorer`)."""
    profile = get_profile(profile or DEFAULT_PROFILE)
    if head_file(profile, models_dir).is_file() and head_calibration_file(profile, models_dir).is_file():
        head_settings = {k: settings.pop(k) for k in ("tau", "false_alarm_rate", "device") if k in settings}
        return HeadScorer.load(models_dir, profile=profile, **head_settings, **settings)
    return Scorer.from_folder(models_dir, profile=profile, **settings)


def clean_variants(split: str, n: int, seed: int, *, variation=None) -> list[np.ndarray]:
    """``n`` clean ``split`` slices of the head's training subjects, each under a fresh draw of
    normal variation and normalised as the head sees them (no corruption)."""
    from dataclasses import replace as _replace

    config = HeadTrainingConfig()
    variation = variation or config.variation
    source = split_source(split)
    rng = np.random.default_rng(seed)
    clean = _replace(config.anomalies, probability=0.0)
    return [draw_sample(source, rng, variation, clean).image for _ in range(n)]


SCORE_WINDOWS = (1, 3, 7, 15, 31)


def choose_score_window(scorer: HeadScorer, *, n: int = 400, seed: int = 8,
                        windows: tuple[int, ...] = SCORE_WINDOWS) -> tuple[int, dict[str, float]]:
    """The box side whose slice score has the best image AUROC on ``n`` synthetic ``val``-split slices
    (half with a training corruption: :class:`core.detectors.head_training.ValidationSet`), and the
    AUROC of each candidate."""
    config = HeadTrainingConfig(head=scorer.head.config)
    val = ValidationSet.make(n, split_source("val"), scorer.reconstruct, config, seed=seed)
    probs = scorer.head.probability(val.inputs)
    labels = np.array([label.any() for label in val.labels], dtype=int)
    aurocs = {str(w): round(float(image_auroc(labels, [slice_score(p, w) for p in probs])), 4) for w in windows}
    return int(max(windows, key=lambda w: aurocs[str(w)])), aurocs


def fit_volume_scores(scorer: HeadScorer, *, per_subject: int = 15, seed: int = 9,
                      progress=None) -> tuple[np.ndarray, list[str]]:
    """The volume scores (highest slice score, as :meth:`HeadScorer.score_volume` scores them) of
    clean whole volumes of the training subjects (:func:`core.detectors.head_training.clean_training_volumes`:
    each as it installs and under ``per_subject`` draws of volume-wide variation), and their subjects."""
    scores, subjects = [], []
    for name, volume in clean_training_volumes(per_subject, np.random.default_rng(seed)):
        scores.append(float(np.max(scorer.score_slices(HeadScan.of(volume, scorer.profile).slices))))
        subjects.append(name)
        if progress is not None:
            progress(1)
    return np.asarray(scores, dtype=np.float64), subjects


def fit_head_calibration(scorer: HeadScorer, *, n: int = 2000, seed: int = 7, volumes_per_subject: int = 15,
                         false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE, head_name: str = "",
                         progress=None) -> HeadCalibration:
    """The score window (:func:`choose_score_window`, on ``val`` slices), the slice scores of ``n``
    clean ``calib`` slices under normal variation (:func:`clean_variants`), and the volume scores of
    the training subjects' clean volumes (:func:`fit_volume_scores`; none with ``volumes_per_subject``
    < 0).

    The held-out subject and the benchmark's ``test`` split stay out. The slices are the ``val`` and
    ``calib`` splits only; a volume holds every slice, the ``train`` ones too (see
    :func:`core.detectors.head_training.clean_training_volumes`).
    """
    window, aurocs = choose_score_window(scorer, seed=seed + 1)
    scorer.window = window
    slices = clean_variants("calib", n, seed)
    scores = []
    for start in range(0, n, 64):
        scores.extend(scorer.score_slices(slices[start : start + 64]))
        if progress is not None:
            progress(len(slices[start : start + 64]))
    metadata = {"split": "calib", "n": n, "seed": seed, "variation": "core.variation.VariationParams() defaults",
                "head": head_name or str(head_file(scorer.profile).name),
                "score_window_val_auroc": aurocs, "score_window_rule": "best image AUROC on 400 synthetic val slices"}
    volume_scores = None
    if volumes_per_subject >= 0:
        volume_scores, subjects = fit_volume_scores(scorer, per_subject=volumes_per_subject, seed=seed + 2,
                                                    progress=progress)
        metadata["volumes"] = {"n": len(volume_scores), "per_subject": volumes_per_subject, "seed": seed + 2,
                               "subjects": sorted(set(subjects)),
                               "what": "each training subject as it installs and under volume-wide variation "
                                       "(core.variation.vary_volume); every slice, train slices too"}
    return HeadCalibration(np.asarray(scores, dtype=np.float64), false_alarm_rate, metadata, window, volume_scores)
