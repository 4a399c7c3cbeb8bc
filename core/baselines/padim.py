"""PaDiM (Defard et al. 2021, "PaDiM: a patch distribution modeling framework for anomaly detection
and localization"): one multivariate Gaussian per patch position, the Mahalanobis distance of a new
patch to it is the anomaly map.

As in the paper: multi-scale features concatenated per position, a random subset of ``d`` feature
dimensions (seeded), a covariance regularised with ``0.01 I``, the distance map upsampled
bilinearly and smoothed with a Gaussian of sigma 4, the image score its maximum (here SAFEGEN's
top-1 % mean after calibration, for every method alike).
"""

from __future__ import annotations

import numpy as np

from core.baselines.base import Baseline
from core.baselines.features import EncoderFeatures, to_image_grid


class PaDiMBaseline(Baseline):
    name = "padim"
    title = "PaDiM (own encoder)"
    reference = "Defard et al. 2021, arXiv:2011.08785"
    differs = ("Features from SAFEGEN's own autoencoder encoder (16+32+64 channels on a 32 x 32 grid, 56 kept at "
               "random) instead of an ImageNet WideResNet, which cannot be downloaded here; fitted on the 240 "
               "reference train slices, so each position's Gaussian rests on few, augmented samples.")

    def __init__(self, *, dims: int = 56, seed: int = 0, features: EncoderFeatures | None = None) -> None:
        self.dims, self.seed = dims, seed
        self.features = features
        self.keep: np.ndarray | None = None
        self.mean: np.ndarray | None = None
        self.precision: np.ndarray | None = None

    def _features(self, images: np.ndarray) -> np.ndarray:
        self.features = self.features or EncoderFeatures()
        feats = self.features(images)  # (N, C, h, w)
        return feats[:, self.keep]

    def fit(self, train: np.ndarray) -> "PaDiMBaseline":
        self.features = self.features or EncoderFeatures()
        channels = self.features(train[:1]).shape[1]
        self.keep = np.sort(np.random.default_rng(self.seed).choice(channels, size=min(self.dims, channels),
                                                                    replace=False))
        feats = self._features(train)  # (N, d, h, w)
        n, d, h, w = feats.shape
        flat = feats.reshape(n, d, h * w).transpose(2, 0, 1).astype(np.float64)  # (P, N, d)
        self.mean = flat.mean(axis=1)  # (P, d)
        centred = flat - self.mean[:, None]
        cov = np.einsum("pni,pnj->pij", centred, centred) / max(n - 1, 1) + 0.01 * np.eye(d)
        self.precision = np.linalg.inv(cov).astype(np.float32)
        self.mean = self.mean.astype(np.float32)
        self.grid = (h, w)
        return self

    def raw_maps(self, images: np.ndarray) -> np.ndarray:
        if self.precision is None:
            raise RuntimeError("fit() the PaDiM baseline on normal slices first")
        feats = self._features(images)
        n, d, h, w = feats.shape
        diff = feats.reshape(n, d, h * w).transpose(0, 2, 1) - self.mean[None]  # (N, P, d)
        dist = np.sqrt(np.maximum(np.einsum("npi,pij,npj->np", diff, self.precision, diff), 0.0))
        return to_image_grid(dist.reshape(n, h, w), images.shape[-1], sigma=4.0)
