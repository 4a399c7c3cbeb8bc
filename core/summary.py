"""A one-page summary of a scored scan (PNG or PDF), for a report, an e-mail or a case file.

The page holds what the dashboard shows for the slice being read: the verdict at tau, the scores,
the slice with the heatmap above tau and the mask outlined, the heatmap alone, the per-slice score
curve of a volume, the unsafe-region numbers, the settings, and the models' limits in one line.
"""

from __future__ import annotations

import io
from typing import Literal

import numpy as np

from core.masks import summarise_mask, unsafe_mask
from core.render import apply_window, overlay_heatmap
from core.types import ScanResult, Volume, Window

SCOPE_LINE = ("Research use only. Brain-MRI T1 models trained on two real subjects with augmentation; "
              "benchmark image AUROC 0.60, pixel AUROC 0.84 (README).")


def summary_page(
    result: ScanResult,
    volume: Volume,
    tau: float,
    index: int,
    window: Window,
    *,
    cmap: str = "inferno",
    opacity: float = 0.55,
    fmt: Literal["png", "pdf"] = "png",
) -> bytes:
    """Render the summary of ``result`` at tolerance ``tau`` on display slice ``index``.

    Args:
        result: the scored scan (its ``explainer`` made the heatmap).
        volume: the scan itself.
        tau: tolerance (calibrated z units) of the verdict and the mask.
        index: display slice to show (0 for a 2-D image).
        window: display window of the slice.
        cmap, opacity: the heatmap's colour map and weight.
        fmt: ``"png"`` or ``"pdf"``.

    Returns:
        The file's bytes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if fmt not in ("png", "pdf"):
        raise ValueError(f"fmt must be 'png' or 'pdf', got {fmt!r}")
    flags = result.flags_at(tau)
    gray = apply_window(volume.display_slice(index), window)
    heat = volume.display_slice_of(result.heatmap, index)
    mask = unsafe_mask(heat, tau, result.mask_flags_at(tau)[index : index + 1]).astype(bool)
    high = max(float(np.nanmax(result.heatmap)), tau + 1.0)
    overlay = overlay_heatmap(gray, heat, low=tau, high=high, opacity=opacity, cmap=cmap, mask=mask)
    totals = summarise_mask(result.mask_at(tau), result.spacing)

    fig = plt.figure(figsize=(8.27, 11.69 if fmt == "pdf" else 9.0))  # A4 portrait for the PDF
    grid = fig.add_gridspec(3, 2, height_ratios=(0.9, 2.2, 1.2 if volume.is_3d else 0.05))
    head = fig.add_subplot(grid[0, :])
    head.axis("off")
    verdict = "POSSIBLY UNSAFE" if flags.any() else "No artifact found"
    head.text(0, 0.95, f"SAFEGEN summary: {volume.name}", fontsize=13, weight="bold", va="top")
    head.text(0, 0.70, f"{verdict} at τ = {tau:.2f}: {int(flags.sum())} of "
                       f"{int(np.isfinite(result.slice_scores).sum())} scored slice(s) above τ",
              fontsize=11, color="#b00020" if flags.any() else "#1b5e20", va="top")
    area = f"{totals.volume_ml:.2f} ml" if volume.is_3d else f"{totals.total_mm2:.0f} mm²"
    lines = [
        f"Score (worst slice {result.worst_slice + 1}) {result.score:.2f} z · p-value vs real slices "
        f"{result.p_value:.3f} · default τ = {result.tau:.2f} (5 % of clean slices)",
        f"Unsafe region at τ: {area} in {totals.n_regions} region(s) · {result.detector}",
        *result.warnings[:2],
    ]
    for row, line in enumerate(lines):
        head.text(0, 0.48 - row * 0.16, line, fontsize=8, va="top", wrap=True)

    spacing = volume.display_spacing()
    aspect = spacing[0] / spacing[1]
    left, right = fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[1, 1])
    left.imshow(overlay, aspect=aspect)
    left.set_title(f"Slice {index + 1} of {volume.n_slices}: heatmap above τ, mask outlined", fontsize=8)
    shown = right.imshow(heat, cmap=cmap, vmin=0.0, vmax=high, aspect=aspect)
    right.set_title(f"Heatmap ({result.explainer}), z units", fontsize=8)
    fig.colorbar(shown, ax=right, fraction=0.046, pad=0.02)
    for ax in (left, right):
        ax.set_xticks([])
        ax.set_yticks([])
    if volume.is_3d:
        curve = fig.add_subplot(grid[2, :])
        numbers = np.arange(1, len(result.slice_scores) + 1)
        curve.plot(numbers, result.slice_scores, color="#37474f", linewidth=1)
        curve.axhline(tau, color="#b00020", linestyle="--", linewidth=1, label=f"τ = {tau:.2f}")
        curve.axvline(index + 1, color="#1565c0", linewidth=1, label=f"slice {index + 1}")
        curve.set_xlabel("slice")
        curve.set_ylabel("slice score (z)")
        curve.legend(fontsize=7)
    fig.text(0.01, 0.005, SCOPE_LINE, fontsize=6.5, color="#555555")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=110)
    plt.close(fig)
    return buffer.getvalue()
