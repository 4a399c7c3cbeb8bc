"""Turning slices into pixels a reader looks at: display windows and heatmap overlays.

Pure numpy, no Streamlit, so the dashboard, the CLI's PNG exports and the tests share one
implementation.
"""

from __future__ import annotations

import numpy as np

from core.masks import slice_outline
from core.preprocess import CT_WINDOWS
from core.types import Modality, Volume, Window

# The CT presets live with the normalisation that uses them; the viewer offers them by name.
CT_PRESETS: dict[str, Window] = {window.name: window for window in CT_WINDOWS.values()}


MAX_WINDOW_SAMPLE = 2**20


def auto_window(array: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5), name: str = "Auto") -> Window:
    """A window spanning robust percentiles of the non-background intensities.

    Arrays above :data:`MAX_WINDOW_SAMPLE` voxels are read on a regular sub-grid (every k-th voxel
    along each axis): percentiles of a million voxels are as good as of nine million, and the page
    computes this on every rerun (it took 128 ms of a 350 ms slider move on the MNI152 volume).
    """
    if array.size > MAX_WINDOW_SAMPLE:
        step = int(np.ceil((array.size / MAX_WINDOW_SAMPLE) ** (1.0 / array.ndim)))
        array = array[tuple(slice(None, None, step) for _ in range(array.ndim))]
    values = array[np.isfinite(array)]
    nonzero = values[values != values.min()]
    sample = nonzero if nonzero.size > 0.05 * values.size else values
    low, high = np.percentile(sample, percentiles)
    if high <= low:
        high = low + 1.0
    return Window(float((low + high) / 2.0), float(high - low), name)


def window_presets(volume: Volume) -> dict[str, Window]:
    """Window choices offered for a volume: the file's own window first, then modality presets."""
    presets: dict[str, Window] = {}
    if volume.window is not None:
        presets["From file"] = volume.window
    presets["Auto"] = auto_window(volume.array)
    if volume.modality is Modality.CT:
        presets.update(CT_PRESETS)
    presets["Full range"] = Window(
        float((volume.array.max() + volume.array.min()) / 2.0),
        float(max(volume.array.max() - volume.array.min(), 1e-6)),
        "Full range",
    )
    return presets


def apply_window(image: np.ndarray, window: Window) -> np.ndarray:
    """Map intensities through a linear window to 8-bit gray.

    Args:
        image: ``(H, W)`` in the image's own units.
        window: ``low`` maps to 0, ``high`` to 255, values outside are clipped.

    Returns:
        ``(H, W)`` uint8.
    """
    scaled = (image.astype(np.float32) - window.low) / max(window.width, 1e-6)
    return np.round(np.clip(scaled, 0.0, 1.0) * 255.0).astype(np.uint8)


# Perceptually uniform colour maps that stay readable for colour-blind readers and in grey print.
HEATMAP_COLORMAPS = ("inferno", "magma", "viridis", "cividis")
MASK_OUTLINE_RGB = (0, 255, 255)  # cyan: visible on every map above and on grey anatomy


def overlay_heatmap(
    gray_u8: np.ndarray,
    heatmap: np.ndarray,
    *,
    low: float,
    high: float,
    opacity: float = 0.5,
    cmap: str = "inferno",
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Blend a heatmap onto a grey slice; optionally outline a mask.

    Args:
        gray_u8: ``(H, W)`` uint8 windowed slice.
        heatmap: ``(H, W)`` map in its own units (SAFEGEN: calibrated z).
        low: pixels with ``heatmap <= low`` stay grey (pass ``tau`` to colour only what is above it).
        high: the value shown at the top of the colour map (clipped above).
        opacity: weight of the colour, 0 (grey only) to 1 (colour only) where coloured.
        cmap: a matplotlib colour map name (see :data:`HEATMAP_COLORMAPS`).
        mask: optional bool ``(H, W)``; its one-pixel outline is drawn in :data:`MASK_OUTLINE_RGB`.

    Returns:
        ``(H, W, 3)`` uint8 RGB.
    """
    from matplotlib import colormaps

    if gray_u8.shape != heatmap.shape:
        raise ValueError(f"slice {gray_u8.shape} and heatmap {heatmap.shape} differ in shape")
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    rgb = np.repeat(gray_u8[..., None], 3, axis=2).astype(np.float32)
    level = np.clip((heatmap - low) / max(high - low, 1e-6), 0.0, 1.0)
    colour = colormaps[cmap](level)[..., :3].astype(np.float32) * 255.0
    where = (heatmap > low)[..., None]
    out = np.where(where, (1.0 - opacity) * rgb + opacity * colour, rgb)
    if mask is not None:
        out[slice_outline(mask)] = MASK_OUTLINE_RGB
    return np.round(out).astype(np.uint8)
