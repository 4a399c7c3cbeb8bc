"""E_AE: a denoising convolutional autoencoder (MONAI ``AutoEncoder``) trained on real slices only.

Why this shape: a U-Net with skip connections at full resolution can learn the identity and then
reconstructs artifacts as faithfully as anatomy, so its residual shows nothing. MONAI's
``AutoEncoder`` has no skip connections at all; every pixel passes through an 8x8 bottleneck
(128x128 input, four stride-2 stages). On top of that it is trained as a *denoising* autoencoder:
its input is corrupted with coarse (low-frequency) Gaussian noise and the target is the clean slice,
following Kascenas et al., "Denoising autoencoders for unsupervised anomaly detection in brain MRI"
(MIDL 2022). The model thus learns to pull images back towards real anatomy, not to copy them.

The per-pixel anomaly map is the absolute residual ``|x - AE(x)|``, lightly smoothed; the image
score is the mean of the top 1 % of that map (see :func:`core.detectors.base.top_fraction_mean`).
Both are *raw*: calibration against real images happens elsewhere.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import AutoEncoder

from core.augment import AugmentParams
from core.detectors.base import AnomalyMaps, top_fraction_mean
from core.detectors.training import TrainingHistory, run_training, sample_batch


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture, denoising and map settings; stored beside the weights."""

    image_size: int = 128
    channels: tuple[int, ...] = (16, 32, 64, 64)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    num_res_units: int = 1
    noise_std: float = 0.2  # amplitude of the coarse training noise, in [0, 1] image units
    noise_resolution: int = 16  # the noise is drawn on a 16x16 grid and upsampled: blob-sized corruption
    map_sigma: float = 1.0  # Gaussian smoothing (pixels) of the residual map
    score_fraction: float = 0.01


def build_autoencoder(config: AutoencoderConfig) -> AutoEncoder:
    """The network for ``config``: 2-D, one channel in and out, no skip connections."""
    if config.image_size % int(np.prod(config.strides)) != 0:
        raise ValueError(f"image_size {config.image_size} is not divisible by the total stride {np.prod(config.strides)}")
    return AutoEncoder(
        spatial_dims=2,
        in_channels=1,
        out_channels=1,
        channels=config.channels,
        strides=config.strides,
        num_res_units=config.num_res_units,
        norm="batch",
    )


def coarse_noise(shape: tuple[int, ...], std: float, resolution: int, generator: torch.Generator) -> torch.Tensor:
    """Low-frequency Gaussian noise ``(B, 1, H, W)``: drawn at ``resolution`` and upsampled bilinearly."""
    batch, _, height, width = shape
    low = torch.randn((batch, 1, resolution, resolution), generator=generator) * std
    return F.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(round(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    return torch.outer(kernel, kernel)[None, None]


def smooth(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``(B, 1, H, W)`` maps with reflect padding; sigma 0 returns the input."""
    if sigma <= 0:
        return maps
    kernel = _gaussian_kernel(sigma)
    pad = kernel.shape[-1] // 2
    return F.conv2d(F.pad(maps, (pad, pad, pad, pad), mode="reflect"), kernel)


class AutoencoderDetector:
    """A trained autoencoder that scores slices (see the module docstring)."""

    name = "autoencoder"

    def __init__(self, model: AutoEncoder, config: AutoencoderConfig) -> None:
        self.model = model.eval()
        self.config = config
        self.device = next(model.parameters()).device

    def to(self, device: str | torch.device) -> "AutoencoderDetector":
        """Move the network to ``device``; inputs and outputs stay CPU tensors. Returns ``self``."""
        self.model.to(device)
        self.device = torch.device(device)
        return self

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` -> the pseudo-normal reconstruction, clipped to [0, 1] (on the CPU)."""
        return self.residual_map(images.cpu())[1]

    def residual_map(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw map ``smooth(|x - AE(x)|)`` ``(B, 1, H, W)`` and the reconstruction, on the CPU.

        Differentiable with respect to ``images`` when called with gradients on (the explainers
        backpropagate the score through it); :meth:`score_batch` calls it without.
        """
        self.model.eval()
        reconstruction = self.model(images.to(self.device)).clamp(0.0, 1.0).cpu()
        return smooth((images - reconstruction).abs(), self.config.map_sigma), reconstruction

    def score_batch(self, images: torch.Tensor) -> AnomalyMaps:
        images = images.cpu()
        with torch.no_grad():
            residual, reconstruction = self.residual_map(images)
        pixel_map = residual[:, 0].numpy()
        return AnomalyMaps(
            score=top_fraction_mean(pixel_map, self.config.score_fraction),
            pixel_map=pixel_map,
            reconstruction=reconstruction[:, 0].numpy(),
        )

    def save(self, path: Path, *, metadata: dict | None = None) -> None:
        """Weights to ``path`` (.pt) and a readable ``path.json`` with the config and ``metadata``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": asdict(self.config), "state_dict": self.model.state_dict()}, path)
        sidecar = {"detector": self.name, "config": asdict(self.config), **(metadata or {})}
        path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2))

    @classmethod
    def load(cls, path: Path) -> "AutoencoderDetector":
        checkpoint = torch.load(Path(path), map_location="cpu", weights_only=True)
        raw = checkpoint["config"]
        config = AutoencoderConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        model = build_autoencoder(config)
        model.load_state_dict(checkpoint["state_dict"])
        return cls(model, config)


@torch.no_grad()
def _validation_loss(model: AutoEncoder, images: np.ndarray) -> float:
    model.eval()
    x = torch.from_numpy(images[:, None].astype(np.float32))
    loss = F.l1_loss(model(x).clamp(0, 1), x).item()
    model.train()
    return loss


def train_autoencoder(
    train_images: np.ndarray,
    *,
    val_images: np.ndarray | None = None,
    config: AutoencoderConfig = AutoencoderConfig(),
    steps: int = 1500,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    seed: int = 0,
    augment_images: bool = True,
    augment_params: AugmentParams | None = None,
    log_every: int = 50,
    progress: bool = True,
) -> tuple[AutoencoderDetector, TrainingHistory]:
    """Train on real normal slices only; fresh augmentations every step stand in for more subjects.

    Args:
        train_images: ``(N, H, W)`` float32 in [0, 1], ``H == W == config.image_size``.
        val_images: optional ``(M, H, W)`` clean slices for the logged validation L1.
        config: architecture and denoising settings.
        steps, batch_size, learning_rate: the optimisation (Adam).
        seed: seeds torch, the batch sampler, the augmentations and the noise.
        augment_images: apply :func:`core.augment.augment` to every sampled slice.
        augment_params: its ranges (the profile's; default brain MRI's).
        log_every: steps between history entries.
        progress: show a tqdm progress bar.

    Returns:
        The trained detector and its :class:`TrainingHistory`.
    """
    if train_images.ndim != 3 or train_images.shape[1:] != (config.image_size, config.image_size):
        raise ValueError(f"train_images must be (N, {config.image_size}, {config.image_size}), got {train_images.shape}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    noise_generator = torch.Generator().manual_seed(seed)
    model = build_autoencoder(config).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)

    def train_step() -> float:
        clean = sample_batch(train_images, rng, batch_size, augment_images, augment_params)
        noisy = clean + coarse_noise(clean.shape, config.noise_std, config.noise_resolution, noise_generator)
        # The background stays exactly zero in real skull-stripped slices; keep it so in the input.
        noisy = torch.where(clean > 0, noisy, torch.zeros_like(noisy)).clamp(0.0, 1.0)
        loss = F.l1_loss(model(noisy), clean)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return loss.item()

    validate = None if val_images is None else (lambda: _validation_loss(model, val_images))
    history = run_training(train_step, steps=steps, validate=validate, log_every=log_every,
                           desc="autoencoder", progress=progress)
    return AutoencoderDetector(model.eval(), config), history
