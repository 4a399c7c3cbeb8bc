"""Turning slices into pixels a reader looks at: display windows and heatmap overlays.

Pure numpy, no Streamlit, so the dashboard, the CLI's PNG exports and the tests share one
implementation.
"""

from __future__ import annotations

import numpy as np

from core.preprocess import CT_WINDOWS
from core.types import Modality, Volume, Window

# The CT presets live with the normalisation that uses them; the viewer offers them by name.
CT_PRESETS: dict[str, Window] = {window.name: window for window in CT_WINDOWS.values()}


def auto_window(array: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.5), name: str = "Auto") -> Window:
    """A window spanning robust percentiles of the non-background intensities."""
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
