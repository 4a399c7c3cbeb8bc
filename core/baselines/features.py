"""Patch features for the feature-based baselines, from SAFEGEN's own autoencoder encoder.

PaDiM and PatchCore use an ImageNet-pretrained CNN (ResNet / WideResNet) as a frozen feature
extractor. No pretrained weights can be downloaded here, so these baselines use the encoder of the
autoencoder this project trains on the same real normal slices (``models/autoencoder_mri_t1.pt``):
a much smaller, domain-specific network. Its first three stages give 16, 32 and 64 channels at
64 x 64, 32 x 32 and 16 x 16; they are pooled / upsampled to one 32 x 32 grid (a 4 x 4-pixel patch
of the 128 x 128 slice per position) and concatenated: 112 channels per patch.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.detectors.autoencoder import AutoencoderDetector
from core.profiles import AUTOENCODER_WEIGHTS

FEATURE_GRID = 32
STAGES = ("encode_0", "encode_1", "encode_2")


class EncoderFeatures:
    """Frozen multi-scale features of the autoencoder's encoder (see the module docstring)."""

    def __init__(self, autoencoder=None, *, batch_size: int = 32) -> None:
        if autoencoder is None:
            autoencoder = AutoencoderDetector.load(AUTOENCODER_WEIGHTS)
        self.encoder = autoencoder.model.encode.eval()
        self.batch_size = batch_size

    @torch.no_grad()
    def __call__(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W)`` slices -> ``(N, C, 32, 32)`` float32 features."""
        out = []
        for start in range(0, len(images), self.batch_size):
            x = torch.from_numpy(np.asarray(images[start:start + self.batch_size], np.float32)[:, None])
            maps = []
            for name, stage in self.encoder.named_children():
                x = stage(x)
                if name in STAGES:
                    maps.append(F.interpolate(x, size=(FEATURE_GRID, FEATURE_GRID), mode="bilinear",
                                              align_corners=False) if x.shape[-1] != FEATURE_GRID else x)
                if name == STAGES[-1]:
                    break
            out.append(torch.cat(maps, dim=1).numpy())
        return np.concatenate(out).astype(np.float32)


def to_image_grid(maps: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """``(N, h, w)`` patch maps -> ``(N, size, size)`` (bilinear), smoothed with a Gaussian of ``sigma`` pixels."""
    from scipy.ndimage import gaussian_filter

    x = torch.from_numpy(np.asarray(maps, np.float32)[:, None])
    up = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
    return gaussian_filter(up, sigma=(0, sigma, sigma)).astype(np.float32) if sigma > 0 else up
