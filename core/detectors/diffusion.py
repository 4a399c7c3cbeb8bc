"""S_diffusion: a denoising diffusion model (MONAI ``DiffusionModelUNet``) trained on real slices only.

The model learns to predict the noise ``eps`` added to a real slice at a random timestep ``t`` of a
1000-step linear-beta DDPM schedule (MONAI ``DDPMScheduler`` + ``DiffusionInferer``). It runs on a
64x64 grid (the 128x128 model grid shrunk by two) so that it trains and scores on two CPU cores;
its maps are brought back to 128x128 before they meet the autoencoder's.

Two per-pixel maps come out of one trained model:

* ``reconstruction`` (multi-t partial noising, AnoDDPM-style, Wyatt et al. CVPRW 2022): the slice
  is noised to each level ``t0`` in ``recon_levels`` with a fixed seeded noise, then denoised back
  to ``t = 0`` with deterministic DDIM steps of ``ddim_stride`` timesteps (MONAI ``DDIMScheduler``).
  A real slice comes back nearly unchanged; an artifact is "healed" towards real anatomy, so
  ``|x - x_hat|`` averaged over the levels is large exactly there. Small ``t0`` catches fine
  texture (checkerboards, noise), large ``t0`` catches blobs and structure.
* ``nll`` (the variational bound, Ho et al. 2020 eq. 5): a Monte-Carlo estimate, per pixel, of
  ``sum_t L_{t-1}`` with ``L_{t-1} = beta_t / (2 alpha_t (1 - alphabar_t)) * (eps - eps_theta(x_t, t))^2``
  (the KL term for the fixed variance ``sigma_t^2 = beta_t``), estimated from ``len(nll_timesteps)``
  stratified timesteps and scaled by ``T / K``. It omits the constant prior term ``L_T`` and the
  decoder term ``L_0``, so it is the bound up to a constant, in nats per pixel.

``map_kind`` chooses which one is the detector's pixel map; both are kept in :class:`DiffusionMaps`
so the evaluation can compare them. Everything is deterministic: the noise comes from a generator
seeded with ``config.seed`` at every call, so the same slice always gets the same score.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from monai.inferers import DiffusionInferer
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler

from core.augment import AugmentParams
from core.detectors.autoencoder import smooth
from core.detectors.base import AnomalyMaps, top_fraction_mean
from core.detectors.training import TrainingHistory, run_training, sample_batch

MapKind = Literal["reconstruction", "nll"]
Sampler = Literal["ddim", "ddpm"]


@dataclass(frozen=True)
class DiffusionConfig:
    """Network, noise schedule and scoring settings; stored beside the weights."""

    image_size: int = 64  # the diffusion grid; inputs on the 128 model grid are shrunk to it
    channels: tuple[int, ...] = (32, 64, 64)
    attention_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = 1
    num_head_channels: int = 32
    num_train_timesteps: int = 1000
    schedule: str = "linear_beta"
    recon_levels: tuple[int, ...] = (100, 200, 300)
    ddim_stride: int = 50  # DDIM jumps this many timesteps per model call
    nll_timesteps: tuple[int, ...] = (25, 75, 150, 250, 400, 600)
    map_kind: str = "reconstruction"
    map_sigma: float = 1.0  # smoothing (pixels of the 128 grid) of the map
    score_fraction: float = 0.01
    seed: int = 0  # seeds the scoring noise


def build_diffusion_unet(config: DiffusionConfig) -> DiffusionModelUNet:
    """The 2-D, one-channel MONAI diffusion U-Net for ``config``."""
    return DiffusionModelUNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        channels=config.channels,
        attention_levels=config.attention_levels,
        num_res_blocks=config.num_res_blocks,
        num_head_channels=config.num_head_channels,
        norm_num_groups=min(32, min(config.channels)),
    )


def _ddpm(config: DiffusionConfig) -> DDPMScheduler:
    return DDPMScheduler(num_train_timesteps=config.num_train_timesteps, schedule=config.schedule)


def _ddim(config: DiffusionConfig) -> DDIMScheduler:
    scheduler = DDIMScheduler(num_train_timesteps=config.num_train_timesteps, schedule=config.schedule)
    # ``step`` jumps num_train_timesteps // num_inference_steps; we pass our own timesteps.
    scheduler.set_timesteps(config.num_train_timesteps // config.ddim_stride)
    return scheduler


def to_diffusion_grid(images: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 1, H, W)`` in [0, 1] -> ``(B, 1, size, size)`` in [-1, 1] (area-averaged when shrinking)."""
    if images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="area")
    return images * 2.0 - 1.0


def from_diffusion_grid(maps: torch.Tensor, size: int) -> torch.Tensor:
    """``(B, 1, h, w)`` maps -> ``(B, 1, size, size)`` bilinear."""
    if maps.shape[-1] == size:
        return maps
    return F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False)


def vlb_weights(scheduler: DDPMScheduler) -> torch.Tensor:
    """``beta_t / (2 alpha_t (1 - alphabar_t))`` per timestep: the weight of the squared noise error in ``L_{t-1}``."""
    betas, alphas, alphas_cumprod = scheduler.betas, scheduler.alphas, scheduler.alphas_cumprod
    return betas / (2.0 * alphas * (1.0 - alphas_cumprod))


@dataclass(frozen=True)
class DiffusionMaps(AnomalyMaps):
    """:class:`AnomalyMaps` plus both diffusion maps (on the input grid) and the per-slice bound."""

    reconstruction_map: np.ndarray | None = None
    nll_map: np.ndarray | None = None
    nll: np.ndarray | None = None  # (B,) the bound estimate, mean nats per pixel


class DiffusionDetector:
    """A trained diffusion model that scores slices (see the module docstring)."""

    name = "diffusion"

    def __init__(self, model: DiffusionModelUNet, config: DiffusionConfig) -> None:
        if config.map_kind not in ("reconstruction", "nll"):
            raise ValueError(f"map_kind must be 'reconstruction' or 'nll', got {config.map_kind!r}")
        for level in config.recon_levels:
            if not 0 < level < config.num_train_timesteps:
                raise ValueError(f"reconstruction level {level} outside (0, {config.num_train_timesteps})")
        self.model = model.eval()
        self.config = config
        self.device = next(model.parameters()).device
        self.ddpm = _ddpm(config)
        self.ddim = _ddim(config)
        self._weights = vlb_weights(self.ddpm)

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.config.seed)

    def to(self, device: str | torch.device) -> "DiffusionDetector":
        """Move the network (and the work of later calls) to ``device``; returns ``self``."""
        self.model.to(device)
        self.device = torch.device(device)
        return self

    def _probe_noise(self, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
        """One seeded noise image, shared by every slice of the batch.

        Drawn on the CPU and shared, so a slice's score does not depend on the device, the batch
        size or its position in the batch.
        """
        one = torch.randn((1, *shape[1:]), generator=generator)
        return one.expand(shape).contiguous().to(self.device)

    @torch.no_grad()
    def reconstruct(
        self, images: torch.Tensor, level: int, *, sampler: Sampler = "ddim", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """:meth:`denoise_from` without gradients (scoring)."""
        return self.denoise_from(images, level, sampler=sampler, generator=generator)

    def denoise_from(
        self, images: torch.Tensor, level: int, *, sampler: Sampler = "ddim", generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Noise ``(B, 1, H, W)`` images in [0, 1] to timestep ``level`` and denoise them back.

        Differentiable with respect to ``images`` when called with gradients on (the explainers
        backpropagate the score through it); :meth:`reconstruct` is the no-gradient version.

        Args:
            images: slices on any square grid; they are moved to the diffusion grid and back.
            level: the partial-noising timestep ``t0``.
            sampler: ``"ddim"`` (deterministic, ``level // ddim_stride + 1`` model calls) or
                ``"ddpm"`` (ancestral, ``level + 1`` model calls: the full-step reference).
            generator: source of the noise (default: seeded with ``config.seed``).

        Returns:
            the reconstruction in [0, 1] on the input's grid.
        """
        generator = generator or self._generator()
        size = images.shape[-1]
        x0 = to_diffusion_grid(images.to(self.device), self.config.image_size)
        noise = self._probe_noise(x0.shape, generator)
        t0 = torch.full((len(x0),), level, dtype=torch.long, device=self.device)
        sample = self.ddpm.add_noise(x0, noise, t0)
        if sampler == "ddim":
            timesteps = range(level, -1, -self.config.ddim_stride)
            scheduler = self.ddim
        elif sampler == "ddpm":
            timesteps = range(level, -1, -1)
            scheduler = self.ddpm
        else:
            raise ValueError(f"sampler must be 'ddim' or 'ddpm', got {sampler!r}")
        for t in timesteps:
            eps = self.model(sample, timesteps=torch.full((len(x0),), t, dtype=torch.long, device=self.device))
            if sampler == "ddim":
                sample, _ = scheduler.step(eps, t, sample)
            else:
                sample, _ = scheduler.step(eps, t, sample, generator=generator if self.device.type == "cpu" else None)
        out = (sample.clamp(-1.0, 1.0) + 1.0) / 2.0
        return from_diffusion_grid(out, size).cpu()

    @torch.no_grad()
    def nll_map(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-pixel Monte-Carlo estimate of the variational bound (nats), on the input's grid."""
        generator = generator or self._generator()
        size = images.shape[-1]
        x0 = to_diffusion_grid(images.to(self.device), self.config.image_size)
        steps = torch.tensor(self.config.nll_timesteps, dtype=torch.long)
        k, b = len(steps), len(x0)
        # One noise image per timestep, shared by the slices (see _probe_noise); level-major rows.
        noise = torch.randn((k, 1, *x0.shape[1:]), generator=generator).expand(k, b, *x0.shape[1:])
        noise = noise.reshape(k * b, *x0.shape[1:]).to(self.device)
        t = steps.repeat_interleave(b).to(self.device)
        x0_rep = x0.repeat(k, 1, 1, 1)
        eps = self.model(self.ddpm.add_noise(x0_rep, noise, t), timesteps=t)
        terms = self._weights.to(self.device)[t].view(-1, 1, 1, 1) * (noise - eps) ** 2
        bound = terms.view(k, b, *x0.shape[1:]).mean(0) * self.config.num_train_timesteps
        return from_diffusion_grid(bound, size).cpu()

    def reconstruction_residual(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The raw ``reconstruction`` map ``(B, 1, H, W)`` (smoothed mean residual over the levels)
        and the reconstruction at each level; differentiable when gradients are on."""
        generator = generator or self._generator()
        recons = [self.denoise_from(images, level, generator=generator) for level in self.config.recon_levels]
        residual = torch.stack([(images - r).abs() for r in recons]).mean(0)
        return smooth(residual, self.config.map_sigma), recons

    def score_batch(self, images: torch.Tensor, *, with_nll: bool = True) -> DiffusionMaps:
        """Raw scores and maps for ``(B, 1, H, W)`` slices in [0, 1] (see the module docstring)."""
        config = self.config
        generator = self._generator()
        images = images.cpu()
        with torch.no_grad():
            recon_map_t, recons = self.reconstruction_residual(images, generator=generator)
        recon_map = recon_map_t[:, 0].numpy()
        nll_map = nll = None
        if with_nll or config.map_kind == "nll":
            bound = self.nll_map(images, generator=generator)
            nll = bound.mean(dim=(1, 2, 3)).numpy()
            nll_map = smooth(bound, config.map_sigma)[:, 0].numpy()
        pixel_map = recon_map if config.map_kind == "reconstruction" else nll_map
        return DiffusionMaps(
            score=top_fraction_mean(pixel_map, config.score_fraction),
            pixel_map=pixel_map,
            reconstruction=recons[len(recons) // 2][:, 0].numpy(),
            reconstruction_map=recon_map,
            nll_map=nll_map,
            nll=nll,
        )

    def save(self, path: Path, *, metadata: dict | None = None) -> None:
        """Weights to ``path`` (.pt, float16 to keep the file small) and ``path.json`` with config + metadata."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        half = {k: v.half() if v.is_floating_point() else v for k, v in self.model.state_dict().items()}
        torch.save({"config": asdict(self.config), "state_dict": half}, path)
        sidecar = {"detector": self.name, "config": asdict(self.config), **(metadata or {})}
        path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2))

    @classmethod
    def load(cls, path: Path, **overrides) -> "DiffusionDetector":
        """Load weights written by :meth:`save`; ``overrides`` replace scoring settings (e.g. ``map_kind``)."""
        checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
        raw = {**checkpoint["config"], **overrides}
        config = DiffusionConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        model = build_diffusion_unet(config)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in checkpoint["state_dict"].items()})
        return cls(model, config)


@torch.no_grad()
def _validation_loss(model: DiffusionModelUNet, scheduler: DDPMScheduler, images: torch.Tensor) -> float:
    """Noise-prediction MSE on fixed noise and timesteps, so the curve is comparable across steps."""
    model.eval()
    generator = torch.Generator().manual_seed(12345)
    noise = torch.randn(images.shape, generator=generator)
    t = torch.randint(0, scheduler.num_train_timesteps, (len(images),), generator=generator)
    loss = F.mse_loss(model(scheduler.add_noise(images, noise, t), timesteps=t), noise).item()
    model.train()
    return loss


def train_diffusion(
    train_images: np.ndarray,
    *,
    val_images: np.ndarray | None = None,
    config: DiffusionConfig = DiffusionConfig(),
    steps: int = 1500,
    batch_size: int = 16,
    learning_rate: float = 5e-4,
    seed: int = 0,
    augment_images: bool = True,
    augment_params: AugmentParams | None = None,
    log_every: int = 50,
    progress: bool = True,
) -> tuple[DiffusionDetector, TrainingHistory]:
    """Train the noise predictor on real normal slices (the standard DDPM simple loss).

    Args:
        train_images: ``(N, H, W)`` float32 in [0, 1] on the model grid (shrunk to ``config.image_size``).
        val_images: optional clean slices for the logged validation loss.
        config, steps, batch_size, learning_rate, seed, augment_images, augment_params, log_every, progress:
            as in :func:`core.detectors.autoencoder.train_autoencoder`.

    Returns:
        The trained detector and its :class:`TrainingHistory`.
    """
    if train_images.ndim != 3 or train_images.shape[1] != train_images.shape[2]:
        raise ValueError(f"train_images must be (N, S, S), got {train_images.shape}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_diffusion_unet(config).train()
    scheduler = _ddpm(config)
    inferer = DiffusionInferer(scheduler)
    optimiser = torch.optim.AdamW(model.parameters(), lr=learning_rate)
    # Linear warm-up over the first 5 % of steps, then cosine decay to zero.
    warmup = max(1, steps // 20)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser,
        lambda i: min(1.0, (i + 1) / warmup) * 0.5 * (1.0 + np.cos(np.pi * min(1.0, i / max(1, steps)))),
    )
    val = None
    if val_images is not None:
        val = to_diffusion_grid(torch.from_numpy(val_images[:, None].astype(np.float32)), config.image_size)

    def train_step() -> float:
        batch = sample_batch(train_images, rng, batch_size, augment_images, augment_params)
        x0 = to_diffusion_grid(batch, config.image_size)
        noise = torch.randn_like(x0)
        t = torch.randint(0, config.num_train_timesteps, (batch_size,))
        loss = F.mse_loss(inferer(inputs=x0, diffusion_model=model, noise=noise, timesteps=t), noise)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        lr_schedule.step()
        return loss.item()

    validate = None if val is None else (lambda: _validation_loss(model, scheduler, val))
    history = run_training(train_step, steps=steps, validate=validate, log_every=log_every,
                           desc="diffusion", progress=progress)
    return DiffusionDetector(model.eval(), config), history
