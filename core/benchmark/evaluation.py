"""``python -m workflows.cli evaluate``: detection and localisation on a simulated-artifact benchmark.

The benchmark (``make-benchmark``) holds clean real slices and the same kind of slices corrupted
by :mod:`core.artifacts`, with exact masks. Every variant of the ablation is scored on it with the
calibration fitted on the ``calib`` split (its tau flags ``false_alarm_rate`` of clean calibration
slices):

* ``diffusion``: the multi-t DDIM reconstruction map alone (alpha = 1);
* ``diffusion_nll``: the variational-bound (NLL) map alone;
* ``autoencoder``: the autoencoder residual alone (alpha = 0);
* ``combined``: alpha * diffusion + (1 - alpha) * autoencoder at the calibrated default alpha.

Per variant: image AUROC / AUPRC, F1 at tau (and the best F1 any threshold reaches, for reference),
the false-alarm rate on the benchmark's clean slices and on the clean ``test`` reference slices,
Dice and IoU of the tau mask against the true mask (mean over artifact images; an unflagged
artifact image has an empty mask and scores 0), pixel AUROC and AUPRO; then AUROC and Dice per
artifact kind and per severity.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from core.benchmark.explainer_evaluation import evaluate_explainers
from core.benchmark.seeds import SIMULATED_TEST_SEED
from core.benchmark.simulated import benchmark_from_reference
from core.calibration import ConformalCalibrator
from core.detectors.base import top_fraction_mean
from core.masks import unsafe_mask
from core.metrics import aupro, dice, f1_max, image_auprc, image_auroc, iou, pixel_auroc
from core.reference import ensure_reference, load_split
from core.scoring import Scorer, combine
from core.tables import markdown_table

VARIANTS = ("diffusion", "diffusion_nll", "autoencoder", "combined")


@dataclass
class VariantOutput:
    """One variant's calibrated maps, slice scores and threshold on the benchmark."""

    name: str
    maps: np.ndarray | None  # None for an image-level method (workflows.comparison)
    scores: np.ndarray
    tau: float
    description: str

    @property
    def flags(self) -> np.ndarray:
        return self.scores > self.tau

    @property
    def masks(self) -> np.ndarray | None:
        """Each image's mask at tau by the one mask rule (:func:`core.masks.unsafe_mask`): empty when unflagged."""
        if self.maps is None:
            return None
        return np.stack([unsafe_mask(m, self.tau, np.array([f])) for m, f in zip(self.maps, self.flags)]).astype(bool)


def variant_outputs(scorer: Scorer, images: np.ndarray, *, progress=None) -> tuple[list[VariantOutput], dict]:
    """Calibrated maps and scores of every ablation variant for ``(N, H, W)`` grid slices."""
    calibration, fraction = scorer.calibration, scorer.calibration.score_fraction
    start = time.perf_counter()
    maps = scorer.calibrated_maps(images[:, None], with_nll=True, progress=progress)
    seconds = {**maps.seconds, "total": time.perf_counter() - start}
    rate = scorer.false_alarm_rate
    nll_tau = ConformalCalibrator(calibration.nll_calib_scores).threshold(rate)
    alpha = scorer.alpha
    outputs = []
    for name, m, tau, text in (
        ("diffusion", maps.diffusion, calibration.tau(1.0, rate), "diffusion, multi-t DDIM reconstruction"),
        ("diffusion_nll", maps.diffusion_nll, nll_tau, "diffusion, variational bound (NLL)"),
        ("autoencoder", maps.autoencoder, calibration.tau(0.0, rate), "autoencoder residual"),
        ("combined", combine(maps.diffusion, maps.autoencoder, alpha), scorer.tau,
         f"combined, alpha = {alpha:.2f}"),
    ):
        outputs.append(VariantOutput(name, m, top_fraction_mean(m, fraction), tau, text))
    return outputs, seconds


def _localisation(output: VariantOutput, gt: np.ndarray, artifact: np.ndarray) -> dict[str, float]:
    """Dice and IoU of the tau masks (an unflagged image scores 0), pixel AUROC and AUPRO of the maps,
    on the artifact images; NaN for an image-level method."""
    if output.maps is None:
        return dict.fromkeys(("dice", "iou", "pixel_auroc", "aupro"), np.nan)
    pred = output.masks[artifact]
    return {
        "dice": float(np.mean(dice(pred, gt[artifact], axis=(1, 2)))),
        "iou": float(np.mean(iou(pred, gt[artifact], axis=(1, 2)))),
        "pixel_auroc": pixel_auroc(output.maps[artifact], gt[artifact]),
        "aupro": aupro(output.maps[artifact], gt[artifact]),
    }


def summary_table(
    outputs: list[VariantOutput], labels: np.ndarray, gt: np.ndarray, clean_test_scores: dict[str, np.ndarray] | None
) -> pd.DataFrame:
    """One row per variant: detection, false alarms and localisation (see the module docstring)."""
    artifact = labels == 1
    rows = []
    for out in outputs:
        best_f1, _ = f1_max(labels, out.scores)
        tp = int(np.sum(out.flags & artifact))
        fp = int(np.sum(out.flags & ~artifact))
        fn = int(np.sum(~out.flags & artifact))
        row = {
            "variant": out.name,
            "auroc": image_auroc(labels, out.scores),
            "auprc": image_auprc(labels, out.scores),
            "f1_at_tau": 2 * tp / max(1, 2 * tp + fp + fn),
            "f1_best": best_f1,
            "recall_at_tau": tp / max(1, tp + fn),
            "false_alarms_benchmark_clean": fp / max(1, int(np.sum(~artifact))),
            **_localisation(out, gt, artifact),
            "tau": out.tau,
        }
        if clean_test_scores is not None:
            row["false_alarms_test_clean"] = float(np.mean(clean_test_scores[out.name] > out.tau))
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def breakdown_table(
    outputs: list[VariantOutput], labels: np.ndarray, gt: np.ndarray, groups: np.ndarray, metric: str
) -> pd.DataFrame:
    """``metric`` ("auroc" against all clean images, or "dice") per group (kind or severity) x variant
    (any objects with ``name``, ``scores`` and ``masks``)."""
    clean = labels == 0
    table = {}
    for out in outputs:
        column = {}
        for group in sorted(set(groups[labels == 1].tolist())):
            members = (groups == group) & (labels == 1)
            if metric == "auroc":
                sel = clean | members
                column[group] = image_auroc(labels[sel], out.scores[sel])
            else:
                masks = out.masks  # None for an image-level method
                column[group] = np.nan if masks is None else float(np.mean(dice(masks[members], gt[members],
                                                                                   axis=(1, 2))))
        table[out.name] = column
    return pd.DataFrame(table)


def write_report(
    out_dir: Path,
    summary: pd.DataFrame,
    per_kind_auroc: pd.DataFrame,
    per_kind_dice: pd.DataFrame,
    per_severity_auroc: pd.DataFrame,
    per_severity_dice: pd.DataFrame,
    context: dict,
) -> Path:
    """``report.md`` plus one CSV per table in ``out_dir``; returns the report path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in (("summary", summary), ("per_kind_auroc", per_kind_auroc), ("per_kind_dice", per_kind_dice),
                        ("per_severity_auroc", per_severity_auroc), ("per_severity_dice", per_severity_dice)):
        frame.to_csv(out_dir / f"{name}.csv", float_format="%.4f")
    lines = [
        "# SAFEGEN evaluation",
        "",
        *(f"- {k}: {v}" for k, v in context.items()),
        "",
        "## Detection, false alarms and localisation per variant",
        "",
        markdown_table(summary),
        "",
        "## Image AUROC per artifact kind (each kind against all clean images)",
        "",
        markdown_table(per_kind_auroc),
        "",
        "## Dice at tau per artifact kind (mean over that kind's images)",
        "",
        markdown_table(per_kind_dice),
        "",
        "## Image AUROC per severity",
        "",
        markdown_table(per_severity_auroc),
        "",
        "## Dice at tau per severity",
        "",
        markdown_table(per_severity_dice),
        "",
        "![AUROC per kind](auroc_per_kind.png)",
        "",
        "![Examples](examples.png)",
        "",
    ]
    report = out_dir / "report.md"
    report.write_text("\n".join(lines))
    return report


def write_plots(out_dir: Path, per_kind_auroc: pd.DataFrame, images: np.ndarray, gt: np.ndarray,
                combined: VariantOutput, labels: np.ndarray) -> None:
    """A bar chart of AUROC per kind and a montage of the best and worst localised artifacts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ax = per_kind_auroc.plot.bar(figsize=(10, 4), ylim=(0.4, 1.0), rot=30)
    ax.set_ylabel("image AUROC")
    ax.axhline(0.95, color="gray", linestyle="--", linewidth=1)
    ax.figure.tight_layout()
    ax.figure.savefig(out_dir / "auroc_per_kind.png", dpi=100)
    plt.close(ax.figure)

    artifact = np.flatnonzero(labels == 1)
    scores = dice(combined.masks[artifact], gt[artifact], axis=(1, 2))
    order = artifact[np.argsort(scores)]
    picks = list(order[-4:][::-1]) + list(order[:4])
    fig, axes = plt.subplots(3, len(picks), figsize=(2 * len(picks), 6.3))
    for col, i in enumerate(picks):
        d = float(dice(combined.masks[i], gt[i]))
        axes[0, col].imshow(images[i], cmap="gray", vmin=0, vmax=1)
        axes[0, col].contour(gt[i], levels=[0.5], colors="lime", linewidths=0.8)
        axes[0, col].set_title(("best" if col < 4 else "worst") + f" Dice {d:.2f}", fontsize=8)
        axes[1, col].imshow(combined.maps[i], cmap="inferno")
        axes[2, col].imshow(images[i], cmap="gray", vmin=0, vmax=1)
        axes[2, col].imshow(np.ma.masked_where(~combined.masks[i], combined.masks[i]), cmap="autumn", alpha=0.6)
        for row in range(3):
            axes[row, col].axis("off")
    for row, text in enumerate(("image + true mask", "combined map", "mask at tau")):
        axes[row, 0].text(-0.1, 0.5, text, transform=axes[row, 0].transAxes, rotation=90, va="center", ha="right",
                          fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "examples.png", dpi=100)
    plt.close(fig)


def false_alarm_curve(calib_scores: np.ndarray, clean_scores: np.ndarray, artifact_scores: np.ndarray,
                      taus: np.ndarray) -> pd.DataFrame:
    """Share of calibration / clean test / artifact slices scoring above each tau (the calibration plot)."""
    rows = {
        "false_alarms_calib": [(calib_scores > t).mean() for t in taus],
        "false_alarms_test_clean": [(clean_scores > t).mean() for t in taus],
        "recall_artifacts": [(artifact_scores > t).mean() for t in taus],
    }
    frame = pd.DataFrame(rows, index=pd.Index(np.round(taus, 3), name="tau"))
    return frame


def small_subset(labels: np.ndarray, kinds: np.ndarray, severities: np.ndarray, *, per_group: int = 1,
                 seed: int = 0) -> np.ndarray:
    """Indices of a quick benchmark: ``per_group`` artifact images per kind and severity and as many clean ones."""
    rng = np.random.default_rng(seed)
    picks = []
    for kind in sorted(set(kinds[labels == 1].tolist())):
        for severity in sorted(set(severities[labels == 1].tolist())):
            members = np.flatnonzero((labels == 1) & (kinds == kind) & (severities == severity))
            picks.extend(rng.choice(members, size=min(per_group, len(members)), replace=False).tolist())
    clean = np.flatnonzero(labels == 0)
    picks.extend(rng.choice(clean, size=min(len(picks), len(clean)), replace=False).tolist())
    return np.sort(np.asarray(picks, dtype=int))


@dataclass
class EvaluationRun:
    """What :func:`run_evaluation` wrote (all under ``out_dir``) and its headline tables."""

    out_dir: Path
    summary: pd.DataFrame
    per_kind_auroc: pd.DataFrame
    explainer_summary: pd.DataFrame | None = None
    seconds: float = 0.0
    context: dict = field(default_factory=dict)


def run_evaluation(
    scorer: Scorer,
    benchmark: dict[str, np.ndarray],
    clean_test: np.ndarray,
    out_dir: Path,
    *,
    explainers: list | None = None,
    context: dict | None = None,
    progress=None,
) -> EvaluationRun:
    """Everything ``python -m workflows.cli evaluate`` computes, written to ``out_dir``.

    Files: ``report.md``; ``summary.csv`` and the per-kind / per-severity tables; ``scores.csv``
    (each benchmark image's kind, severity, label and score per variant: the ROC curves);
    ``clean_test_scores.csv``; ``false_alarms_vs_tau.csv`` (the calibration plot); ``context.json``;
    the plots; and with ``explainers`` the ``explainer_*`` tables and plots.

    Args:
        scorer: the calibrated scorer.
        benchmark: arrays of ``benchmark.npz`` (``images``, ``masks``, ``labels``, ``kinds``, ``severities``).
        clean_test: ``(M, H, W)`` real clean slices never calibrated on.
        out_dir: output folder (created).
        explainers: :class:`core.explain.Explainer` objects to compare (None: skip).
        context: extra lines for the report (command, paths).
        progress: called with the number of slices done.
    """
    images, gt = benchmark["images"], benchmark["masks"].astype(bool)
    labels = benchmark["labels"].astype(int)
    kinds, severities = benchmark["kinds"].astype(str), benchmark["severities"].astype(int)
    start = time.perf_counter()
    outputs, seconds = variant_outputs(scorer, images, progress=progress)
    clean_outputs, _ = variant_outputs(scorer, clean_test, progress=progress)
    clean_scores = {o.name: o.scores for o in clean_outputs}
    summary = summary_table(outputs, labels, gt, clean_scores)
    severity_names = np.array([f"severity {s}" for s in severities])
    tables = (
        breakdown_table(outputs, labels, gt, kinds, "auroc"),
        breakdown_table(outputs, labels, gt, kinds, "dice"),
        breakdown_table(outputs, labels, gt, severity_names, "auroc"),
        breakdown_table(outputs, labels, gt, severity_names, "dice"),
    )
    for frame, index in zip(tables, ("kind", "kind", "severity", "severity"), strict=True):
        frame.index.name = index
    info = {
        **(context or {}),
        "benchmark": f"{len(images)} slices, {int(labels.sum())} with artifacts",
        "clean test slices for false alarms": f"{len(clean_test)} real slices, never calibrated on",
        "alpha": f"{scorer.alpha:.2f}; false-alarm rate {scorer.false_alarm_rate:.0%} -> tau {scorer.tau:.3f}",
        "scoring time": f"{seconds['total'] / max(1, len(images)) * 1e3:.0f} ms per slice with both diffusion maps",
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = write_report(out_dir, summary, *tables, info)
    combined = next(o for o in outputs if o.name == "combined")
    write_plots(out_dir, tables[0], images, gt, combined, labels)
    per_image = pd.DataFrame({"kind": kinds, "severity": severities, "label": labels,
                              **{f"score_{o.name}": o.scores for o in outputs}})
    per_image.index.name = "image"
    per_image.to_csv(out_dir / "scores.csv", float_format="%.5f")
    pd.DataFrame({f"score_{k}": v for k, v in clean_scores.items()}).to_csv(
        out_dir / "clean_test_scores.csv", float_format="%.5f", index_label="slice")
    taus = np.linspace(0.0, max(10.0, 2 * scorer.tau), 201)
    false_alarm_curve(scorer.calibration.calibrator(scorer.alpha).scores, clean_scores["combined"],
                      combined.scores[labels == 1], taus).to_csv(out_dir / "false_alarms_vs_tau.csv",
                                                                 float_format="%.4f")
    explained = None
    if explainers:
        artifact = labels == 1
        explained, _ = evaluate_explainers(
            explainers, images[artifact], gt[artifact], kinds[artifact], severity_names[artifact], clean_test,
            scorer.tau, out_dir, report, flags=combined.flags[artifact], progress=progress,
        )
    info["tau"] = scorer.tau
    info["alpha_value"] = scorer.alpha
    (out_dir / "context.json").write_text(json.dumps(info, indent=1))
    return EvaluationRun(out_dir, summary, tables[0], explained, time.perf_counter() - start, info)


# The Makefile's test benchmark (``make benchmark``): the size the README reports.
TEST_BENCHMARK_PER_GROUP = 4


def ensure_benchmark(reference_dir: Path, benchmark_dir: Path) -> None:
    """Build the reference slices and the test benchmark as ``make benchmark`` does, if missing (5 s)."""
    ensure_reference(reference_dir)
    if not (Path(benchmark_dir) / "benchmark.npz").is_file():
        benchmark_from_reference(reference_dir, "test", benchmark_dir, seed=SIMULATED_TEST_SEED,
                                 n_per_kind_severity=TEST_BENCHMARK_PER_GROUP)


def load_evaluation(out_dir: Path) -> dict[str, pd.DataFrame | dict] | None:
    """The tables an :func:`run_evaluation` wrote to ``out_dir`` (None when there is none).

    Keys: ``context`` (dict), ``summary``, ``per_kind_auroc``, ``scores``, ``false_alarms``, and when
    explainers were evaluated ``explainer_summary``, ``explainer_dice_per_kind``, ``explainer_deletion``;
    when ``evaluate --methods`` wrote to the same folder, ``methods`` and its per-kind tables.
    """
    out_dir = Path(out_dir)
    if not (out_dir / "summary.csv").is_file() or not (out_dir / "context.json").is_file():
        return None
    tables: dict[str, pd.DataFrame | dict] = {"context": json.loads((out_dir / "context.json").read_text())}
    for key, name in (("summary", "summary"), ("per_kind_auroc", "per_kind_auroc"), ("scores", "scores"),
                      ("false_alarms", "false_alarms_vs_tau"), ("explainer_summary", "explainer_summary"),
                      ("explainer_dice_per_kind", "explainer_dice_per_kind"),
                      ("explainer_deletion", "explainer_deletion"), ("methods", "methods"),
                      ("methods_auroc_per_kind", "methods_auroc_per_kind"),
                      ("methods_dice_per_kind", "methods_dice_per_kind"), ("methods_subset", "methods_subset")):
        path = out_dir / f"{name}.csv"
        if path.is_file():
            tables[key] = pd.read_csv(path, index_col=0)
    return tables


def load_benchmark(benchmark_dir: Path, *, small: bool = False) -> dict[str, np.ndarray]:
    """The arrays of ``benchmark_dir/benchmark.npz``; ``small``: only the :func:`small_subset`."""
    bench = dict(np.load(Path(benchmark_dir) / "benchmark.npz"))
    if small:
        keep = small_subset(bench["labels"], bench["kinds"].astype(str), bench["severities"])
        n = len(bench["labels"])
        bench = {k: v[keep] if v.ndim and len(v) == n else v for k, v in bench.items()}
    return bench


def clean_test_slices(reference_dir: Path) -> np.ndarray:
    """The real (not augmented) slices of the reference ``test`` split: clean scans never calibrated on."""
    test = load_split(reference_dir, "test")
    return test.images[test.augmentation == 0]
