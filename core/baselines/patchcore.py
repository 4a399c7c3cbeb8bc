"""PatchCore (Roth et al. 2022, "Towards total recall in industrial anomaly detection"): a memory
bank of normal patch features, reduced by greedy coreset selection; a patch's anomaly is the
distance to its nearest neighbour in the bank.

As in the paper: locally aware patch features (a 3 x 3 average of the neighbourhood), a greedy
k-center coreset of ``coreset`` of the bank (on a seeded random projection to 64 dimensions, as the
paper's implementation does), nearest-neighbour distance per patch, the map upsampled and smoothed
(sigma 4).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.baselines.base import Baseline
from core.baselines.features import EncoderFeatures, to_image_grid


class PatchCoreBaseline(Baseline):
    name = "patchcore"
    title = "PatchCore (own encoder)"
    reference = "Roth et al. 2022, arXiv:2106.08265"
    differs = ("Features from SAFEGEN's own autoencoder encoder instead of an ImageNet WideResNet (no download "
               "here); a 10 % coreset of the patches of the 240 reference train slices; image score from the "
               "calibrated map like every method, not the paper's reweighted maximum.")

    def __init__(self, *, coreset: float = 0.1, seed: int = 0, features: EncoderFeatures | None = None,
                 max_bank: int = 40_000) -> None:
        self.coreset, self.seed, self.max_bank = coreset, seed, max_bank
        self.features = features
        self.bank: torch.Tensor | None = None

    def _patches(self, images: np.ndarray) -> torch.Tensor:
        self.features = self.features or EncoderFeatures()
        feats = torch.from_numpy(self.features(images))
        return F.avg_pool2d(feats, kernel_size=3, stride=1, padding=1, count_include_pad=False)

    def fit(self, train: np.ndarray) -> "PatchCoreBaseline":
        feats = self._patches(train)
        n, c, h, w = feats.shape
        bank = feats.permute(0, 2, 3, 1).reshape(-1, c)
        rng = np.random.default_rng(self.seed)
        if len(bank) > self.max_bank:  # a seeded subsample keeps the greedy selection affordable on a CPU
            bank = bank[torch.from_numpy(rng.choice(len(bank), self.max_bank, replace=False))]
        self.bank = bank[greedy_coreset(bank, max(1, int(self.coreset * len(bank))), seed=self.seed)]
        self.grid = (h, w)
        return self

    @torch.no_grad()
    def raw_maps(self, images: np.ndarray) -> np.ndarray:
        if self.bank is None:
            raise RuntimeError("fit() the PatchCore baseline on normal slices first")
        feats = self._patches(images)
        n, c, h, w = feats.shape
        query = feats.permute(0, 2, 3, 1).reshape(-1, c)
        nearest = torch.cat([torch.cdist(chunk, self.bank).min(dim=1).values for chunk in query.split(4096)])
        return to_image_grid(nearest.reshape(n, h, w).numpy(), images.shape[-1], sigma=4.0)


@torch.no_grad()
def greedy_coreset(points: torch.Tensor, k: int, *, seed: int = 0, projection: int = 64) -> torch.Tensor:
    """Indices of ``k`` points chosen by greedy k-center selection (each next point is the farthest
    from those chosen so far), on a seeded random projection of the points."""
    generator = torch.Generator().manual_seed(seed)
    if points.shape[1] > projection:
        points = points @ torch.randn(points.shape[1], projection, generator=generator) / projection**0.5
    chosen = [int(torch.randint(len(points), (1,), generator=generator))]
    distance = torch.cdist(points, points[chosen]).squeeze(1)
    for _ in range(k - 1):
        index = int(torch.argmax(distance))
        chosen.append(index)
        distance = torch.minimum(distance, torch.cdist(points, points[index:index + 1]).squeeze(1))
    return torch.tensor(chosen)
