"""``python -m workflows.cli bench``: how long scoring takes on this machine, printed as a table.

Measures, with the committed models of a profile (``--profile``), each on the profile's first real
reference volume (brain MRI T1: the MNI152 template from nilearn; head CT: the InVesalius scan):

* one 2-D slice on the model grid: the autoencoder, the diffusion reconstruction (all
  ``recon_levels`` with DDIM), the diffusion bound (NLL) map, and the whole :class:`Scorer` on a
  2-D image (load excluded, maps back on the image included);
* a volume of (at most) its central 155 axial slices, end to end;
* each explainer of :mod:`core.explain` on one slice (SHAP at its calibrated sample count);
* the segmentation head's score (:mod:`core.head_scoring`) of the same slice and volume;
* DDIM against the full-step ancestral DDPM reconstruction from the same level on the same slices,
  in the same run: time per slice, their ratio, and how close the two maps are and how well each
  separates clean from corrupted slices of the validation benchmark.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np
import torch

from core.detectors.autoencoder import smooth
from core.detectors.base import top_fraction_mean
from core.detectors.head import HeadDetector
from core.explain import Explainer, ExplainerName
from core.head_scoring import HeadCalibration, HeadScorer, head_calibration_file, head_file
from core.io import load_volume
from core.metrics import image_auroc
from core.preprocess import normalise_for_models, to_model_batch
from core.profiles import Profile
from core.scoring import Scorer
from core.types import Volume


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up (first-call allocations, thread pool start)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _reference_volume(profile: Profile, n_slices: int = 155) -> Volume:
    """The central ``n_slices`` axial slices (at most) of the profile's first reference subject."""
    subject = (profile.available_subjects() or list(profile.subjects))[0]
    volume = load_volume(subject.path, modality=profile.modality)
    first = max(0, (volume.array.shape[2] - n_slices) // 2)
    return Volume(
        np.ascontiguousarray(volume.array[:, :, first : first + n_slices]), volume.spacing, volume.affine,
        volume.modality, volume.source, description=f"{subject.name}, central {n_slices} axial slices",
    )


def run_bench(scorer: Scorer, validation_dir: Path | None, *, repeats: int = 5, ddpm_slices: int = 8,
              ddpm_level: int = 200) -> list[tuple[str, str]]:
    """Measure and return ``(what, figure)`` rows (see the module docstring)."""
    rows: list[tuple[str, str]] = [("torch threads", str(torch.get_num_threads()))]
    volume = _reference_volume(scorer.profile)
    mid = volume.display_slice(volume.n_slices // 2)
    grid, _ = to_model_batch(normalise_for_models(volume), 128)
    one = torch.from_numpy(grid[len(grid) // 2 : len(grid) // 2 + 1])
    diffusion, autoencoder = scorer.diffusion, scorer.autoencoder

    rows.append(("autoencoder, 1 slice", f"{_median_seconds(lambda: autoencoder.score_batch(one), repeats) * 1e3:.1f} ms"))
    rows.append(("diffusion reconstruction (DDIM, levels "
                 f"{list(diffusion.config.recon_levels)}, stride {diffusion.config.ddim_stride}), 1 slice",
                 f"{_median_seconds(lambda: diffusion.score_batch(one, with_nll=False), repeats) * 1e3:.0f} ms"))
    rows.append((f"diffusion bound (NLL, {len(diffusion.config.nll_timesteps)} timesteps), 1 slice",
                 f"{_median_seconds(lambda: diffusion.nll_map(one), repeats) * 1e3:.0f} ms"))
    slice_volume = Volume(np.ascontiguousarray(mid), volume.display_spacing(), np.eye(4), volume.modality)
    rows.append(("whole score of a 2-D slice (both models, calibration, maps back)",
                 f"{_median_seconds(lambda: scorer.score_volume(slice_volume), repeats) * 1e3:.0f} ms"))
    rows.append(_volume_row(scorer, volume, f"{volume.n_slices}-slice volume {volume.array.shape}, end to end"))
    rows.extend(_explainer_rows(scorer, grid[len(grid) // 2 : len(grid) // 2 + 1], repeats))
    rows.extend(_head_rows(scorer, volume, slice_volume, repeats))
    rows.extend(_ddim_vs_ddpm(scorer, validation_dir, ddpm_slices, ddpm_level))
    return rows


def _head_rows(scorer: Scorer, volume: Volume, one: Volume, repeats: int) -> list[tuple[str, str]]:
    """The segmentation head's score (:mod:`core.head_scoring`) of the same slice and volume."""
    if not (head_file(scorer.profile).is_file() and head_calibration_file(scorer.profile).is_file()):
        return [("segmentation head", f"skipped: no head for {scorer.profile.name} (train-head, calibrate-head)")]

    head = HeadScorer(HeadDetector.load(head_file(scorer.profile)), scorer,
                      HeadCalibration.load(head_calibration_file(scorer.profile)))
    rows = [("head: whole score of a 2-D slice at 1 mm (both reconstructions, head, maps back)",
             f"{_median_seconds(lambda: head.score_volume(one), repeats) * 1e3:.0f} ms")]
    rows.append(_volume_row(head, volume, f"head: {volume.n_slices}-slice volume end to end"))
    return rows


def _volume_row(scorer, volume: Volume, what: str) -> tuple[str, str]:
    """One timed ``score_volume`` of ``volume``: ``(what (n slices scored), seconds)``."""
    start = time.perf_counter()
    result = scorer.score_volume(volume)
    seconds = time.perf_counter() - start
    scored = int(np.isfinite(result.slice_scores).sum())
    return (f"{what} ({scored} slices with tissue scored)",
            f"{seconds:.1f} s ({seconds / max(1, scored) * 1e3:.0f} ms per scored slice)")


def _explainer_rows(scorer: Scorer, one: np.ndarray, repeats: int) -> list[tuple[str, str]]:
    path = scorer.profile.explainer_file()
    if not path.is_file():
        return [("explainers", f"skipped: {path} missing (calibrate-explainers --profile {scorer.profile.name})")]
    rows = []
    for name in ExplainerName:
        explainer = Explainer.load(scorer, name)
        what = f"explainer {name.value}, 1 slice" + (
            f" ({explainer.settings.shap_samples} samples)" if name is ExplainerName.SHAP else "")
        rows.append((what, f"{_median_seconds(lambda e=explainer: e.maps(one), repeats) * 1e3:.1f} ms"))
    return rows


def _ddim_vs_ddpm(scorer: Scorer, validation_dir: Path | None, n: int, level: int) -> list[tuple[str, str]]:
    diffusion = scorer.diffusion
    if validation_dir is None or not (Path(validation_dir) / "benchmark.npz").is_file():
        return [("DDIM vs DDPM", "skipped: no validation benchmark (make-benchmark --split val)")]
    bench = np.load(Path(validation_dir) / "benchmark.npz")
    labels = bench["labels"]
    rng = np.random.default_rng(0)
    picks = np.concatenate([rng.choice(np.flatnonzero(labels == c), n // 2, replace=False) for c in (0, 1)])
    x = torch.from_numpy(bench["images"][picks][:, None].astype(np.float32))
    out = {}
    for sampler in ("ddim", "ddpm"):
        start = time.perf_counter()
        recon = diffusion.reconstruct(x, level, sampler=sampler)
        seconds = (time.perf_counter() - start) / len(x)
        residual = smooth((x - recon).abs(), diffusion.config.map_sigma)[:, 0].numpy()
        out[sampler] = (seconds, residual, image_auroc(labels[picks], top_fraction_mean(residual)))
    (t_ddim, m_ddim, a_ddim), (t_ddpm, m_ddpm, a_ddpm) = out["ddim"], out["ddpm"]
    steps_ddim = level // diffusion.config.ddim_stride + 1
    corr = float(np.corrcoef(m_ddim.ravel(), m_ddpm.ravel())[0, 1])
    return [
        (f"DDIM from t={level} ({steps_ddim} steps), per slice", f"{t_ddim * 1e3:.0f} ms"),
        (f"full DDPM from t={level} ({level + 1} steps), per slice", f"{t_ddpm * 1e3:.0f} ms"),
        ("DDPM / DDIM time ratio", f"{t_ddpm / t_ddim:.1f}x"),
        (f"residual-map correlation DDIM vs DDPM ({len(x)} validation slices)", f"{corr:.3f}"),
        (f"image AUROC on those {len(x)} slices: DDIM / DDPM", f"{a_ddim:.3f} / {a_ddpm:.3f}"),
    ]
