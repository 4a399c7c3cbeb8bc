"""The anomaly-segmentation head: a small MONAI U-Net that sees a slice at its own resolution.

DRAEM-style (Zavrtanik et al., ICCV 2021): the reconstruction sub-networks are SAFEGEN's two
detectors, trained on normal slices only (E_AE, :mod:`core.detectors.autoencoder`; S_diffusion,
:mod:`core.detectors.diffusion`); the discriminative sub-network is this head. Its input channels
are, per pixel of the slice at about 1 mm:

* ``image``: the slice, :func:`core.preprocess.robust_normalize` (tissue ~[0, 1], bright tail kept);
* ``autoencoder``: E_AE's reconstruction, made on the 128 model grid and put back on the slice;
* ``diffusion``: S_diffusion's DDIM reconstruction from ``diffusion_level``, the same way.

The head outputs a per-pixel anomaly logit; ``sigmoid`` of it is the anomaly probability. It is
fully convolutional: any slice size is padded to a multiple of the network's stride and cropped
back, so the map has exactly the slice's shape. It learns from synthetic corruptions
(:mod:`core.training_anomalies`) of real normal slices under normal variation
(:mod:`core.variation`); training is :mod:`core.detectors.head_training`.

The slice score is :func:`slice_score`: the maximum of the probability map averaged over a
``score_window`` square (DRAEM's image score), so one bright pixel does not flag a slice and a
small region does.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch
from monai.networks.nets import UNet
from scipy import ndimage

from core.preprocess import from_model_grid, to_model_grid


class HeadInput(StrEnum):
    IMAGE = "image"
    AUTOENCODER = "autoencoder"
    DIFFUSION = "diffusion"


RECON_GRID = 128  # the reconstructions are made on the detectors' model grid


@dataclass(frozen=True)
class HeadConfig:
    """Network and input settings; stored beside the weights."""

    inputs: tuple[str, ...] = ("image", "autoencoder", "diffusion")
    channels: tuple[int, ...] = (16, 32, 64, 128)
    strides: tuple[int, ...] = (2, 2, 2)
    num_res_units: int = 1
    diffusion_level: int = 200  # DDIM partial-noising timestep of the diffusion channel
    score_window: int = 7  # slice score: max of the probability map box-averaged over this square
    seed: int = 0

    @property
    def stride(self) -> int:
        return int(np.prod(self.strides))


def build_head(config: HeadConfig) -> UNet:
    torch.manual_seed(config.seed)
    return UNet(spatial_dims=2, in_channels=len(config.inputs), out_channels=1, channels=config.channels,
                strides=config.strides, num_res_units=config.num_res_units)


def slice_score(probability: np.ndarray, window: int) -> np.ndarray:
    """Max of the ``window``-box-averaged probability map, per slice.

    Args:
        probability: ``(H, W)`` or ``(B, H, W)``.

    Returns:
        float, or ``(B,)``.
    """
    maps = np.asarray(probability, dtype=np.float32)
    single = maps.ndim == 2
    maps = maps[None] if single else maps
    scores = np.array([ndimage.uniform_filter(m, window, mode="constant").max() for m in maps])
    return float(scores[0]) if single else scores


def box_max(maps: torch.Tensor, window: int, *, count_edge: bool = True) -> torch.Tensor:
    """:func:`slice_score` in torch, differentiable: the max of the ``window``-box-averaged map,
    ``(B, 1, H, W)`` -> ``(B,)``. ``count_edge``: the box counts the zeros beyond the edge, as
    :func:`slice_score` does; else it averages only the pixels inside."""
    pooled = torch.nn.functional.avg_pool2d(maps, window, stride=1, padding=window // 2,
                                            count_include_pad=count_edge)
    return pooled.flatten(1).max(dim=1).values


def image_logit(logits: torch.Tensor, window: int) -> torch.Tensor:
    """The slice score's counterpart on logits (for the training's crop-level loss): :func:`box_max`
    of the logit map, the box averaging only pixels inside the crop. ``(B, 1, H, W)`` -> ``(B,)``."""
    return box_max(logits, window, count_edge=False)


class Reconstructor:
    """E_AE's and S_diffusion's reconstructions of slices of any size, on the slices' own pixels.

    Args:
        autoencoder, diffusion: trained detectors (either may be None when not used).
        diffusion_level: DDIM start timestep of the diffusion reconstruction.
    """

    def __init__(self, autoencoder=None, diffusion=None, *, diffusion_level: int = 200, batch_size: int = 32):
        self.autoencoder = autoencoder
        self.diffusion = diffusion
        self.diffusion_level = diffusion_level
        self.batch_size = batch_size

    def __call__(self, slices: list[np.ndarray], inputs: tuple[str, ...]) -> list[np.ndarray]:
        """``(C, H, W)`` float32 per slice, channels in ``inputs`` order (see the module docstring)."""
        wanted = [k for k in inputs if k != HeadInput.IMAGE]
        recon: dict[str, list[np.ndarray]] = {k: [] for k in wanted}
        if wanted:
            grids, transforms = zip(*(to_model_grid(np.clip(s, 0.0, 1.0), RECON_GRID) for s in slices), strict=True)
            grid = np.stack(grids)[:, None].astype(np.float32)
            for start in range(0, len(grid), self.batch_size):
                x = torch.from_numpy(grid[start : start + self.batch_size])
                for kind in wanted:
                    if kind == HeadInput.AUTOENCODER:
                        out = self.autoencoder.reconstruct(x)
                    elif kind == HeadInput.DIFFUSION:
                        out = self.diffusion.reconstruct(x, self.diffusion_level)
                    else:
                        raise ValueError(f"unknown head input {kind!r}")
                    recon[kind].extend(out[:, 0].numpy())
            for kind in wanted:
                recon[kind] = [from_model_grid(r, t) for r, t in zip(recon[kind], transforms, strict=True)]
        out = []
        for i, s in enumerate(slices):
            out.append(np.stack([s if k == HeadInput.IMAGE else recon[k][i] for k in inputs]).astype(np.float32))
        return out


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``(B, C, H, W)`` at the bottom and right to multiples of ``multiple`` by mirroring the edge.

    Zeros would put a step (noisy background, then exact zeros) inside the head's view that it never
    saw in training, and it lights up as a strip along the edge of most clean slices."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == pw == 0:
        return x, (h, w)
    mode = "reflect" if ph < h and pw < w else "replicate"
    return torch.nn.functional.pad(x, (0, pw, 0, ph), mode=mode), (h, w)


@dataclass
class HeadDetector:
    """A trained head: input channels in, per-pixel anomaly probabilities out."""

    model: UNet
    config: HeadConfig
    metadata: dict = field(default_factory=dict)
    name: str = "head"

    def __post_init__(self) -> None:
        self.model.eval()

    def logits(self, channels: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, 1, H, W)`` logits, any ``H, W`` (differentiable)."""
        padded, (h, w) = pad_to_multiple(channels, self.config.stride)
        return self.model(padded)[..., :h, :w]

    @torch.no_grad()
    def probability(self, channels: list[np.ndarray] | np.ndarray) -> list[np.ndarray]:
        """Per-pixel anomaly probability ``(H, W)`` for each ``(C, H, W)`` input; slices of one shape
        run as one batch."""
        channels = list(channels)
        out: list[np.ndarray | None] = [None] * len(channels)
        by_shape: dict[tuple, list[int]] = {}
        for i, c in enumerate(channels):
            by_shape.setdefault(c.shape, []).append(i)
        for indices in by_shape.values():
            for start in range(0, len(indices), 16):
                part = indices[start : start + 16]
                x = torch.from_numpy(np.stack([channels[i] for i in part]).astype(np.float32))
                probs = torch.sigmoid(self.logits(x))[:, 0].numpy()
                for i, p in zip(part, probs, strict=True):
                    out[i] = p
        return out

    def save(self, path: Path, *, metadata: dict | None = None) -> None:
        """Weights to ``path`` (.pt) and ``path.json`` with the config and the training record."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({k: v.half() for k, v in self.model.state_dict().items()}, path)
        record = {"config": asdict(self.config), **(metadata if metadata is not None else self.metadata)}
        path.with_suffix(".json").write_text(json.dumps(record, indent=1))

    @classmethod
    def load(cls, path: Path) -> "HeadDetector":
        path = Path(path)
        record = json.loads(path.with_suffix(".json").read_text())
        raw = record.pop("config")
        config = HeadConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
        model = build_head(config)
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.float() for k, v in state.items()})
        return cls(model, config, record)
