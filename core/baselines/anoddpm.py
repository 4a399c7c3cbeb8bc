"""AnoDDPM-style full-step diffusion reconstruction (Wyatt et al. 2022, "AnoDDPM: Anomaly Detection
with Denoising Diffusion Probabilistic Models using Simplex Noise", CVPR Workshops): the slow
reference for SAFEGEN's own, DDIM-accelerated diffusion detector.

AnoDDPM (``forward_backward`` in the authors' code): a slice is noised in one go to timestep
``lambda - 1`` (``lambda`` = 250 of T = 1000, "partial diffusion"), then denoised back with every
one of the ``lambda`` ancestral DDPM steps (``t = lambda - 1, ..., 0``, one network call each, fresh
noise of variance ``beta_t`` added at every step but the last). A real slice comes back close to
itself; an anomaly is replaced by plausible healthy tissue, so the residual ``|x - x_hat|`` is the
anomaly map.

Here, with the project's committed DDPM (:mod:`core.detectors.diffusion`):

* the same noising and the same ``lambda`` ancestral steps (MONAI ``DDPMScheduler.step`` with the
  fixed "large" variance ``beta_t`` that AnoDDPM samples with; MONAI clips the predicted clean
  image to [-1, 1], AnoDDPM clamps the noisy input instead);
* Gaussian noise, not simplex noise: AnoDDPM's simplex variant needs a model trained to remove
  simplex noise, and ours was trained on Gaussian noise (the paper's Gaussian variant is this one);
* the DDPM works on a 64 x 64 grid: the 128 x 128 model-grid slice is shrunk to it and the
  reconstruction brought back bilinearly, as SAFEGEN's own detector does;
* the map is ``|x - x_hat|`` on the 128 grid, smoothed with a Gaussian of ``sigma`` pixels (SAFEGEN's
  map smoothing); one reconstruction per slice, as in the paper;
* every slice draws its noise from its own generator seeded with ``seed``, so a slice's map depends
  neither on the batch size nor on the other slices of its batch (SAFEGEN's detector shares one
  seeded noise image across the batch for the same reason).

It costs ``lambda`` network calls per slice, against the 15 of SAFEGEN's detector (DDIM from
t0 = 100, 200 and 300 with stride 50), hence :attr:`AnoDDPMBaseline.max_images`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.baselines.base import Baseline
from core.detectors.autoencoder import smooth
from core.detectors.diffusion import DiffusionDetector, from_diffusion_grid, to_diffusion_grid
from core.profiles import DIFFUSION_WEIGHTS


class AnoDDPMBaseline(Baseline):
    """AnoDDPM's Gaussian variant on the committed DDPM (see the module docstring).

    Attributes:
        max_images: it costs ``lambda`` network calls per slice (measured at lambda = 250: about 3.4 s
            per slice on two Xeon cores at batch 16, 16 times SAFEGEN's diffusion detector), so when
            this is set the comparison (:mod:`workflows.comparison`) scores it on the benchmark's small
            subset only (:func:`core.benchmark.evaluation.small_subset`: one artifact image per kind and
            severity, as many clean ones; 54 images of the 216-image benchmark) and compares every
            method on exactly those images (``methods_subset.csv``). None scores them all.
    """

    name = "anoddpm"
    title = "AnoDDPM (Gaussian, full-step DDPM from lambda = 250)"
    reference = ("Wyatt et al. 2022, AnoDDPM: Anomaly Detection with Denoising Diffusion Probabilistic Models "
                 "using Simplex Noise, CVPR Workshops")
    differs = ("Gaussian noise, not simplex noise: AnoDDPM's simplex variant needs a DDPM trained to remove simplex "
               "noise and the project's DDPM was trained with Gaussian noise, so this is the paper's Gaussian variant. "
               "The DDPM is SAFEGEN's own small MONAI U-Net (32/64/64 channels) on a 64 x 64 grid (the paper trains a "
               "128-channel U-Net on 256 x 256 slices); lambda = 250 of T = 1000 with all 250 ancestral steps, as in "
               "the paper, from one seeded noise draw per slice (a single sample, no averaging); the map is the "
               "residual on the 128 grid smoothed with sigma 1 px. Slow (250 network calls per slice), so it is "
               "scored on the benchmark's small subset (one artifact image per kind and severity, as many clean).")
    max_images: int | None = 54

    def __init__(self, *, weights: Path | None = None, level: int = 250, sigma: float = 1.0, seed: int = 0,
                 batch_size: int = 16) -> None:
        """
        Args:
            weights: the DDPM checkpoint (default: the committed ``models/diffusion_mri_t1.pt``).
            level: AnoDDPM's ``lambda``, the number of noising / denoising steps (1 .. T).
            sigma: smoothing of the residual map, in pixels of the input grid.
            seed: seeds the noise of every slice.
            batch_size: slices denoised together (speed only: the maps do not depend on it).
        """
        if level < 1:
            raise ValueError(f"level (lambda) must be at least 1, got {level}")
        self.weights, self.level, self.sigma, self.seed, self.batch_size = weights, level, sigma, seed, batch_size
        self._detector = None

    def _load(self):
        if self._detector is None:
            if self.weights is None:
                self.weights = DIFFUSION_WEIGHTS
            detector = DiffusionDetector.load(Path(self.weights))
            steps = detector.config.num_train_timesteps
            if self.level > steps:
                raise ValueError(f"level (lambda) {self.level} exceeds the DDPM's {steps} timesteps")
            self._detector = detector
        return self._detector

    def fit(self, train: np.ndarray) -> "AnoDDPMBaseline":
        """Nothing to learn: the committed DDPM was trained on the same real slices; this loads it."""
        self._load()
        return self

    def _scheduler(self):
        """The DDPM's noise schedule, sampling with AnoDDPM's fixed variance ``beta_t``."""
        from monai.networks.schedulers import DDPMScheduler

        config = self._load().config
        return DDPMScheduler(num_train_timesteps=config.num_train_timesteps, schedule=config.schedule,
                             variance_type="fixed_large")

    @torch.no_grad()
    def reconstruct(self, images: np.ndarray) -> np.ndarray:
        """``(N, H, W)`` slices in [0, 1] -> their ``(N, H, W)`` full-step reconstructions in [0, 1]."""
        images = np.asarray(images, np.float32)
        detector = self._load()
        scheduler = self._scheduler()
        grid, size = detector.config.image_size, images.shape[-1]
        start_step = self.level - 1  # AnoDDPM noises to index lambda - 1, then takes lambda steps to 0
        out = []
        for start in range(0, len(images), self.batch_size):
            batch = torch.from_numpy(images[start:start + self.batch_size, None])
            x0 = to_diffusion_grid(batch, grid)
            n = len(x0)
            generators = [torch.Generator().manual_seed(self.seed) for _ in range(n)]
            noise = torch.cat([torch.randn((1, *x0.shape[1:]), generator=g) for g in generators])
            sample = scheduler.add_noise(x0, noise, torch.full((n,), start_step, dtype=torch.long))
            for t in range(start_step, -1, -1):
                eps = detector.model(sample, timesteps=torch.full((n,), t, dtype=torch.long))
                # One step per slice, each with its own generator (see the module docstring).
                sample = torch.cat([scheduler.step(eps[i:i + 1], t, sample[i:i + 1], generator=g)[0]
                                    for i, g in enumerate(generators)])
            x_hat = from_diffusion_grid((sample.clamp(-1.0, 1.0) + 1.0) / 2.0, size)
            out.append(x_hat[:, 0].numpy())
        return np.concatenate(out) if out else np.zeros((0, *images.shape[1:]), np.float32)

    def raw_maps(self, images: np.ndarray) -> np.ndarray:
        """The smoothed residual ``|x - x_hat|`` of every slice, on the input grid."""
        images = np.asarray(images, np.float32)
        residual = torch.from_numpy(np.abs(images - self.reconstruct(images))[:, None])
        return smooth(residual, self.sigma)[:, 0].numpy()
