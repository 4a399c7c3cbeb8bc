"""DIA-style contrastive detector (Shi et al. 2024, "Dissolving Is Amplifying: Towards Fine-Grained
Anomaly Detection", ECCV, arXiv:2302.14696; official code https://github.com/shijianjian/DIA).

DIA has two parts:

* **dissolving**: a diffusion model trained on normal images, applied to an image, removes its
  fine-grained, instance-specific details (a tumour, a haemorrhage) and keeps the coarse anatomy.
  The official code (``DiffusionCustomTrans``) does this with *one* denoising step and no added
  noise: the image, shrunk to the diffusion grid, is taken as ``x_t`` at a timestep ``t`` drawn
  uniformly from [30, 100] (of 1000), and the model's prediction of the clean image,
  ``x0 = (x_t - sqrt(1 - abar_t) eps(x_t, t)) / sqrt(abar_t)``, clipped, is the dissolved image;
* **amplifying**: CSI-style contrastive learning (Tack et al. 2020, arXiv:2007.08176). Every image
  of a batch gives two views (random horizontal flip, then each of the 4 rotations, then random
  resized crop and brightness / contrast jitter); the two views of the same image and rotation are
  the positive pair of an NT-Xent loss (temperature 0.5) in which the other images and the other
  rotations are negatives, and, DIA's addition, the *dissolved* copies of the batch, rotated and
  augmented the same way, are extra negatives (except an image's own dissolved copy at the same
  rotation: the official default ``loss_mode="shifted_removed"``; ``loss_mode="naive"`` keeps it as
  a negative too). A shift head also classifies the rotation of every view (cross-entropy),
  dissolved ones included. Dissolved copies share their anatomy with real images, so pushing them
  away makes the encoder rely on the fine detail that dissolving removes: "dissolving is amplifying".

The score is the official evaluation's, CSI's (``--ood_score CSI``, rotations only, no dissolving
at test time): each slice is seen under the 4 rotations and ``eval_views`` fixed crops; per
rotation ``k`` its projection ``z_k`` (averaged over the crops) is compared with the normalised
projections ``a_{k,m}`` of the training slices, and its shift head's logit for ``k`` is read:

    normality = 1/4 sum_k [ max_m <z_k, a_{k,m}> / mean_m |z_k(train m)|
                            + logit_k(k) / mean_m |logit_k(train m)(k)| ]

(CSI divides the rotation term by the plain mean logit, see ``differs``) and the raw anomaly score is
``-normality`` (higher = less normal).

Here, with what runs offline on two CPU cores: the dissolving network is this project's own 64 x 64
DDPM (``models/diffusion_mri_t1.pt``), applied once per fit at the ``levels`` timesteps (inside
DIA's [30, 100]) and the copies reused every epoch; the encoder is a small 6-layer CNN trained
from scratch for a few epochs with Adam (see ``DIABaseline.differs``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from core.baselines.base import Baseline
from core.detectors.diffusion import DiffusionDetector, from_diffusion_grid, to_diffusion_grid
from core.profiles import DIFFUSION_WEIGHTS

ROTATIONS = 4  # the shifting transformation: rotation by 0, 90, 180, 270 degrees (CSI / DIA)
RATIO_RANGE = (3 / 4, 4 / 3)  # aspect ratios of the random resized crop (torchvision's default)
JITTER = 0.4  # brightness and contrast factors in [0.6, 1.4] (CSI's colour jitter, grey-level part)
JITTER_PROBABILITY = 0.8


class DIAEncoder(nn.Module):
    """A small CNN with CSI's two heads: a SimCLR projection and a rotation (shift) classifier.

    3 x 3 convolutions, each followed by batch norm and ReLU: five of stride 2 (channels ``width/2,
    width, 2 width, 4 width, 4 width``: 128 x 128 -> 4 x 4) and one of stride 1, so that the last layer
    sees the whole slice (receptive field 127 px), then global average pooling -> ``4 width`` features.
    """

    def __init__(self, width: int = 16, projection_dim: int = 128) -> None:
        super().__init__()
        channels = (1, width // 2, width, 2 * width, 4 * width, 4 * width, 4 * width)
        strides = (2, 2, 2, 2, 2, 1)
        layers = []
        for c_in, c_out, stride in zip(channels[:-1], channels[1:], strides):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(c_out),
                       nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        features = channels[-1]
        self.projection = nn.Sequential(nn.Linear(features, features), nn.ReLU(inplace=True),
                                        nn.Linear(features, projection_dim))
        self.shift = nn.Linear(features, ROTATIONS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 1, H, W)`` -> the projection ``(B, projection_dim)`` and rotation logits ``(B, 4)``."""
        h = self.body(x)
        return self.projection(h), self.shift(h)


@torch.no_grad()
def dissolve(diffusion, images: torch.Tensor, level: int) -> torch.Tensor:
    """DIA's dissolving transformation: one denoising step of ``diffusion`` from ``level``, no noise added.

    Args:
        diffusion: a :class:`core.detectors.diffusion.DiffusionDetector` trained on normal slices.
        images: ``(B, 1, H, W)`` slices in [0, 1]; shrunk to the diffusion grid and brought back.
        level: the timestep ``t`` the image is taken to be at.

    Returns:
        ``(B, 1, H, W)`` the model's clean-image prediction, clipped to [0, 1].
    """
    x_t = to_diffusion_grid(images.to(diffusion.device), diffusion.config.image_size)
    eps = diffusion.model(x_t, timesteps=torch.full((len(x_t),), level, dtype=torch.long, device=diffusion.device))
    alpha_bar = diffusion.ddpm.alphas_cumprod[level].to(x_t.device)
    x0 = ((x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()).clamp(-1.0, 1.0)
    return from_diffusion_grid((x0 + 1.0) / 2.0, images.shape[-1]).cpu()


def rotations(x: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)`` -> ``(4 B, 1, H, W)``: the batch rotated by 0, 90, 180, 270 degrees, rotation-major."""
    return torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(ROTATIONS)])


def crop_boxes(n: int, scale: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """``(n, 4)`` random resized crops ``(width, height, centre_x, centre_y)`` in [-1, 1] image units:
    area fraction uniform in ``scale``, log aspect ratio uniform in ``RATIO_RANGE``, inside the image."""
    area = scale[0] + (scale[1] - scale[0]) * torch.rand(n, generator=generator)
    log_ratio = math.log(RATIO_RANGE[0]) + (math.log(RATIO_RANGE[1]) - math.log(RATIO_RANGE[0])) * torch.rand(
        n, generator=generator)
    ratio = log_ratio.exp()
    width, height = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)
    centre = (2 * torch.rand(n, 2, generator=generator) - 1) * torch.stack([1 - width, 1 - height], dim=1)
    return torch.cat([width[:, None], height[:, None], centre], dim=1)


def crop(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Resample each ``(1, H, W)`` image's box (see :func:`crop_boxes`) to the full ``H x W`` (bilinear)."""
    theta = torch.zeros(len(x), 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = boxes[:, 0], boxes[:, 1]
    theta[:, 0, 2], theta[:, 1, 2] = boxes[:, 2], boxes[:, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image mirrored left-right with probability 1/2."""
    flip = torch.rand(len(x), generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def simclr_augment(x: torch.Tensor, scale: tuple[float, float], generator: torch.Generator) -> torch.Tensor:
    """CSI's per-view augmentation for grey-level slices: brightness and contrast jitter (with
    probability 0.8) and a random resized crop of area fraction in ``scale``."""
    n = len(x)
    jitter = torch.rand(n, generator=generator) < JITTER_PROBABILITY
    brightness = 1 + JITTER * (2 * torch.rand(n, generator=generator) - 1)
    contrast = 1 + JITTER * (2 * torch.rand(n, generator=generator) - 1)
    brightness = torch.where(jitter, brightness, torch.ones(n))[:, None, None, None]
    contrast = torch.where(jitter, contrast, torch.ones(n))[:, None, None, None]
    x = (x * brightness).clamp(0, 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast + mean).clamp(0, 1)
    return crop(x, crop_boxes(n, scale, generator))


def contrastive_loss(z: torch.Tensor, temperature: float, mode: str = "shifted_removed") -> torch.Tensor:
    """DIA's ``NT_xent_neg`` on ``(3 N, d)`` projections: rows ``[0, N)`` are the first views,
    ``[N, 2 N)`` the second views of the same images and rotations, ``[2 N, 3 N)`` the dissolved copies.
    Positive pairs: view 1 <-> view 2 of the same row. Every other row is a negative, except (``mode=
    "shifted_removed"``, DIA's default) a row's own dissolved copy; ``mode="naive"`` keeps it as a
    negative. ``-log softmax`` of the positive, summed over the 2 N anchors and divided by 3 N (as DIA)."""
    n = len(z) // 3
    z = F.normalize(z, dim=1)
    logits = z @ z.T / temperature
    blocked = torch.eye(3 * n, dtype=torch.bool)
    own = torch.arange(n)
    if mode == "shifted_removed":
        for view in (0, n):  # a view and its own dissolved copy are neither positive nor negative
            blocked[view + own, 2 * n + own] = True
            blocked[2 * n + own, view + own] = True
    elif mode != "naive":
        raise ValueError(f"mode must be 'shifted_removed' or 'naive', got {mode!r}")
    log_p = F.log_softmax(logits.masked_fill(blocked, float("-inf")), dim=1)
    positives = log_p[own, n + own] + log_p[n + own, own]
    return -positives.sum() / (3 * n)


class DIABaseline(Baseline):
    name = "dia"
    title = "DIA-style (DDPM dissolving + contrastive CSI score)"
    reference = "Shi et al. 2024 (ECCV), arXiv:2302.14696"
    differs = ("Dissolving follows DIA's official code (one denoising step of a DDPM trained on normal images, no "
               "noise added, t in DIA's [30, 100]) but uses this project's 64 x 64 DDPM on 128 x 128 slices (DIA: a "
               "32 x 32 DDPM for 224 x 224 images), applied once per fit at two fixed timesteps (50 and 100) instead "
               "of a fresh random t per batch. The contrastive training is DIA's (two augmented views as positives; "
               "the other images, the other 3 rotations and the dissolved copies as negatives; a rotation head; "
               "temperature 0.5; 'shifted_removed' loss), but the encoder is a 6-layer CNN of 0.1 M parameters "
               "trained from scratch (DIA: ResNet-18, 11 M, also from scratch) for 8 epochs of Adam on the 240 "
               "train slices (DIA: LARS, batch 32, 1000 epochs by default, thousands of images), so that a fit "
               "takes about a minute on two CPU cores; it is far from converged. Colour jitter is reduced to "
               "brightness / contrast. The score is CSI's, as in DIA's evaluation (rotations only, no dissolving "
               "at test time), from 8 fixed crops shared by every slice instead of 10 random ones, so a slice's "
               "score does not depend on its batch; the rotation term is divided by the mean absolute logit "
               "instead of the mean, so an undertrained head's negative logits cannot flip its sign.")
    pixel_maps = False

    def __init__(self, *, epochs: int = 8, batch_size: int = 16, levels: tuple[int, ...] = (50, 100),
                 crop_scale: tuple[float, float] = (0.08, 1.0), eval_crop: float = 0.54, eval_views: int = 8,
                 temperature: float = 0.5, learning_rate: float = 1e-3, width: int = 16, seed: int = 0,
                 loss_mode: str = "shifted_removed", diffusion=None, chunk: int = 16) -> None:
        """
        Args:
            epochs, batch_size, learning_rate: the contrastive training (Adam, cosine decay to 0).
            levels: the dissolving timesteps (each training image gets one of them, drawn per epoch).
            crop_scale: the area fraction range of the training crops (CSI / DIA default (0.08, 1)).
            eval_crop, eval_views: the area fraction and number of the fixed test-time crops (DIA's
                evaluation: ``--resize_fix --resize_factor 0.54``).
            temperature: of the NT-Xent loss (DIA: 0.5).
            width: the encoder's width (see :class:`DIAEncoder`).
            seed: seeds the weights, the batches, the augmentation and the test-time crops.
            loss_mode: ``"shifted_removed"`` (DIA's default: an image's own dissolved copy is not a
                negative of its views) or ``"naive"`` (it is).
            diffusion: a loaded :class:`~core.detectors.diffusion.DiffusionDetector` (default: the
                committed ``models/diffusion_mri_t1.pt``).
            chunk: images per forward pass when scoring.
        """
        for level in levels:
            if not 0 < level < 1000:
                raise ValueError(f"dissolving level {level} outside (0, 1000)")
        if loss_mode not in ("shifted_removed", "naive"):
            raise ValueError(f"loss_mode must be 'shifted_removed' or 'naive', got {loss_mode!r}")
        self.epochs, self.batch_size, self.levels = epochs, batch_size, tuple(levels)
        self.crop_scale, self.eval_crop, self.eval_views = tuple(crop_scale), eval_crop, eval_views
        self.temperature, self.learning_rate, self.width, self.seed = temperature, learning_rate, width, seed
        self.loss_mode, self.diffusion, self.chunk = loss_mode, diffusion, chunk
        self.encoder: DIAEncoder | None = None
        self.history: list[tuple[float, float]] = []  # per epoch: mean contrastive and rotation losses

    def _diffusion(self):
        if self.diffusion is None:
            self.diffusion = DiffusionDetector.load(DIFFUSION_WEIGHTS)
        return self.diffusion

    def dissolved(self, images: np.ndarray) -> np.ndarray:
        """``(len(levels), N, H, W)`` the dissolved copies of ``(N, H, W)`` slices at every level."""
        diffusion = self._diffusion()
        x = torch.from_numpy(np.asarray(images, np.float32)[:, None])
        return np.stack([torch.cat([dissolve(diffusion, part, level) for part in x.split(self.chunk)])[:, 0].numpy()
                         for level in self.levels])

    def fit(self, train: np.ndarray) -> "DIABaseline":
        """Dissolve ``(N, H, W)`` normal slices, train the encoder on them, and store CSI's training
        features and weights (see the module docstring)."""
        train = np.asarray(train, np.float32)
        if train.ndim != 3 or len(train) < 2:
            raise ValueError(f"expected (N >= 2, H, W) slices, got shape {train.shape}")
        images = torch.from_numpy(train[:, None])
        dissolved = torch.from_numpy(self.dissolved(train)[:, :, None])  # (levels, N, 1, H, W)
        torch.manual_seed(self.seed)  # after loading the DDPM: the weights must not depend on whether it was given
        generator = torch.Generator().manual_seed(self.seed)
        encoder = DIAEncoder(self.width)
        optimiser = torch.optim.Adam(encoder.parameters(), lr=self.learning_rate)
        batch_size = min(self.batch_size, len(train))
        steps_per_epoch = len(train) // batch_size  # drop the last incomplete batch (BN needs > 1 image)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, max(1, self.epochs * steps_per_epoch))
        encoder.train()
        self.history = []
        for _ in range(self.epochs):
            totals = torch.zeros(2)
            order = torch.randperm(len(train), generator=generator)
            level = torch.randint(len(self.levels), (len(train),), generator=generator)
            for step in range(steps_per_epoch):
                index = order[step * batch_size:(step + 1) * batch_size]
                x = images[index]
                x_dissolved = dissolved[level[index], index]
                view1 = rotations(random_flip(x, generator))
                view2 = rotations(random_flip(x, generator))
                view3 = rotations(random_flip(x_dissolved, generator))
                views = simclr_augment(torch.cat([view1, view2, view3]), self.crop_scale, generator)
                z, logits = encoder(views)
                labels = torch.arange(ROTATIONS).repeat_interleave(batch_size).repeat(3)
                contrastive = contrastive_loss(z, self.temperature, self.loss_mode)
                rotation = F.cross_entropy(logits, labels)
                optimiser.zero_grad()
                (contrastive + rotation).backward()
                optimiser.step()
                schedule.step()
                totals += torch.tensor([contrastive.item(), rotation.item()])
            self.history.append(tuple((totals / steps_per_epoch).tolist()))
        self.encoder = encoder.eval()
        # The fixed test-time views (flip, crop), shared by every slice so that its score does not depend on its batch.
        view_generator = torch.Generator().manual_seed(self.seed + 1)
        self.view_flips = torch.rand(self.eval_views, generator=view_generator) < 0.5
        self.view_boxes = crop_boxes(self.eval_views, (self.eval_crop, self.eval_crop), view_generator)
        z, logits = self.features(train)
        self.train_axis = F.normalize(z, dim=2)  # (N, 4, d)
        self.weight_sim = 1.0 / z.norm(dim=2).mean(dim=0)  # (4,)
        # CSI divides by the mean logit; the mean *absolute* logit keeps the term's sign when an undertrained
        # head gives the right rotation a negative logit (CSI's mean would then flip it or blow it up).
        self.weight_shift = 1.0 / logits.diagonal(dim1=1, dim2=2).abs().mean(dim=0).clamp(min=1e-6)  # (4,)
        return self

    @torch.no_grad()
    def features(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Per slice and rotation, the projection ``(N, 4, d)`` and the rotation logits ``(N, 4, 4)``,
        each averaged over the ``eval_views`` fixed crops."""
        if self.encoder is None:
            raise RuntimeError("fit() the DIA baseline on normal slices first")
        x_all = torch.from_numpy(np.asarray(images, np.float32)[:, None])
        views = len(self.view_boxes)
        z_out, logit_out = [], []
        for x in x_all.split(self.chunk):
            b = len(x)
            flipped = torch.where(self.view_flips[:, None, None, None, None], x.flip(-1)[None], x[None])  # (V, b, ...)
            rotated = torch.stack([torch.rot90(flipped, k, dims=(3, 4)) for k in range(ROTATIONS)])  # (4, V, b, ...)
            boxes = self.view_boxes[None, :, None].expand(ROTATIONS, views, b, 4).reshape(-1, 4)
            z, logits = self.encoder(crop(rotated.reshape(-1, *x.shape[1:]), boxes))
            z_out.append(z.view(ROTATIONS, views, b, -1).mean(1).permute(1, 0, 2))
            logit_out.append(logits.view(ROTATIONS, views, b, ROTATIONS).mean(1).permute(1, 0, 2))
        return torch.cat(z_out), torch.cat(logit_out)

    def raw_scores(self, images: np.ndarray) -> np.ndarray:
        """``(N,)`` minus CSI's normality score (see the module docstring): higher = less normal."""
        z, logits = self.features(images)
        nearest = torch.einsum("nkd,mkd->nkm", z, self.train_axis).max(dim=2).values  # (N, 4)
        shift = logits.diagonal(dim1=1, dim2=2)  # (N, 4): each rotation's logit for itself
        normality = (nearest * self.weight_sim + shift * self.weight_shift).mean(dim=1)
        return -normality.numpy().astype(np.float64)
