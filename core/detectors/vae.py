"""A small convolutional VAE of real normal slices: the generator of the latent-walk explainer.

Not a detector: SAFEGEN never scores with it. It gives :mod:`core.explain`'s ``latent_ig``
explainer (after medXGAN, Dravid et al., arXiv:2204.05376) a latent space of normal anatomy to
walk in: an encoder ``mu(x)`` and a decoder ``D(z)`` whose outputs are normal-looking slices.

medXGAN trains a GAN whose latent code is split into an anatomy part and a pathology part and
inverts it by optimisation. Here there is no pathology to learn from (the reference slices are all
normal) and no labels to split the code with, so a plain VAE stands in: it is trained in minutes on
a CPU, it has an encoder (no per-slice latent optimisation), and its KL term keeps the latent space
smooth, so the decoded images along a straight latent line change gradually.

Architecture: four stride-2 convolutions (128 -> 8 pixels; 16, 32, 64, 64 channels) and a 1x1
convolution to ``mu`` and ``log sigma^2`` of a spatial latent, ``latent_channels`` maps of 8x8
(512 numbers, flattened), mirrored by the decoder (a 3x3 convolution, four stride-2 transposed
convolutions, a sigmoid to [0, 1]). A dense 64-number latent (one more stage to 4x4 and a linear
layer) decoded every slice to a blurry blob without gyri (validation L1 0.052 at beta 1 and at
beta 0.1, against 0.036 for the spatial latent), and latent_ig localised worse with it (pixel
AUROC 0.81 against 0.84 on the validation benchmark). Loss per slice: the summed L1
reconstruction error plus ``beta`` times the KL divergence to N(0, I); trained on freshly augmented
real train slices with the autoencoder's loop (:mod:`core.detectors.training`). The mean latent of
the training slices is stored with the weights (the "average normal" baseline of ``latent_ig``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.augment import AugmentParams
from core.detectors.training import TrainingHistory, run_training, sample_batch

VAE_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "vae_mri_t1.pt"


@dataclass(frozen=True)
class VAEConfig:
    """Architecture and loss settings; stored beside the weights."""

    image_size: int = 128
    channels: tuple[int, ...] = (16, 32, 64, 64)  # one stride-2 stage each: 128 -> 8 pixels
    latent_channels: int = 8  # the latent is a (latent_channels, 8, 8) map, flattened
    beta: float = 1.0  # weight of the KL term against the summed L1 error of a slice


class VAE(nn.Module):
    """``encode`` -> ``(mu, logvar)``, ``decode`` -> ``(B, 1, H, W)`` in [0, 1]; ``forward`` decodes ``mu``."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        stride = 2 ** len(config.channels)
        if config.image_size % stride != 0:
            raise ValueError(f"image_size {config.image_size} is not divisible by the total stride {stride}")
        self.config = config
        self.bottom = config.image_size // stride
        widths = (1, *config.channels)
        down = []
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            down += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.SiLU()]
        self.encoder = nn.Sequential(*down)
        self.latent_dim = config.latent_channels * self.bottom**2
        self.to_stats = nn.Conv2d(config.channels[-1], 2 * config.latent_channels, 1)
        self.from_latent = nn.Sequential(nn.Conv2d(config.latent_channels, config.channels[-1], 3, padding=1),
                                         nn.SiLU())
        up = []
        for c_in, c_out in zip(widths[::-1][:-1], widths[::-1][1:]):
            up += [nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1), nn.SiLU()]
        self.decoder = nn.Sequential(*up[:-1])  # no activation before the sigmoid
        # Mean of mu over the training slices (set after training; zeros = the prior's mean).
        self.register_buffer("latent_mean", torch.zeros(self.latent_dim))

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 1, H, W)`` -> ``mu``, ``logvar``, each ``(B, latent_dim)``."""
        mu, logvar = self.to_stats(self.encoder(images)).chunk(2, dim=1)
        return mu.flatten(1), logvar.flatten(1)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, latent_dim)`` -> images ``(B, 1, H, W)`` in [0, 1]."""
        grid = latents.view(len(latents), self.config.latent_channels, self.bottom, self.bottom)
        return torch.sigmoid(self.decoder(self.from_latent(grid)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The deterministic reconstruction ``D(mu(x))``."""
        return self.decode(self.encode(images)[0])

    def save(self, path: Path, *, metadata: dict | None = None) -> None:
        """Weights to ``path`` (.pt) and a readable ``path.json`` with the config and ``metadata``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": asdict(self.config), "state_dict": self.state_dict()}, path)
        sidecar = {"model": "vae", "config": asdict(self.config), **(metadata or {})}
        path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2))

    @classmethod
    def load(cls, path: Path = VAE_WEIGHTS) -> "VAE":
        """A saved VAE in eval mode. Raises FileNotFoundError naming the command that makes it."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; make it with `python -m workflows.cli train vae`")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        raw = checkpoint["config"]
        model = cls(VAEConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}))
        model.load_state_dict(checkpoint["state_dict"])
        return model.eval()


def vae_loss(model: VAE, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mean over the batch of ``sum |x - D(z)| + beta * KL(q(z|x) || N(0, I))``, ``z`` reparameterised."""
    mu, logvar = model.encode(images)
    z = mu + torch.randn(mu.shape, generator=generator) * torch.exp(0.5 * logvar)
    reconstruction = (model.decode(z) - images).abs().flatten(1).sum(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
    return (reconstruction + model.config.beta * kl).mean()


@torch.no_grad()
def _validation_l1(model: VAE, images: np.ndarray) -> float:
    model.eval()
    x = torch.from_numpy(images[:, None].astype(np.float32))
    loss = F.l1_loss(model(x), x).item()
    model.train()
    return loss


@torch.no_grad()
def _mean_latent(model: VAE, images: np.ndarray, batch_size: int = 64) -> torch.Tensor:
    x = torch.from_numpy(images[:, None].astype(np.float32))
    return torch.cat([model.encode(chunk)[0] for chunk in x.split(batch_size)]).mean(0)


def train_vae(
    train_images: np.ndarray,
    *,
    val_images: np.ndarray | None = None,
    config: VAEConfig = VAEConfig(),
    steps: int = 2000,
    batch_size: int = 16,
    learning_rate: float = 1e-3,
    seed: int = 0,
    augment_images: bool = True,
    augment_params: AugmentParams | None = None,
    log_every: int = 50,
    progress: bool = True,
) -> tuple[VAE, TrainingHistory]:
    """Train on real normal slices (the autoencoder's loop and augmentations; see the module doc).

    Args:
        train_images: ``(N, H, W)`` float32 in [0, 1], ``H == W == config.image_size``.
        val_images: optional ``(M, H, W)`` clean slices for the logged validation L1 of ``D(mu(x))``.
        config: architecture and KL weight.
        steps, batch_size, learning_rate: the optimisation (Adam).
        seed: seeds torch (initial weights), the batch sampler, the augmentations and the latent noise.
        augment_images: apply :func:`core.augment.augment` to every sampled slice.
        augment_params: its ranges (the profile's; default brain MRI's).
        log_every: steps between history entries.
        progress: show a tqdm progress bar.

    Returns:
        The trained VAE in eval mode, with ``latent_mean`` = mean ``mu`` of ``train_images``, and
        its :class:`TrainingHistory`.
    """
    if train_images.ndim != 3 or train_images.shape[1:] != (config.image_size, config.image_size):
        size = config.image_size
        raise ValueError(f"train_images must be (N, {size}, {size}), got {train_images.shape}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    noise_generator = torch.Generator().manual_seed(seed)
    model = VAE(config).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=learning_rate)

    def train_step() -> float:
        batch = sample_batch(train_images, rng, batch_size, augment_images, augment_params)
        loss = vae_loss(model, batch, noise_generator)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        return loss.item()

    validate = None if val_images is None else (lambda: _validation_l1(model, val_images))
    history = run_training(train_step, steps=steps, validate=validate, log_every=log_every,
                           desc="vae", progress=progress)
    model.eval()
    model.latent_mean.copy_(_mean_latent(model, train_images))
    return model, history
