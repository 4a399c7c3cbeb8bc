"""Normal variation: what real slices of healthy heads look like across scanners, sites and files.

The segmentation head (:mod:`core.detectors.head`) must not flag a slice because it is noisier,
darker, cropped, rotated, saved as 8-bit or shows a skull. Every training image, clean or
corrupted, and every image of the realistic benchmark (:mod:`core.benchmark.realistic`) gets a
fresh draw of this variation, and it is **never labelled**: it is what "normal" means.

The input is an axial slice at about 1 mm with its tissue scaled to about [0, 1] (the 99th
percentile of the head at 1). :func:`vary` applies, in order:

1. geometry: rotation, isotropic scale, left-right flip, and a field of view of random height and
   width (``fov``, non-square) with a random offset, so crops and partial heads occur; optionally a
   smooth elastic displacement (``elastic_px``; the head's training uses it, the benchmark does not);
2. a smooth multiplicative bias field (exp of a random quadratic surface);
3. gamma (contrast);
4. global blur on some images (scanner resolution, mild motion);
5. Rician noise over a wide range of levels (log-uniform ``noise_sigma``);
6. optionally (``coarse_probability``; the benchmark does not use it) a true resolution coarser than the
   1 mm grid: the image at ``coarse_mm`` pixels, resampled back (:func:`at_coarse_resolution`), as a head
   sees a scan or a generator's output whose stated pixels are coarse.

:func:`quantise` (8-bit storage, as a PNG would) is applied separately, last, because a file is
written after any artifact is in the image.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class VariationParams:
    """Ranges of the normal variation (see the module docstring)."""

    rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.85, 1.2)
    fov: tuple[int, int] = (128, 224)  # output height and width, each drawn in this range (pixels = mm)
    offset_px: float = 15.0
    flip_probability: float = 0.5
    bias_amplitude: tuple[float, float] = (0.0, 0.35)  # peak of the log gain of the bias field
    gamma: tuple[float, float] = (0.7, 1.5)
    blur_probability: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    noise_sigma: tuple[float, float] = (0.005, 0.06)  # log-uniform, in units of the tissue's 99th percentile
    quantise_probability: float = 0.5
    elastic_px: float = 0.0  # peak of a smooth random displacement (anatomy differs between heads); 0: none
    coarse_probability: float = 0.0  # share of images whose true pixels are coarse (step 6); 0: none, no draw
    coarse_mm: tuple[float, float] = (1.2, 2.2)  # their pixel size, uniform in this range

    def as_dict(self) -> dict:
        return asdict(self)


def smooth_field(shape: tuple[int, int], rng: np.random.Generator, *, cells: int = 3) -> np.ndarray:
    """A smooth random field in about [-1, 1]: a ``cells x cells`` Gaussian grid, cubic-upsampled."""
    coarse = rng.normal(size=(cells + 1, cells + 1))
    field = ndimage.zoom(coarse, (shape[0] / (cells + 1), shape[1] / (cells + 1)), order=3, mode="nearest")
    field = field[: shape[0], : shape[1]]
    if field.shape != shape:  # zoom rounds; pad the odd row or column
        field = np.pad(field, ((0, shape[0] - field.shape[0]), (0, shape[1] - field.shape[1])), mode="edge")
    return field / (np.abs(field).max() + 1e-8)


def reframe(image: np.ndarray, rng: np.random.Generator, params: VariationParams, *, order: int = 1) -> np.ndarray:
    """Rotate, scale, flip and crop ``image`` into a random field of view (step 1 of :func:`vary`)."""
    h_out, w_out = (int(rng.integers(params.fov[0], params.fov[1] + 1)) for _ in range(2))
    angle = np.deg2rad(rng.uniform(-params.rotation_deg, params.rotation_deg))
    scale = rng.uniform(*params.scale)
    flip = -1.0 if rng.uniform() < params.flip_probability else 1.0
    # affine_transform maps output coordinates to input coordinates.
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    matrix = np.array([[cos, -sin], [sin, cos]]) @ np.diag([1.0, flip])
    centre_in = (np.array(image.shape, dtype=float) - 1) / 2 + rng.uniform(-params.offset_px, params.offset_px, 2)
    centre_out = (np.array([h_out, w_out], dtype=float) - 1) / 2
    offset = centre_in - matrix @ centre_out
    if params.elastic_px <= 0:
        out = ndimage.affine_transform(image, matrix, offset=offset, output_shape=(h_out, w_out), order=order,
                                       mode="constant", cval=0.0)
        return out.astype(np.float32)
    grid = np.indices((h_out, w_out), dtype=np.float64).reshape(2, -1)
    coords = (matrix @ grid + offset[:, None]).reshape(2, h_out, w_out)
    coords += params.elastic_px * np.stack([smooth_field((h_out, w_out), rng, cells=4) for _ in range(2)])
    return ndimage.map_coordinates(image, coords, order=order, mode="constant", cval=0.0).astype(np.float32)


def rician(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the image plus complex Gaussian noise of ``sigma`` per channel (MR noise)."""
    real = image + rng.normal(0.0, sigma, image.shape)
    imag = rng.normal(0.0, sigma, image.shape)
    return np.sqrt(real**2 + imag**2).astype(np.float32)


def vary(image: np.ndarray, rng: np.random.Generator, params: VariationParams = VariationParams()) -> np.ndarray:
    """One random, normal-looking variant of a 1 mm slice whose tissue is scaled to about [0, 1].

    Args:
        image: ``(H, W)`` float, background about 0.
        rng: the random generator (the caller owns seeding).
        params: the ranges.

    Returns:
        ``(h, w)`` float32 with ``h, w`` drawn from ``params.fov``; values >= 0, not clipped above
        (a bright region stays brighter than the tissue around it).
    """
    out = reframe(np.asarray(image, dtype=np.float32), rng, params)
    bias = rng.uniform(*params.bias_amplitude) * smooth_field(out.shape, rng, cells=2)
    out = out * np.exp(bias)
    out = np.clip(out, 0.0, None) ** rng.uniform(*params.gamma)
    if rng.uniform() < params.blur_probability:
        out = ndimage.gaussian_filter(out, rng.uniform(*params.blur_sigma))
    sigma = float(np.exp(rng.uniform(*np.log(params.noise_sigma))))
    out = rician(out, sigma, rng)
    if params.coarse_probability > 0 and rng.uniform() < params.coarse_probability:
        out = at_coarse_resolution(out, float(rng.uniform(*params.coarse_mm)))
    return out


def vary_volume(volume: np.ndarray, rng: np.random.Generator, params: VariationParams = VariationParams()) -> np.ndarray:
    """One volume-wide draw of normal variation on an ``(X, Y, Z)`` volume with tissue at ~1: a
    smooth bias field shared by the slices, gamma, Rician noise and 8-bit storage (part of the
    time); the geometry is kept (a scanner's own grid)."""
    field = smooth_field(volume.shape[:2], rng, cells=2) * rng.uniform(*params.bias_amplitude)
    out = np.clip(volume * np.exp(field)[:, :, None], 0, None) ** rng.uniform(*params.gamma)
    out = rician(out, float(np.exp(rng.uniform(*np.log(params.noise_sigma)))), rng)
    if rng.uniform() < params.quantise_probability:
        out = quantise(out)
    return out


def coarsen(image: np.ndarray, pixel_mm: float) -> np.ndarray:
    """A 1 mm slice as an image of ``pixel_mm`` mm pixels (a generator's 128-px whole brain is about
    1.8 mm): Gaussian anti-aliasing (sigma ``(f - 1) / 2`` px, as :func:`skimage.transform.rescale`)
    then linear resampling onto the coarser grid; ``pixel_mm <= 1`` returns the slice unchanged."""
    if pixel_mm <= 1.0:
        return np.asarray(image, dtype=np.float32)
    from skimage.transform import rescale

    return rescale(np.asarray(image, dtype=np.float64), 1.0 / pixel_mm, order=1, anti_aliasing=True,
                   preserve_range=True, mode="edge").astype(np.float32)


def at_coarse_resolution(image: np.ndarray, pixel_mm: float) -> np.ndarray:
    """``image`` (1 mm pixels) as it looks when its true pixels are ``pixel_mm``: :func:`coarsen`, then
    linear resampling back onto the same grid (what the head's own resampling to about 1 mm does to a
    scan that states coarse pixels)."""
    from skimage.transform import resize

    coarse = coarsen(image, pixel_mm)
    return resize(coarse.astype(np.float64), np.shape(image), order=1, preserve_range=True,
                  mode="edge").astype(np.float32)


def quantise(image: np.ndarray, levels: int = 255) -> np.ndarray:
    """``image`` stored with ``levels + 1`` grey levels from 0 to its maximum (an 8-bit PNG)."""
    peak = float(np.max(image))
    if peak <= 0:
        return np.zeros_like(image, dtype=np.float32)
    return (np.round(np.clip(image, 0, None) / peak * levels) * (peak / levels)).astype(np.float32)
