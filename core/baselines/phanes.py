"""PHANES-style pseudo-healthy in-painting (Bercea et al. 2023, "Generalizing unsupervised anomaly
detection: towards unbiased pathology screening", arXiv:2303.08452).

PHANES: (1) a latent generative model reconstructs the image; (2) the residual is thresholded
(tuned on healthy scans for at most 5 % false positives) into a mask of suspect regions; (3) a
diffusion model in-paints the masked region with pseudo-healthy tissue while keeping the rest of
the image; (4) the anomaly map is the residual to that pseudo-healthy image.

Here, with what this project trains on real normal slices:

1. SAFEGEN's autoencoder is the latent reconstruction; its smoothed residual is the first map;
2. the mask is that map above the 95th percentile of the healthy ``train`` tissue pixels
   (5 % pixel false positives), dilated by 2 pixels;
3. the project's DDPM in-paints it, RePaint-style (Lugmayr et al. 2022): the composite of the
   autoencoder's reconstruction inside the mask and the image outside is noised to step ``level``
   and denoised with DDIM; after every step the region outside the mask is replaced with the image
   itself, noised to the same step;
4. the map is the smoothed residual ``|x - pseudo-healthy|``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.baselines.base import TISSUE_LEVEL, Baseline
from core.detectors.autoencoder import AutoencoderDetector, smooth
from core.detectors.diffusion import DiffusionDetector, from_diffusion_grid, to_diffusion_grid
from core.profiles import AUTOENCODER_WEIGHTS, DIFFUSION_WEIGHTS


class PHANESBaseline(Baseline):
    name = "phanes"
    title = "PHANES-style (AE mask + DDPM in-painting)"
    reference = "Bercea et al. 2023, arXiv:2303.08452"
    differs = ("SAFEGEN's own autoencoder stands in for PHANES's latent generative model and its 64 x 64 DDPM "
               "(DDIM from step 400, RePaint-style known-region replacement) for the in-painting network; "
               "the mask threshold is the 95th percentile of healthy train tissue pixels (the paper tunes it for "
               "5 % false positives on healthy scans too).")

    def __init__(self, *, level: int = 400, quantile: float = 0.95, dilate: int = 2, seed: int = 0,
                 batch_size: int = 32) -> None:
        self.level, self.quantile, self.dilate, self.seed, self.batch_size = level, quantile, dilate, seed, batch_size
        self.threshold: float | None = None
        self._models = None

    def _load(self):
        if self._models is None:
            self._models = (AutoencoderDetector.load(AUTOENCODER_WEIGHTS), DiffusionDetector.load(DIFFUSION_WEIGHTS))
        return self._models

    @torch.no_grad()
    def _residual(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        autoencoder, _ = self._load()
        return autoencoder.residual_map(torch.from_numpy(np.asarray(images, np.float32)[:, None]))

    def fit(self, train: np.ndarray) -> "PHANESBaseline":
        residual, _ = self._residual(train)
        values = residual[:, 0].numpy()[train > TISSUE_LEVEL]
        self.threshold = float(np.quantile(values, self.quantile))
        return self

    def suspect_mask(self, residual: torch.Tensor) -> torch.Tensor:
        """Step 2: the residual above the healthy threshold, dilated (``(B, 1, H, W)`` float 0/1)."""
        mask = (residual > self.threshold).float()
        if self.dilate:
            mask = F.max_pool2d(mask, 2 * self.dilate + 1, stride=1, padding=self.dilate)
        return mask

    @torch.no_grad()
    def pseudo_healthy(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Steps 1-3: ``(N, H, W)`` pseudo-healthy images and the in-painted masks."""
        if self.threshold is None:
            raise RuntimeError("fit() the PHANES baseline on normal slices first")
        _, diffusion = self._load()
        size, grid = images.shape[-1], diffusion.config.image_size
        healthy, masks = [], []
        for start in range(0, len(images), self.batch_size):
            batch = np.asarray(images[start:start + self.batch_size], np.float32)
            x = torch.from_numpy(batch[:, None])
            residual, reconstruction = self._residual(batch)
            mask = self.suspect_mask(residual)
            known = to_diffusion_grid(x, grid)
            m = F.adaptive_max_pool2d(mask, grid)  # a grid pixel is unknown if any of its pixels is
            composite = m * to_diffusion_grid(reconstruction, grid) + (1 - m) * known
            generator = torch.Generator().manual_seed(self.seed + start)
            noise = torch.randn(composite.shape, generator=generator)
            t0 = torch.full((len(x),), self.level, dtype=torch.long)
            sample = diffusion.ddpm.add_noise(composite, noise, t0)
            stride = diffusion.config.ddim_stride
            for t in range(self.level, -1, -stride):
                eps = diffusion.model(sample, timesteps=torch.full((len(x),), t, dtype=torch.long))
                sample, _ = diffusion.ddim.step(eps, t, sample)
                previous = t - stride
                outside = known if previous < 0 else diffusion.ddpm.add_noise(
                    known, noise, torch.full((len(x),), previous, dtype=torch.long))
                sample = m * sample + (1 - m) * outside
            out = from_diffusion_grid((sample.clamp(-1, 1) + 1) / 2, size)
            healthy.append(out[:, 0].numpy())
            masks.append(mask[:, 0].numpy())
        return np.concatenate(healthy), np.concatenate(masks)

    def raw_maps(self, images: np.ndarray) -> np.ndarray:
        healthy, _ = self.pseudo_healthy(images)
        residual = torch.from_numpy(np.abs(np.asarray(images, np.float32) - healthy)[:, None])
        return smooth(residual, 1.0)[:, 0].numpy()
