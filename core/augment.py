"""Augmentation: random, realistic variants of a normalised slice that stand in for normal variation.

Few real subjects install offline (:mod:`core.profiles`), so each profile's reference set
(:mod:`core.reference`) and every training step of the detectors (:mod:`core.detectors.training`)
add random rotation, scale, translation, gamma, a smooth bias field and noise, in the profile's
ranges (:class:`AugmentParams`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random augmentation that stands in for normal anatomical/scanner variation."""

    rotation_deg: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    translate_px: float = 8.0
    gamma: tuple[float, float] = (0.75, 1.35)
    bias_amplitude: float = 0.15  # peak relative gain change of the smooth bias field
    noise_sigma: tuple[float, float] = (0.0, 0.03)  # noise, in units of the [0, 1] range
    noise: str = "rician"  # "rician" (MR magnitude images) or "gaussian" (CT)


def augment(image: np.ndarray, rng: np.random.Generator, params: AugmentParams = AugmentParams()) -> np.ndarray:
    """One random, realistic variant of a normalised slice.

    Args:
        image: ``(H, W)`` float32 in [0, 1], background 0.
        rng: the random generator (the caller owns seeding).
        params: augmentation ranges.

    Returns:
        ``(H, W)`` float32 in [0, 1].
    """
    h, w = image.shape
    angle = np.deg2rad(rng.uniform(-params.rotation_deg, params.rotation_deg))
    scale = rng.uniform(*params.scale)
    shift = rng.uniform(-params.translate_px, params.translate_px, size=2)
    # affine_transform maps output coordinates to input coordinates: rotate/scale about the centre.
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    matrix = np.array([[cos, -sin], [sin, cos]])
    centre = np.array([(h - 1) / 2.0, (w - 1) / 2.0])
    offset = centre - matrix @ (centre + shift)
    out = ndimage.affine_transform(image, matrix, offset=offset, order=1, mode="constant", cval=0.0)

    foreground = out > 0.02
    out = np.clip(out, 0.0, 1.0) ** rng.uniform(*params.gamma)

    # Smooth multiplicative bias field: a random 2nd-order polynomial over the image plane.
    yy, xx = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    terms = np.stack([xx, yy, xx * yy, xx**2, yy**2])
    coef = rng.normal(size=len(terms))
    field = np.tensordot(coef, terms, axes=1)
    field = field / (np.abs(field).max() + 1e-8)
    out = out * (1.0 + params.bias_amplitude * rng.uniform(0, 1) * field)

    # Rician noise: magnitude of a complex signal with Gaussian noise in both channels, as in MRI;
    # CT's quantum noise is close to Gaussian in HU.
    sigma = rng.uniform(*params.noise_sigma)
    if sigma > 0:
        real = out + rng.normal(0, sigma, size=out.shape)
        if params.noise == "gaussian":
            noisy = real
        else:
            imag = rng.normal(0, sigma, size=out.shape)
            noisy = np.sqrt(real**2 + imag**2)
        # Skull-stripped references have an exactly-zero background; keep it so.
        out = np.where(foreground, noisy, 0.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
