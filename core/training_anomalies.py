"""Self-supervised training anomalies for the segmentation head, with exact labels.

This is **not** the evaluation simulator (:mod:`core.artifacts`): the head learns from generic
local corruptions drawn here and is measured on the simulator's artifact kinds, so the benchmark
measures generalisation, not recall of the simulator. The designs follow the self-supervised tasks
behind the MOOD challenge winners and DRAEM:

* ``foreign_patch``: Foreign Patch Interpolation (Tan et al., arXiv:2011.04197): the same place of
  another slice (another subject or level), interpolated in with a random factor.
* ``pasted_patch``: a patch from elsewhere in the same or another slice, flipped or not, blended in
  with a soft mask and, half of the time, matched in mean (a cheap stand-in for Poisson cloning,
  as in Natural Synthetic Anomalies, Schlüter et al., arXiv:2109.15222).
* ``texture_fill``: a Perlin-like irregular mask filled with texture of another image, rescaled
  (DRAEM, Zavrtanik et al., ICCV 2021).
* ``smoothing``, ``local_noise``, ``grating`` (periodic stripes or a checker of period 2-8 px),
  ``intensity`` (a local gain), ``blob`` (a hyper- or hypo-intense irregular blob).

Label rule (one for every kind): with ``d`` the absolute change smoothed by a Gaussian of
:data:`LABEL_SMOOTHING_PX`, the label is ``d > tolerance`` inside the corruption's support (the
soft mask's non-zero pixels); the corrupted image then takes the clean value everywhere outside
the label. So, exactly: pixels outside the label are unchanged, and every labelled pixel lies in a
region whose smoothed change exceeds the tolerance. A draw whose label is smaller than
:data:`MIN_LABEL_PIXELS` returns the clean image and an empty label (a normal sample).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum

import numpy as np
from scipy import ndimage

from core.variation import smooth_field

LABEL_SMOOTHING_PX = 1.0
MIN_LABEL_PIXELS = 12
TISSUE_LEVEL = 0.1  # a pixel above this (tissue scaled to about [0, 1]) is tissue, for placing corruptions


class TrainingKind(StrEnum):
    FOREIGN_PATCH = "foreign_patch"
    PASTED_PATCH = "pasted_patch"
    TEXTURE_FILL = "texture_fill"
    SMOOTHING = "smoothing"
    LOCAL_NOISE = "local_noise"
    GRATING = "grating"
    INTENSITY = "intensity"
    BLOB = "blob"


@dataclass(frozen=True)
class AnomalyParams:
    """Ranges of the training corruptions; recorded in the head's sidecar."""

    probability: float = 0.6  # share of training images that get a corruption
    radius_px: tuple[float, float] = (3.0, 32.0)  # log-uniform
    outside_tissue_probability: float = 0.1  # a corruption centred anywhere, not on tissue
    tolerance: float = 0.03  # label threshold on the smoothed change (tissue ~ 1)
    kinds: tuple[str, ...] = tuple(k.value for k in TrainingKind)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainingAnomaly:
    """A corrupted image and its exact label."""

    image: np.ndarray  # (H, W) float32
    label: np.ndarray  # (H, W) bool
    kind: str  # "" when nothing was inserted


def irregular_mask(shape: tuple[int, int], centre: tuple[float, float], radius: float,
                   rng: np.random.Generator) -> np.ndarray:
    """A soft mask in [0, 1]: an ellipse of about ``radius`` px, its edge roughened by smooth noise.

    Returns float32 ``shape``; zero beyond about 1.6 ``radius`` from ``centre``.
    """
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    aspect = rng.uniform(0.5, 1.0)
    angle = rng.uniform(0, np.pi)
    dy, dx = rows - centre[0], cols - centre[1]
    u = (dy * np.cos(angle) + dx * np.sin(angle)) / radius
    v = (-dy * np.sin(angle) + dx * np.cos(angle)) / (radius * aspect)
    distance = np.sqrt(u**2 + v**2)
    roughness = rng.uniform(0.0, 0.6) * smooth_field(shape, rng, cells=max(2, int(max(shape) / max(radius, 2.0))))
    level = 1.0 - distance + roughness
    feather = rng.uniform(0.1, 0.5)
    soft = np.clip(level / feather, 0.0, 1.0)
    soft[distance > 1.6] = 0.0
    return soft.astype(np.float32)


def _shifted_patch(source: np.ndarray, shape: tuple[int, int], rng: np.random.Generator,
                   flip: bool) -> np.ndarray:
    """``source`` moved by a random offset (and flipped) onto a ``shape`` canvas."""
    canvas = np.zeros(shape, dtype=np.float32)
    h, w = min(shape[0], source.shape[0]), min(shape[1], source.shape[1])
    canvas[:h, :w] = source[:h, :w]
    if flip:
        canvas = canvas[:, ::-1] if rng.uniform() < 0.5 else canvas[::-1]
    shift = rng.integers(-shape[0] // 3, shape[0] // 3 + 1), rng.integers(-shape[1] // 3, shape[1] // 3 + 1)
    return np.roll(canvas, shift, axis=(0, 1))


def _fit(other: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``other`` cropped or zero-padded (centred) to ``shape``."""
    out = np.zeros(shape, dtype=np.float32)
    h, w = min(shape[0], other.shape[0]), min(shape[1], other.shape[1])
    oy, ox = (other.shape[0] - h) // 2, (other.shape[1] - w) // 2
    ty, tx = (shape[0] - h) // 2, (shape[1] - w) // 2
    out[ty : ty + h, tx : tx + w] = other[oy : oy + h, ox : ox + w]
    return out


# Each maker returns the fully corrupted image (before the label rule); ``soft`` is the mask.
Maker = Callable[[np.ndarray, np.ndarray, np.ndarray, np.random.Generator, float], np.ndarray]


def _foreign_patch(image, soft, other, rng, radius):
    factor = rng.uniform(0.3, 1.0)
    return image + factor * soft * (other - image)


def _pasted_patch(image, soft, other, rng, radius):
    source = image if rng.uniform() < 0.5 else other
    patch = _shifted_patch(source, image.shape, rng, flip=rng.uniform() < 0.5)
    if rng.uniform() < 0.5:
        inside = soft > 0.5
        if inside.any():
            patch = patch - patch[inside].mean() + image[inside].mean()
    return image + soft * (patch - image)


def _texture_fill(image, soft, other, rng, radius):
    zoom = rng.uniform(0.5, 2.0)
    texture = ndimage.zoom(other, zoom, order=1)
    texture = _shifted_patch(texture, image.shape, rng, flip=rng.uniform() < 0.5)
    return image + soft * (texture - image)


def _smoothing(image, soft, other, rng, radius):
    return image + soft * (ndimage.gaussian_filter(image, rng.uniform(1.0, 4.0)) - image)


def _local_noise(image, soft, other, rng, radius):
    noise = rng.normal(0.0, 1.0, image.shape)
    if rng.uniform() < 0.5:
        noise = ndimage.gaussian_filter(noise, rng.uniform(0.5, 1.5))
        noise /= noise.std() + 1e-8
    return np.abs(image + soft * rng.uniform(0.03, 0.25) * noise)


def _grating(image, soft, other, rng, radius):
    period = rng.uniform(2.0, 8.0)
    angle = rng.uniform(0, np.pi)
    rows, cols = np.mgrid[: image.shape[0], : image.shape[1]]
    phase = 2 * np.pi * (rows * np.cos(angle) + cols * np.sin(angle)) / period
    wave = np.sign(np.sin(phase)) if rng.uniform() < 0.5 else np.sin(phase)
    if rng.uniform() < 0.3:  # a checker: the product of two orthogonal waves
        wave = wave * np.sign(np.sin(2 * np.pi * (-rows * np.sin(angle) + cols * np.cos(angle)) / period))
    amplitude = rng.uniform(0.04, 0.3)
    tissue = max(float(np.percentile(image, 90)), 0.1)
    return np.abs(image + soft * amplitude * tissue * wave)


def _intensity(image, soft, other, rng, radius):
    gain = rng.uniform(0.4, 0.85) if rng.uniform() < 0.5 else rng.uniform(1.15, 1.8)
    return image * (1.0 + soft * (gain - 1.0))


def _blob(image, soft, other, rng, radius):
    tissue = max(float(np.percentile(image, 90)), 0.1)
    amplitude = rng.uniform(0.15, 0.9) * tissue * (1 if rng.uniform() < 0.6 else -1)
    inner = ndimage.gaussian_filter(soft, max(radius / 4, 1.0))
    inner = inner / (inner.max() + 1e-8)
    return np.clip(image + amplitude * inner, 0.0, None)


MAKERS: dict[TrainingKind, Maker] = {
    TrainingKind.FOREIGN_PATCH: _foreign_patch,
    TrainingKind.PASTED_PATCH: _pasted_patch,
    TrainingKind.TEXTURE_FILL: _texture_fill,
    TrainingKind.SMOOTHING: _smoothing,
    TrainingKind.LOCAL_NOISE: _local_noise,
    TrainingKind.GRATING: _grating,
    TrainingKind.INTENSITY: _intensity,
    TrainingKind.BLOB: _blob,
}


def apply_label_rule(clean: np.ndarray, corrupted: np.ndarray, support: np.ndarray,
                     tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """The one label rule (module docstring): returns ``(image, label)``; the image equals ``clean``
    outside the label."""
    change = ndimage.gaussian_filter(np.abs(corrupted - clean), LABEL_SMOOTHING_PX)
    label = (change > tolerance) & support
    return np.where(label, corrupted, clean).astype(np.float32), label


def corrupt(image: np.ndarray, kind: TrainingKind | str, rng: np.random.Generator, *,
            other: np.ndarray | None = None, params: AnomalyParams = AnomalyParams()) -> TrainingAnomaly:
    """Insert one corruption of ``kind`` into ``image``.

    Args:
        image: ``(H, W)`` float32, tissue scaled to about [0, 1].
        kind: a :class:`TrainingKind`.
        rng: the random generator.
        other: another slice (another subject or level), any shape; it is cropped or padded to
            ``image``'s shape. Default: ``image`` flipped up-down.
        params: the ranges.
    """
    kind = TrainingKind(kind)
    clean = np.asarray(image, dtype=np.float32)
    other = clean[::-1].copy() if other is None else _fit(np.asarray(other, dtype=np.float32), clean.shape)
    tissue = np.argwhere(clean > TISSUE_LEVEL)
    if len(tissue) and rng.uniform() >= params.outside_tissue_probability:
        centre = tuple(tissue[rng.integers(len(tissue))].astype(float))
    else:
        centre = (rng.uniform(0, clean.shape[0]), rng.uniform(0, clean.shape[1]))
    radius = float(np.exp(rng.uniform(*np.log(params.radius_px))))
    soft = irregular_mask(clean.shape, centre, radius, rng)
    corrupted = MAKERS[kind](clean, soft, other, rng, radius).astype(np.float32)
    out, label = apply_label_rule(clean, corrupted, soft > 0, params.tolerance)
    if label.sum() < MIN_LABEL_PIXELS:
        return TrainingAnomaly(clean.copy(), np.zeros(clean.shape, dtype=bool), "")
    return TrainingAnomaly(out, label, kind.value)


def random_anomaly(image: np.ndarray, rng: np.random.Generator, *, others: Sequence[np.ndarray] = (),
                   params: AnomalyParams = AnomalyParams()) -> TrainingAnomaly:
    """With probability ``params.probability`` one corruption of a random kind of ``params.kinds``
    (the donor slice drawn from ``others``), else the image unchanged with an empty label."""
    if rng.uniform() >= params.probability or not params.kinds:
        return TrainingAnomaly(np.asarray(image, dtype=np.float32).copy(), np.zeros(image.shape, dtype=bool), "")
    kind = params.kinds[rng.integers(len(params.kinds))]
    other = others[rng.integers(len(others))] if len(others) else None
    return corrupt(image, kind, rng, other=other, params=params)
