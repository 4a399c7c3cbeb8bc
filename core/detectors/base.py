"""What every detector returns, so scoring, explanations and the UI read one thing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch


@dataclass(frozen=True)
class AnomalyMaps:
    """Raw (uncalibrated) output of a detector for a batch of model-grid slices.

    Attributes:
        score: ``(B,)`` one number per slice; higher means less like the real training images.
        pixel_map: ``(B, H, W)`` per-pixel anomaly, same grid as the input.
        reconstruction: ``(B, H, W)`` the detector's pseudo-normal version of the input, if it has one.
    """

    score: np.ndarray
    pixel_map: np.ndarray
    reconstruction: np.ndarray | None = None


class Detector(Protocol):
    """A trained detector: slices on the model grid in, :class:`AnomalyMaps` out."""

    name: str

    def score_batch(self, images: torch.Tensor) -> AnomalyMaps:
        """Args: images ``(B, 1, H, W)`` float32 in [0, 1]. Returns: raw maps and scores."""
        ...


def top_fraction_mean(pixel_map: np.ndarray, fraction: float = 0.01) -> np.ndarray:
    """Image score from a pixel map: the mean of its highest ``fraction`` of pixels.

    A mean over the whole image would dilute a small artifact by the size of the normal anatomy
    around it; the maximum alone is at the mercy of one noisy pixel.

    Args:
        pixel_map: ``(B, H, W)``.
        fraction: share of pixels averaged, in (0, 1].

    Returns:
        ``(B,)``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    flat = pixel_map.reshape(len(pixel_map), -1)
    k = max(1, int(round(fraction * flat.shape[1])))
    return np.sort(flat, axis=1)[:, -k:].mean(axis=1)
