"""``python -m core.cli evaluate``: detection and localisation on a simulated-artifact benchmark.

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

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.calibration import ConformalCalibrator
from core.detectors.base import top_fraction_mean
from core.metrics import aupro, dice, f1_max, image_auprc, image_auroc, iou, pixel_auroc
from core.scoring import Scorer, combine

VARIANTS = ("diffusion", "diffusion_nll", "autoencoder", "combined")


@dataclass
class VariantOutput:
    """One variant's calibrated maps, slice scores and threshold on the benchmark."""

    name: str
    maps: np.ndarray
    scores: np.ndarray
    tau: float
    description: str

    @property
    def flags(self) -> np.ndarray:
        return self.scores > self.tau

    @property
    def masks(self) -> np.ndarray:
        return (self.maps > self.tau) & self.flags[:, None, None]


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
    pred = output.masks[artifact]
    return {
        "dice": float(np.mean(dice(pred, gt[artifact], axis=(1, 2)))),
        "iou": float(np.mean(iou(pred, gt[artifact], axis=(1, 2)))),
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
            "pixel_auroc": pixel_auroc(out.maps[artifact], gt[artifact]),
            "aupro": aupro(out.maps[artifact], gt[artifact]),
            "tau": out.tau,
        }
        if clean_test_scores is not None:
            row["false_alarms_test_clean"] = float(np.mean(clean_test_scores[out.name] > out.tau))
        rows.append(row)
    return pd.DataFrame(rows).set_index("variant")


def breakdown_table(
    outputs: list[VariantOutput], labels: np.ndarray, gt: np.ndarray, groups: np.ndarray, metric: str
) -> pd.DataFrame:
    """``metric`` ("auroc" against all clean images, or "dice") per group (kind or severity) x variant."""
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
                column[group] = float(np.mean(dice(out.masks[members], gt[members], axis=(1, 2))))
        table[out.name] = column
    return pd.DataFrame(table)


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A plain Markdown table (no ``tabulate`` dependency)."""
    cols = [frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for index, row in frame.iterrows():
        cells = [f"{v:.{digits}f}" if isinstance(v, (float, np.floating)) else str(v) for v in row.tolist()]
        lines.append("| " + " | ".join([str(index), *cells]) + " |")
    return "\n".join(lines)


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
