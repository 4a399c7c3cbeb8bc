"""Do the heatmaps point at the artifact? Explainers against the simulator's true masks.

Part of ``python -m workflows.cli evaluate``. On the artifact images of a benchmark, every explainer of
:mod:`core.explain` makes a map on the common calibrated scale, and its mask is ``map > tau`` with
small regions removed (the same tau as the score). Localisation is measured on **every** artifact
image, flagged or not, so that the explainers are compared on the same images whatever the
detector decided (the detection metrics live in :mod:`core.benchmark.evaluation`):

* Dice and IoU of the tau mask (mean over images; an empty mask scores 0), and Dice of the mask
  as the user sees it, drawn on flagged slices only (``dice_flagged``);
* pixel AUROC and AUPRO (threshold-free, pooled over images);
* pointing game: share of images whose map peaks inside the true mask (no margin);
* clean-pixel share: the share of tissue pixels of clean real slices above tau (same for every
  explainer if the quantile matching works);
* time per slice.

**Faithfulness (deletion).** For each artifact image and explainer, the top ``k`` % of pixels of
its map (``k`` relative to the slice's tissue area) are replaced by the autoencoder's
reconstruction, and the score drop ``S(x) - S(x_deleted)`` is recorded; the same number of random
tissue pixels is the reference. A faithful map lowers the score more than random pixels do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from core.explain import Explainer
from core.masks import unsafe_mask
from core.metrics import aupro, dice, iou, pixel_auroc, pointing_game
from core.scoring import FOREGROUND_LEVEL
from core.tables import markdown_table

DELETION_FRACTIONS = (0.01, 0.02, 0.05, 0.1, 0.2)


@dataclass
class ExplainerOutput:
    """One explainer's calibrated maps on the artifact images and on clean slices."""

    name: str
    maps: np.ndarray  # (N, H, W) artifact images
    clean_maps: np.ndarray  # (M, H, W) clean real slices
    seconds_per_slice: float

    def masks(self, tau: float) -> np.ndarray:
        """Each map's mask at ``tau`` by the one mask rule (:func:`core.masks.unsafe_mask`, every slice kept)."""
        return np.stack([unsafe_mask(m, tau) for m in self.maps]).astype(bool)


def explainer_outputs(explainers: list[Explainer], images: np.ndarray, clean: np.ndarray, *,
                      progress=None) -> list[ExplainerOutput]:
    """Maps of every explainer for ``(N, H, W)`` artifact images and ``(M, H, W)`` clean slices."""
    outputs = []
    for explainer in explainers:
        start = time.perf_counter()
        maps = explainer.maps(images[:, None], progress=progress)
        seconds = (time.perf_counter() - start) / max(1, len(images))
        clean_maps = explainer.maps(clean[:, None], progress=progress)
        outputs.append(ExplainerOutput(explainer.name.value, maps, clean_maps, seconds))
    return outputs


def explainer_summary(outputs: list[ExplainerOutput], gt: np.ndarray, clean: np.ndarray, tau: float,
                      flags: np.ndarray | None = None) -> pd.DataFrame:
    """One row per explainer (see the module docstring); ``gt`` ``(N, H, W)`` bool, ``flags`` ``(N,)``
    the score's flag of each artifact image (for ``dice_flagged``)."""
    tissue = clean > FOREGROUND_LEVEL
    rows = []
    for out in outputs:
        masks = out.masks(tau)
        row = {"explainer": out.name}
        if flags is not None:
            row["dice_flagged"] = float(np.mean(dice(masks & flags[:, None, None], gt, axis=(1, 2))))
        rows.append({
            **row,
            "dice_at_tau": float(np.mean(dice(masks, gt, axis=(1, 2)))),
            "iou_at_tau": float(np.mean(iou(masks, gt, axis=(1, 2)))),
            "pixel_auroc": pixel_auroc(out.maps, gt),
            "aupro": aupro(out.maps, gt),
            "pointing_game": pointing_game(out.maps, gt),
            "clean_pixels_above_tau": float(np.mean(out.clean_maps[tissue] > tau)),
            "ms_per_slice": out.seconds_per_slice * 1e3,
        })
    return pd.DataFrame(rows).set_index("explainer")


def explainer_breakdown(outputs: list[ExplainerOutput], gt: np.ndarray, groups: np.ndarray, tau: float,
                        metric: str) -> pd.DataFrame:
    """``metric`` ("dice" at tau or "pointing") per group (artifact kind or severity) x explainer."""
    table = {}
    for out in outputs:
        masks = out.masks(tau) if metric == "dice" else None
        column = {}
        for group in sorted(set(groups.tolist())):
            members = groups == group
            if metric == "dice":
                column[group] = float(np.mean(dice(masks[members], gt[members], axis=(1, 2))))
            elif metric == "pointing":
                column[group] = pointing_game(out.maps[members], gt[members])
            else:
                raise ValueError(f"metric must be 'dice' or 'pointing', got {metric!r}")
        table[out.name] = column
    return pd.DataFrame(table)


def deletion_curves(
    explainer: Explainer,
    images: np.ndarray,
    maps: dict[str, np.ndarray],
    *,
    fractions: tuple[float, ...] = DELETION_FRACTIONS,
    n_random: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean score drop when the top-``k`` pixels of each map (or random tissue pixels) are in-painted.

    Args:
        explainer: any explainer of the score (its score model and reconstruction are used).
        images: ``(N, H, W)`` artifact images.
        maps: explainer name -> ``(N, H, W)`` map.
        fractions: ``k`` as a share of each slice's tissue pixels.
        n_random: random draws averaged for the reference.
        seed: seeds the random pixels.

    Returns:
        rows = fractions, columns = explainers and ``random``: mean ``S(x) - S(x_deleted)``, z units.
    """
    x = torch.from_numpy(np.ascontiguousarray(images[:, None], dtype=np.float32))
    model = explainer.model
    with torch.no_grad():
        recon = explainer.reconstruct(x).numpy()[:, 0]
        base = model(x).numpy()

    def drop(keep_masks: np.ndarray) -> float:
        edited = np.where(keep_masks, recon, images)[:, None].astype(np.float32)
        with torch.no_grad():
            return float(np.mean(base - model(torch.from_numpy(edited)).numpy()))

    rng = np.random.default_rng(seed)
    flat_tissue = (images > FOREGROUND_LEVEL).reshape(len(images), -1)
    counts = flat_tissue.sum(axis=1)
    rows = {}
    for fraction in fractions:
        k = np.maximum(1, np.round(fraction * counts)).astype(int)
        row = {}
        for name, m in maps.items():
            order = np.argsort(-m.reshape(len(m), -1), axis=1)
            sel = np.zeros_like(flat_tissue)
            for i in range(len(m)):
                sel[i, order[i, : k[i]]] = True
            row[name] = drop(sel.reshape(images.shape))
        random_drops = []
        for _ in range(n_random):
            sel = np.zeros_like(flat_tissue)
            for i in range(len(images)):
                candidates = np.flatnonzero(flat_tissue[i])
                sel[i, rng.choice(candidates, size=min(k[i], len(candidates)), replace=False)] = True
            random_drops.append(drop(sel.reshape(images.shape)))
        row["random"] = float(np.mean(random_drops))
        rows[fraction] = row
    frame = pd.DataFrame(rows).T
    frame.index.name = "fraction deleted"
    return frame


def write_explainer_plots(out_dir, outputs: list[ExplainerOutput], images: np.ndarray, gt: np.ndarray, tau: float,
                          per_kind_dice: pd.DataFrame, deletion: pd.DataFrame) -> list[str]:
    """Bar chart of Dice per kind, the deletion curves, and a best/worst montage per explainer."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    ax = per_kind_dice.plot.bar(figsize=(10, 4), rot=30)
    ax.set_ylabel("Dice at tau")
    ax.set_title("Dice of the tau mask per artifact kind and explainer")
    ax.figure.tight_layout()
    ax.figure.savefig(out_dir / "explainer_dice_per_kind.png", dpi=100)
    plt.close(ax.figure)
    written.append("explainer_dice_per_kind.png")

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name in deletion.columns:
        style = dict(color="gray", linestyle="--") if name == "random" else {}
        ax.plot(deletion.index * 100, deletion[name], marker="o", label=name, **style)
    ax.set_xlabel("pixels in-painted (% of tissue)")
    ax.set_ylabel("score drop (z)")
    ax.set_title("Deletion: top pixels of each map vs random")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "explainer_deletion.png", dpi=100)
    plt.close(fig)
    written.append("explainer_deletion.png")

    for out in outputs:
        masks = out.masks(tau)
        scores = dice(masks, gt, axis=(1, 2))
        order = np.argsort(scores, kind="stable")
        picks = list(order[-4:][::-1]) + list(order[:4])
        fig, axes = plt.subplots(2, len(picks), figsize=(2 * len(picks), 4.3))
        for col, i in enumerate(picks):
            axes[0, col].imshow(images[i], cmap="gray", vmin=0, vmax=1)
            axes[0, col].contour(gt[i], levels=[0.5], colors="lime", linewidths=0.8)
            axes[0, col].set_title(("best" if col < 4 else "worst") + f" Dice {scores[i]:.2f}", fontsize=8)
            axes[1, col].imshow(images[i], cmap="gray", vmin=0, vmax=1)
            axes[1, col].imshow(np.ma.masked_where(out.maps[i] <= 0, out.maps[i]), cmap="inferno", alpha=0.6,
                                vmin=0, vmax=max(tau * 1.5, 1e-6))
            if masks[i].any():
                axes[1, col].contour(masks[i], levels=[0.5], colors="cyan", linewidths=0.8)
            for row in range(2):
                axes[row, col].axis("off")
        fig.suptitle(f"{out.name}: true mask (green), map and tau mask (cyan)", fontsize=9)
        fig.tight_layout()
        name = f"explainer_examples_{out.name}.png"
        fig.savefig(out_dir / name, dpi=100)
        plt.close(fig)
        written.append(name)
    return written


def evaluate_explainers(
    explainers: list[Explainer],
    images: np.ndarray,
    gt: np.ndarray,
    kinds: np.ndarray,
    severities: np.ndarray,
    clean: np.ndarray,
    tau: float,
    out_dir: Path,
    report: Path,
    *,
    flags: np.ndarray | None = None,
    progress=None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The explainer part of ``evaluate``: tables (CSV), plots and a section appended to ``report``.

    Args:
        explainers: the explainers to compare (the first one's score model runs the deletion test).
        images, gt: ``(N, H, W)`` artifact images and their true masks.
        kinds, severities: ``(N,)`` group labels of the artifact images.
        clean: ``(M, H, W)`` clean real slices (false-positive pixels).
        tau: the score's tolerance, used for every explainer.
        out_dir: where CSVs and plots go; ``report``: the Markdown report to extend.
        flags: ``(N,)`` the score's flag of each artifact image (Dice of the masks users see).
        progress: called with slices done.

    Returns:
        The summary table (one row per explainer) and the deletion curves.
    """
    outputs = explainer_outputs(explainers, images, clean, progress=progress)
    summary = explainer_summary(outputs, gt, clean, tau, flags)
    tables = {
        "explainer_dice_per_kind": explainer_breakdown(outputs, gt, kinds, tau, "dice"),
        "explainer_pointing_per_kind": explainer_breakdown(outputs, gt, kinds, tau, "pointing"),
        "explainer_dice_per_severity": explainer_breakdown(outputs, gt, severities, tau, "dice"),
    }
    tables["explainer_dice_per_kind"].index.name = "kind"
    tables["explainer_pointing_per_kind"].index.name = "kind"
    tables["explainer_dice_per_severity"].index.name = "severity"
    deletion = deletion_curves(explainers[0], images, {o.name: o.maps for o in outputs})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = write_explainer_plots(out_dir, outputs, images, gt, tau, tables["explainer_dice_per_kind"], deletion)
    summary.to_csv(out_dir / "explainer_summary.csv", float_format="%.4f")
    deletion.to_csv(out_dir / "explainer_deletion.csv", float_format="%.4f")
    for name, frame in tables.items():
        frame.to_csv(out_dir / f"{name}.csv", float_format="%.4f")
    shap = next((e for e in explainers if e.name == "shap"), None)
    lines = [
        "",
        "## Explainers: localisation of the tau mask on every artifact image",
        "",
        f"{len(images)} artifact images, flagged or not; masks at tau {tau:.3f} without regions under 8 grid "
        f"pixels; clean pixels = tissue pixels of {len(clean)} clean real slices above tau."
        + (f" SHAP: {shap.settings.shap_samples} samples, {shap.settings.shap_regions} regions, background = "
           f"{shap.settings.shap_background}." if shap else ""),
        "",
        markdown_table(summary),
        "",
        "## Dice at tau per artifact kind and explainer",
        "",
        markdown_table(tables["explainer_dice_per_kind"]),
        "",
        "## Pointing game per artifact kind and explainer",
        "",
        markdown_table(tables["explainer_pointing_per_kind"]),
        "",
        "## Dice at tau per severity and explainer",
        "",
        markdown_table(tables["explainer_dice_per_severity"]),
        "",
        "## Faithfulness: score drop (z) when the top pixels of each map are in-painted with the reconstruction",
        "",
        markdown_table(deletion),
        "",
        *(f"![{p}]({p})\n" for p in plots),
    ]
    with Path(report).open("a") as stream:
        stream.write("\n".join(lines))
    return summary, deletion
