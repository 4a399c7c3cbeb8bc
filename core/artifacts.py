"""Artifact simulator with exact ground-truth masks (the benchmark writer built on it: :mod:`core.benchmark.simulated`).

SAFEGEN's detectors learn only from real, normal images; to measure whether they find the
artifacts that generative models make, and whether explainers point at them, the benchmark
corrupts real slices with simulated artifacts whose extent is known to the pixel.

Inputs are normalised 2-D slices: float32 ``(H, W)`` with ``H, W >= 32``, values in ``[0, 1]``,
background 0, plus an optional boolean foreground mask (default: ``image > 0.05``, largest
connected component, holes filled).

Artifact kinds (:class:`ArtifactKind`) and their :data:`EXTENT`: ``blur``, ``checkerboard``,
``lesion``, ``noise_patch``, ``duplication``, ``dropout``, ``ringing`` and ``bias_spot`` are
*local* (centred on a foreground pixel, confined to the foreground dilated by
:data:`FOREGROUND_MARGIN_PX`); ``ghosting`` is *global*. How each :class:`Severity` scales a kind
is one table, :data:`SEVERITY_TABLE`.

Ground-truth mask
-----------------
Every artifact has a *support* ``S``: the pixels it was allowed to touch. Outside ``S`` the
corrupted image ``y`` equals the clean image ``x`` bit for bit. With ``d = |y - x|`` computed on
the float32 values:

1. ``V = {d > VISIBLE_DELTA}``: the pixels the artifact changed *visibly* (``V`` lies in ``S``).
2. ``C = V | (closing(V, 3x3) & S)``: bridge one-pixel gaps so that a textured artifact (a
   checkerboard, a noise patch) gives a region rather than salt and pepper.
3. ``mask = C | (holes of C of at most MAX_FILLED_HOLE_PX pixels, & S)``. Only small holes are
   filled: a large unchanged hole (a flat area inside a blurred disk) was not changed visibly and
   stays out.

Hence, by construction: (a) every pixel with ``d > VISIBLE_DELTA`` is in the mask (coverage 1.0);
(c) outside the mask ``d <= VISIBLE_DELTA``. (b) The mask is not inflated: the pixels added in
steps 2-3 sit between visible ones, and at least :data:`MIN_CHANGED_FRACTION` of every mask
changed by more than ``VISIBLE_DELTA / 2`` (tested).

``VISIBLE_DELTA = 0.02`` of the [0, 1] range: on an 8-bit display that is 5 grey levels, about
the 1-2 % Weber fraction at which a reader starts to see a contrast step on a uniform mid-grey
area; smaller changes are not something a reader (or an explainer judged against readers) should
be asked to find. It is also ~1300 quantisation steps of the 16-bit PNGs the benchmark writes, so
the masks hold for the files as well as for the arrays.

The inflation bound :data:`MIN_CHANGED_FRACTION` = 0.5 is the worst case of step 2 alone: a
3x3 closing of a pattern in which every other pixel is visible (a period-2 checkerboard just
above threshold) doubles it, so half the mask would be filler. Steps 2-3 must never do worse
than that; in practice (phantoms and MNI152 slices, every kind and severity) the share is >= 0.6.

If a placement changes too little to see (fewer than :data:`MIN_VISIBLE_PIXELS` or
:data:`MIN_VISIBLE_FRACTION` of the support or of the foreground, whichever is smaller; e.g. a
blur over a flat region), the artifact is placed again with fresh random draws, up to
:data:`MAX_PLACEMENT_ATTEMPTS` times, then :class:`ArtifactPlacementError`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.morphology import remove_small_holes

from core.errors import EmptyImageError
from core.preprocess import fill_holes, largest_component

# --------------------------------------------------------------------------------------------
# Vocabulary and constants
# --------------------------------------------------------------------------------------------


class ArtifactKind(StrEnum):
    """What a generative model can get wrong; each value names one simulator below."""

    BLUR = "blur"  # local motion smear along a random direction
    CHECKERBOARD = "checkerboard"  # transposed-convolution grid texture, period 2-4 px
    LESION = "lesion"  # hallucinated smooth irregular bright or dark blob
    NOISE_PATCH = "noise_patch"  # patch of oriented band-pass noise texture
    DUPLICATION = "duplication"  # anatomy copied from elsewhere, pasted with a feathered edge
    DROPOUT = "dropout"  # region darkened towards 0
    RINGING = "ringing"  # Gibbs ringing (k-space truncation) in a band at a strong edge
    GHOSTING = "ghosting"  # faint replica shifted along the phase-encode axis (global)
    BIAS_SPOT = "bias_spot"  # local multiplicative bias-field bright or dark spot

    @property
    def extent(self) -> Extent:
        return EXTENT[self]


class Extent(StrEnum):
    """Whether an artifact sits in one place (``local``) or spreads over the image (``global``)."""

    LOCAL = "local"
    GLOBAL = "global"


EXTENT: dict[ArtifactKind, Extent] = {
    kind: Extent.GLOBAL if kind is ArtifactKind.GHOSTING else Extent.LOCAL for kind in ArtifactKind
}


class Severity(IntEnum):
    """How strong an artifact is; what it scales per kind is in :data:`SEVERITY_TABLE`."""

    MILD = 1
    MODERATE = 2
    SEVERE = 3


@dataclass(frozen=True)
class Level:
    """One cell of the severity table.

    Attributes:
        radius: artifact radius as a fraction of the foreground's equivalent radius
            ``sqrt(foreground area / pi)``, so an artifact covers the same share of the anatomy at
            any image size (0 for global kinds).
        strength: the kind's intensity knob; its meaning is in :data:`STRENGTH_MEANING`.
    """

    radius: float
    strength: float


STRENGTH_MEANING: dict[ArtifactKind, str] = {
    ArtifactKind.BLUR: "motion smear length, fraction of the foreground radius (at least 2 px)",
    ArtifactKind.CHECKERBOARD: "peak amplitude of the grid texture added",
    ArtifactKind.LESION: "peak intensity offset of the blob",
    ArtifactKind.NOISE_PATCH: "standard deviation of the noise texture added",
    ArtifactKind.DUPLICATION: "opacity of the pasted core (area alone grows with severity)",
    ArtifactKind.DROPOUT: "fraction of the intensity removed at the centre",
    ArtifactKind.RINGING: "fraction of k-space discarded across the edge (residual x RINGING_GAIN)",
    ArtifactKind.GHOSTING: "replica amplitude relative to the image",
    ArtifactKind.BIAS_SPOT: "peak multiplicative gain change (1 +/- strength)",
}

def _levels(radius: tuple[float, ...], strength: tuple[float, ...]) -> dict[Severity, Level]:
    return {severity: Level(r, k) for severity, r, k in zip(Severity, radius, strength, strict=True)}


# Both knobs grow with severity for every kind (duplication: area only), so the total change grows
# MILD < MODERATE < SEVERE (tested). Set by eye on 128x128 MNI152 slices and a phantom.
SEVERITY_TABLE: dict[ArtifactKind, dict[Severity, Level]] = {
    #                          radius: MILD, MODERATE, SEVERE   strength: MILD, MODERATE, SEVERE
    ArtifactKind.BLUR:         _levels((0.22, 0.30, 0.38), (0.08, 0.14, 0.22)),
    ArtifactKind.CHECKERBOARD: _levels((0.22, 0.30, 0.38), (0.05, 0.08, 0.13)),
    ArtifactKind.LESION:       _levels((0.12, 0.17, 0.24), (0.15, 0.25, 0.40)),
    ArtifactKind.NOISE_PATCH:  _levels((0.20, 0.28, 0.36), (0.04, 0.07, 0.12)),
    ArtifactKind.DUPLICATION:  _levels((0.16, 0.22, 0.30), (1.00, 1.00, 1.00)),
    ArtifactKind.DROPOUT:      _levels((0.14, 0.20, 0.28), (0.35, 0.60, 0.85)),
    ArtifactKind.RINGING:      _levels((0.25, 0.33, 0.42), (0.50, 0.62, 0.72)),
    ArtifactKind.GHOSTING:     _levels((0.00, 0.00, 0.00), (0.07, 0.12, 0.20)),
    ArtifactKind.BIAS_SPOT:    _levels((0.30, 0.40, 0.50), (0.25, 0.40, 0.60)),
}


def severity_table() -> pd.DataFrame:
    """:data:`SEVERITY_TABLE` as one row per kind and severity, with the strength's meaning."""
    return pd.DataFrame([
        {"kind": str(kind), "extent": str(kind.extent), "severity": severity.name.lower(),
         "radius": level.radius, "strength": level.strength, "strength_meaning": STRENGTH_MEANING[kind]}
        for kind, levels in SEVERITY_TABLE.items() for severity, level in levels.items()
    ])


VISIBLE_DELTA = 0.02
"""A pixel changed *visibly* when ``|corrupted - clean| > VISIBLE_DELTA`` (see module docstring)."""

MIN_CHANGED_FRACTION = 0.5
"""Bound (b): at least this share of a mask changed by more than ``VISIBLE_DELTA / 2`` (tested)."""

MAX_FILLED_HOLE_PX = 16
"""Holes in the visible set up to this area (a 4x4 block) are filled; larger ones are real gaps."""

FOREGROUND_MARGIN_PX = 3.0
"""Local artifacts stay within this distance of the foreground: a smear or a ripple may cross the
outer edge a little, but nothing is painted into the empty background."""

MIN_VISIBLE_PIXELS = 9
MIN_VISIBLE_FRACTION = 0.05
"""A placement counts when it changed visibly at least ``max(MIN_VISIBLE_PIXELS,
MIN_VISIBLE_FRACTION * min(support area, foreground area))`` pixels; else it is placed again."""

MAX_PLACEMENT_ATTEMPTS = 25
MIN_SIDE = 32
MIN_RADIUS_PX = 3.0
FEATHER_FRACTION = 0.4  # the outer 40 % of a soft disk's radius ramps from 1 to 0
FOREGROUND_THRESHOLD = 0.05
CHECKERBOARD_PERIODS = (2, 3, 4)
# Zero-mean one-period profiles: the 2-D texture is their outer product, so every pixel moves
# (|value| >= 0.25) and the texture has no DC offset. Period 4 gives 2x2-pixel checks.
_CHECKER_PROFILES = {2: (1.0, -1.0), 3: (1.0, -0.5, -0.5), 4: (1.0, 1.0, -1.0, -1.0)}
# Rounding tolerance: callers may compute the difference in float32, which can differ from the
# float64 difference by ~1e-9; the visible set is taken 1e-6 wide so both agree with the mask.
_DIFF_TOLERANCE = 1e-6
# Band-pass noise: a Gaussian bump of this width (relative to its centre frequency) is wide
# enough to read as noise, narrow enough to keep an orientation (a grating at 0, white at >1).
NOISE_RELATIVE_BANDWIDTH = 0.45
# Generated images ring far more than the 9 % Gibbs overshoot of a real scanner; the truncation
# residual is amplified by this much so that even MILD ringing is visible next to an edge.
RINGING_GAIN = 2.0


class ArtifactPlacementError(RuntimeError):
    """No placement of the artifact changed enough pixels visibly (a flat or tiny foreground)."""


@dataclass(frozen=True)
class Corruption:
    """A corrupted slice and exactly where it was corrupted.

    Attributes:
        image: float32 ``(H, W)`` in [0, 1], the corrupted slice.
        mask: bool ``(H, W)``, the ground-truth mask (module docstring).
        kind: the artifact kind.
        severity: its severity.
        params: JSON-serialisable placement and strength (pixel coordinates are ``[row, col]``).
    """

    image: np.ndarray
    mask: np.ndarray
    kind: ArtifactKind
    severity: Severity
    params: dict

    @property
    def extent(self) -> Extent:
        return self.kind.extent


# --------------------------------------------------------------------------------------------
# Ground truth
# --------------------------------------------------------------------------------------------


def ground_truth_mask(clean: np.ndarray, corrupted: np.ndarray, support: np.ndarray) -> np.ndarray:
    """The pixels an artifact changed visibly, as a region inside its support.

    Args:
        clean: ``(H, W)`` the image before the artifact.
        corrupted: ``(H, W)`` the image after it; equal to ``clean`` outside ``support``.
        support: bool ``(H, W)``, the pixels the artifact was allowed to change.

    Returns:
        bool ``(H, W)``: visibly changed pixels, small gaps closed and small holes filled,
        never outside ``support`` (module docstring).
    """
    diff = np.abs(corrupted.astype(np.float64) - clean.astype(np.float64))
    visible = diff > VISIBLE_DELTA - _DIFF_TOLERANCE
    if np.any(visible & ~support):
        raise ValueError("the corrupted image differs visibly outside the artifact's support")
    # scipy's closing can erode pixels at the image border, hence the union with `visible`.
    closed = visible | (ndimage.binary_closing(visible, structure=np.ones((3, 3), bool)) & support)
    filled = remove_small_holes(closed, max_size=MAX_FILLED_HOLE_PX)
    return closed | (filled & support)


def default_foreground(image: np.ndarray) -> np.ndarray:
    """The foreground of a normalised slice: ``image > 0.05``, largest component, holes filled.

    Args:
        image: ``(H, W)`` in [0, 1], background 0.

    Returns:
        bool ``(H, W)``.

    Raises:
        EmptyImageError: no pixel is above the threshold.
    """
    above = image > FOREGROUND_THRESHOLD
    if not above.any():
        raise EmptyImageError(f"no pixel above {FOREGROUND_THRESHOLD}: the slice has no foreground")
    return fill_holes(largest_component(above))


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scene:
    """What every simulator needs to know about the clean slice."""

    clean: np.ndarray  # float64 (H, W), in [0, 1]
    foreground: np.ndarray  # bool (H, W)
    near_foreground: np.ndarray  # bool (H, W): within FOREGROUND_MARGIN_PX of the foreground
    depth: np.ndarray  # float (H, W): distance of a foreground pixel to the background
    scale: float  # equivalent radius of the foreground, px

    @classmethod
    def build(cls, clean: np.ndarray, foreground: np.ndarray) -> _Scene:
        outside = ndimage.distance_transform_edt(~foreground)
        return cls(
            clean=clean,
            foreground=foreground,
            near_foreground=outside <= FOREGROUND_MARGIN_PX,
            depth=ndimage.distance_transform_edt(foreground),
            scale=float(np.sqrt(foreground.sum() / np.pi)),
        )

    @property
    def shape(self) -> tuple[int, int]:
        return self.clean.shape

    def radius_px(self, level: Level) -> float:
        return max(MIN_RADIUS_PX, level.radius * self.scale)

    def soft_disk(self, centre: tuple[int, int], radius: float) -> np.ndarray:
        """The default artifact footprint: a disk whose outer FEATHER_FRACTION ramps to 0."""
        return _soft_blob(self.shape, centre, radius, feather=FEATHER_FRACTION * radius)

    def pick_centre(
        self, inset_px: float, rng: np.random.Generator, among: np.ndarray | None = None
    ) -> tuple[int, int]:
        """A random foreground pixel, at least ``inset_px`` inside the foreground where possible,
        so that the artifact lands on anatomy rather than half in the background."""
        allowed = self.foreground if among is None else self.foreground & among
        for inset in (inset_px, inset_px / 2, 0.0):
            candidates = np.flatnonzero(allowed & (self.depth > inset))
            if candidates.size:
                row, col = np.unravel_index(rng.choice(candidates), self.shape)
                return int(row), int(col)
        raise ArtifactPlacementError("no foreground pixel to centre the artifact on")


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _soft_blob(
    shape: tuple[int, int],
    centre: tuple[int, int],
    radius: float,
    *,
    feather: float,
    harmonics: Sequence[tuple[float, float]] = (),
) -> np.ndarray:
    """A weight map: 1 in the core, smooth ramp to 0 at the (possibly wavy) boundary.

    Args:
        shape: ``(H, W)``.
        centre: ``(row, col)``.
        radius: mean boundary radius, px.
        feather: width of the ramp, px.
        harmonics: ``(amplitude, phase)`` of boundary harmonics k = 2, 3, ...: the boundary radius
            at angle theta is ``radius * (1 + sum_k a_k cos(k theta + phi_k))``; none gives a disk.

    Returns:
        float ``(H, W)`` in [0, 1], exactly 0 beyond the boundary.
    """
    rows, cols = np.indices(shape, dtype=np.float64)
    dy, dx = rows - centre[0], cols - centre[1]
    theta = np.arctan2(dy, dx)
    boundary = np.ones(shape)
    for k, (amplitude, phase) in enumerate(harmonics, start=2):
        boundary += amplitude * np.cos(k * theta + phase)
    boundary *= radius
    return _smoothstep((boundary - np.hypot(dy, dx)) / max(feather, 1e-6))


def _random_harmonics(rng: np.random.Generator, roughness: float) -> list[tuple[float, float]]:
    """Boundary harmonics k = 2..4, each at most ``roughness / k`` (the radius stays positive)."""
    return [(float(rng.uniform(0, roughness / k)), float(rng.uniform(0, 2 * np.pi))) for k in (2, 3, 4)]


def _polarity_with_headroom(brightened: float, darkened: float, rng: np.random.Generator) -> float:
    """+1 (bright) or -1 (dark): random where both fit in [0, 1], else the one that clips less.

    A bright spot on tissue already near 1 would be clipped into a flat white plateau that no
    longer looks like its name; ``brightened`` / ``darkened`` are the typical tissue value after
    each choice.
    """
    overflow, underflow = max(brightened - 1.0, 0.0), max(-darkened, 0.0)
    if overflow == underflow:
        return 1.0 if rng.random() < 0.5 else -1.0
    return 1.0 if overflow < underflow else -1.0


def _motion_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A normalised line kernel of ``length`` px at ``angle_deg`` (0 = along columns), anti-aliased."""
    half = int(np.ceil(length / 2)) + 1
    kernel = np.zeros((2 * half + 1, 2 * half + 1))
    angle = np.deg2rad(angle_deg)
    for t in np.linspace(-length / 2, length / 2, max(2, int(np.ceil(4 * length)))):
        y, x = half - t * np.sin(angle), half + t * np.cos(angle)
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        fy, fx = y - y0, x - x0
        # Bilinear splat: a sub-pixel line gives a smooth, direction-faithful smear.
        kernel[y0, x0] += (1 - fy) * (1 - fx)
        kernel[y0 + 1, x0] += fy * (1 - fx)
        kernel[y0, x0 + 1] += (1 - fy) * fx
        kernel[y0 + 1, x0 + 1] += fy * fx
    return kernel / kernel.sum()


def _shifted(image: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """``out[r, c] = image[r + dr, c + dc]``, edge pixels repeated beyond the border."""
    rows = np.clip(np.arange(image.shape[0]) + offset[0], 0, image.shape[0] - 1)
    cols = np.clip(np.arange(image.shape[1]) + offset[1], 0, image.shape[1] - 1)
    return image[np.ix_(rows, cols)]


# --------------------------------------------------------------------------------------------
# Simulators: each returns the unclipped corrupted image, its support and its parameters
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Draft:
    image: np.ndarray  # float64 (H, W), before clipping
    support: np.ndarray  # bool (H, W)
    params: dict


def _local_draft(scene: _Scene, target: np.ndarray, weight: np.ndarray, params: dict) -> _Draft:
    """Blend ``target`` into the clean image with ``weight`` (0 outside the support)."""
    return _Draft(scene.clean + weight * (target - scene.clean), weight > 0, params)


def _blur(scene: _Scene, level: Level, rng: np.random.Generator) -> _Draft:
    radius = scene.radius_px(level)
    centre = scene.pick_centre(radius / 2, rng)
    length = max(2.0, level.strength * scene.scale)
    angle = float(rng.uniform(0, 180))
    smeared = ndimage.convolve(scene.clean, _motion_kernel(length, angle), mode="nearest")
    weight = scene.soft_disk(centre, radius) * scene.near_foreground
    return _local_draft(scene, smeared, weight, {
        "centre": list(centre), "radius_px": radius, "length_px": length, "angle_deg": angle,
    })


def checkerboard_texture(shape: tuple[int, int], period: int, phase: tuple[int, int] = (0, 0)) -> np.ndarray:
    """The upsampling-grid texture: outer product of a zero-mean profile of ``period`` px.

    Args:
        shape: ``(H, W)``.
        period: 2, 3 or 4 px (stride of the transposed convolution it mimics).
        phase: ``(row, col)`` offset of the grid, px.

    Returns:
        float ``(H, W)``, peak 1, zero mean over every full period.
    """
    profile = np.asarray(_CHECKER_PROFILES[period])
    rows = profile[(np.arange(shape[0]) + phase[0]) % period]
    cols = profile[(np.arange(shape[1]) + phase[1]) % period]
    return np.outer(rows, cols)


def _checkerboard(scene: _Scene, level: Level, rng: np.random.Generator) -> _Draft:
    radius = scene.radius_px(level)
    centre = scene.pick_centre(radius / 2, rng)
    period = int(rng.choice(CHECKERBOARD_PERIODS))
    phase = (int(rng.integers(period)), int(rng.integers(period)))
    texture = checkerboard_texture(scene.shape, period, phase)
    # The texture rides on the anatomy only: GAN upsampling grids show where there is signal.
    weight = scene.soft_disk(centre, radius) * scene.foreground
    return _Draft(scene.clean + level.strength * weight * texture, weight > 0, {
        "centre": list(centre), "radius_px": radius, "period_px": period, "phase": list(phase),
        "amplitude": level.strength,
    })


def _lesion(scene: _Scene, level: Level, rng: np.random.Generator) -> _Draft:
    radius = scene.radius_px(level)
    centre = scene.pick_centre(radius, rng)
    harmonics = _random_harmonics(rng, roughness=0.35)
    # A wide soft edge (half the radius) so the blob fades into tissue like a real lesion.
    weight = _soft_blob(scene.shape, centre, radius, feather=0.5 * radius, harmonics=harmonics)
    weight *= scene.foreground
    core = weight > 0.5
    tissue = float(scene.clean[core].mean()) if core.any() else 0.5
    polarity = _polarity_with_headroom(tissue + level.strength, tissue - level.strength, rng)
    return _Draft(scene.clean + polarity * level.strength * weight, weight > 0, {
        "centre": list(centre), "radius_px": radius, "polarity": "bright" if polarity > 0 else "dark",
        "contrast": level.strength, "harmonics": [list(h) for h in harmonics],
    })


def _noise_patch(scene: _Scene, level: Level, rng: np.random.Generator) -> _Draft:
    radius = scene.radius_px(level)
    centre = scene.pick_centre(radius / 2, rng)
    # Band-pass noise around one random spatial frequency: an oriented, wormy texture like the
    # repeated high-frequency patterns of a generator, not the white noise of a scanner.
    frequency = float(rng.uniform(0.12, 0.28))
    angle = float(rng.uniform(0, 180))
    fy, fx = np.meshgrid(np.fft.fftfreq(scene.shape[0]), np.fft.fftfreq(scene.shape[1]), indexing="ij")
    f0 = frequency * np.array([np.sin(np.deg2rad(angle)), np.cos(np.deg2rad(angle))])
    bandwidth = NOISE_RELATIVE_BANDWIDTH * frequency
    response = sum(
        np.exp(-((fy - sign * f0[0]) ** 2 + (fx - sign * f0[1]) ** 2) / (2 * bandwidth**2)) for sign in (1, -1)
    )
    texture = np.fft.ifft2(np.fft.fft2(rng.standard_normal(scene.shape)) * response).real
    weight = scene.soft_disk(centre, radius) * scene.foreground
    texture /= max(texture[weight > 0].std(), 1e-12)
    return _Draft(scene.clean + level.strength * weight * texture, weight > 0, {
        "centre": list(centre), "radius_px": radius, "frequency_cycles_per_px": frequency,
        "orientation_deg": angle, "std": level.strength,
    })


def _duplication(scene: _Scene, level: Level, rng: np.random.Generator) -> _Draft:
    radius = scene.radius_px(level)
    centre = scene.pick_centre(radius, rng)
    rows, cols = np.indices(scene.shape)
    far = np.hypot(rows - centre[0], cols - centre[1]) >= 2 * radius
    # Prefer a source patch that does not overlap the destination, so the paste shows.
    if not np.any(far & scene.foreground & (scene.depth > radius / 2)):
        far = np.hypot(rows - centre[0], cols - centre[1]) >= radius
    source = scene.pick_centre(radius, rng, among=far)
    copied = _shifted(scene.clean, (source[0] - centre[0], source[1] - centre[1]))
    weight = level.strength * scene.soft_disk(centre, radius) * scene.near_foreground
    return _local_draft(scene, copied, weight, {
        "centre": list(centre), "source_centre": list(source), "radius_px": radius,
        "core_radius_px": (1.0 - FEATHER_FRACTION) * radius, "opacity": level.strength,
    })


def _dropout(scene: _Scene, level: Level, rng: np.random.Generator) -> _Draft:
    radius = scene.radius_px(level)
    centre = scene.pick_centre(radius / 2, rng)
    harmonics = _random_harmonics(rng, roughness=0.3)
    weight = _soft_blob(scene.shape, centre, radius, feather=FEATHER_FRACTION * radius, harmonics=harmonics)
    weight *= scene.near_foreground
    return _Draft(scene.clean * (1.0 - level.strength * weight), weight > 0, {
        "centre": list(centre), "radius_px": radius, "depth": level.strength,
        "harmonics": [list(h) for h in harmonics],
    })


def _ringing(scene: _Scene, level: Level, rng: np.random.Generator) -> _Draft:
    radius = scene.radius_px(level)
    smooth = ndimage.gaussian_filter(scene.clean, 1.0)
    grad_rows, grad_cols = ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1)
    magnitude = np.hypot(grad_rows, grad_cols)
    # Gibbs ringing shows next to strong edges: centre the band on one of the strongest.
    strong = magnitude >= np.quantile(magnitude[scene.foreground], 0.9)
    centre = scene.pick_centre(0.0, rng, among=strong)
    # Truncate k-space along the axis across the edge, so the ripples run parallel to it.
    axis = 0 if abs(grad_rows[centre]) >= abs(grad_cols[centre]) else 1
    n = scene.shape[axis]
    keep = np.abs(np.fft.fftfreq(n)) <= 0.5 * (1.0 - level.strength)
    keep = keep.reshape((n, 1) if axis == 0 else (1, n))
    truncated = np.fft.ifft(np.fft.fft(scene.clean, axis=axis) * keep, axis=axis).real
    ringed = scene.clean + RINGING_GAIN * (truncated - scene.clean)
    weight = scene.soft_disk(centre, radius) * scene.near_foreground
    return _local_draft(scene, ringed, weight, {
        "centre": list(centre), "radius_px": radius, "axis": axis, "discarded_kspace": level.strength,
        "gain": RINGING_GAIN,
    })


def _ghosting(scene: _Scene, level: Level, rng: np.random.Generator) -> _Draft:
    axis = int(rng.integers(2))
    n = scene.shape[axis]
    # A ghost shifted by a quarter to a half field of view (N/2 ghosts sit at exactly half);
    # it wraps round the field of view as a real phase-encode ghost does.
    shift = int(rng.integers(n // 4, n // 2 + 1)) * (1 if rng.random() < 0.5 else -1)
    replica = np.roll(scene.clean, shift, axis=axis)
    return _Draft(scene.clean + level.strength * replica, np.ones(scene.shape, bool), {
        "axis": axis, "shift_px": shift, "amplitude": level.strength,
    })


def _bias_spot(scene: _Scene, level: Level, rng: np.random.Generator) -> _Draft:
    radius = scene.radius_px(level)
    centre = scene.pick_centre(radius / 2, rng)
    rows, cols = np.indices(scene.shape)
    sigma = radius / 2.5
    gain = np.exp(-((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2) / (2 * sigma**2))
    # The taper brings the Gaussian to exactly 0 at the radius so the support is finite.
    gain *= scene.soft_disk(centre, radius)
    core = (gain > 0.5) & scene.foreground
    tissue = float(scene.clean[core].mean()) if core.any() else 0.5
    sign = _polarity_with_headroom(tissue * (1 + level.strength), tissue * (1 - level.strength), rng)
    return _Draft(scene.clean * (1.0 + sign * level.strength * gain), (gain > 0) & scene.foreground, {
        "centre": list(centre), "radius_px": radius, "sigma_px": sigma,
        "direction": "bright" if sign > 0 else "dark", "gain_change": level.strength,
    })


_SIMULATORS: dict[ArtifactKind, Callable[[_Scene, Level, np.random.Generator], _Draft]] = {
    ArtifactKind.BLUR: _blur,
    ArtifactKind.CHECKERBOARD: _checkerboard,
    ArtifactKind.LESION: _lesion,
    ArtifactKind.NOISE_PATCH: _noise_patch,
    ArtifactKind.DUPLICATION: _duplication,
    ArtifactKind.DROPOUT: _dropout,
    ArtifactKind.RINGING: _ringing,
    ArtifactKind.GHOSTING: _ghosting,
    ArtifactKind.BIAS_SPOT: _bias_spot,
}


# --------------------------------------------------------------------------------------------
# Public simulation API
# --------------------------------------------------------------------------------------------


def as_slice(image: np.ndarray) -> np.ndarray:
    """Check a normalised slice and return it as float32 in [0, 1]."""
    array = np.asarray(image)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D slice (H, W), got shape {array.shape}")
    if min(array.shape) < MIN_SIDE:
        raise ValueError(f"slice {array.shape} is too small: both sides must be >= {MIN_SIDE}")
    if not np.all(np.isfinite(array)):
        raise ValueError("the slice holds NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    # Resampling leaves values a hair outside [0, 1]; anything more is an unnormalised input.
    if low < -0.01 or high > 1.01:
        raise ValueError(f"expected intensities normalised to [0, 1], got [{low:.3g}, {high:.3g}]")
    return np.clip(array, 0.0, 1.0).astype(np.float32)


def _as_foreground(foreground: np.ndarray | None, clean: np.ndarray) -> np.ndarray:
    if foreground is None:
        return default_foreground(clean)
    mask = np.asarray(foreground).astype(bool)
    if mask.shape != clean.shape:
        raise ValueError(f"foreground shape {mask.shape} != image shape {clean.shape}")
    if not mask.any():
        raise EmptyImageError("the foreground mask is empty")
    return mask


def _json_ready(value):
    """Plain Python numbers (floats rounded to 6 digits) so params serialise identically."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), 6)
    return value


def _required_visible(support: np.ndarray, foreground: np.ndarray) -> float:
    """Visible pixels a placement needs; a global artifact is judged against the anatomy it copies."""
    area = min(np.count_nonzero(support), np.count_nonzero(foreground))
    return max(MIN_VISIBLE_PIXELS, MIN_VISIBLE_FRACTION * area)


def simulate(
    image: np.ndarray,
    kind: ArtifactKind | str,
    severity: Severity | int,
    rng: np.random.Generator,
    foreground: np.ndarray | None = None,
) -> Corruption:
    """Corrupt one slice with one artifact and return it with its ground-truth mask.

    Args:
        image: ``(H, W)`` normalised slice, values in [0, 1], background 0, ``H, W >= 32``.
        kind: the artifact (an :class:`ArtifactKind` or its value).
        severity: :class:`Severity` or 1-3.
        rng: the only source of randomness; the same generator state gives the same result.
        foreground: optional bool ``(H, W)``; default :func:`default_foreground`.

    Returns:
        a :class:`Corruption`: float32 ``(H, W)`` image in [0, 1] and bool ``(H, W)`` mask.

    Raises:
        ValueError: the slice is not a normalised 2-D image of at least 32x32.
        EmptyImageError: the slice has no foreground.
        ArtifactPlacementError: no placement changed enough pixels visibly.
    """
    kind, severity = ArtifactKind(kind), Severity(severity)
    clean = as_slice(image)
    scene = _Scene.build(clean.astype(np.float64), _as_foreground(foreground, clean))
    level = SEVERITY_TABLE[kind][severity]
    most_visible = 0
    for attempt in range(MAX_PLACEMENT_ATTEMPTS):
        draft = _SIMULATORS[kind](scene, level, rng)
        corrupted = np.where(draft.support, np.clip(draft.image, 0.0, 1.0), clean).astype(np.float32)
        mask = ground_truth_mask(clean, corrupted, draft.support)
        n_visible = int(np.count_nonzero(np.abs(corrupted.astype(np.float64) - clean) > VISIBLE_DELTA))
        most_visible = max(most_visible, n_visible)
        if n_visible >= _required_visible(draft.support, scene.foreground):
            params = _json_ready({**draft.params, "attempt": attempt, "visible_px": n_visible})
            return Corruption(image=corrupted, mask=mask, kind=kind, severity=severity, params=params)
    raise ArtifactPlacementError(
        f"{kind} ({severity.name.lower()}) changed at most {most_visible} pixels by more than "
        f"{VISIBLE_DELTA} in {MAX_PLACEMENT_ATTEMPTS} placements: the slice is too flat or its "
        f"foreground too small for this artifact"
    )


def simulate_random(
    image: np.ndarray,
    rng: np.random.Generator,
    kinds: Sequence[ArtifactKind | str] | None = None,
    severities: Sequence[Severity | int] | None = None,
    foreground: np.ndarray | None = None,
) -> Corruption:
    """:func:`simulate` with a kind and a severity drawn uniformly from ``kinds`` and ``severities``
    (default: all of them). Args and Returns as :func:`simulate`."""
    kind_choices = [ArtifactKind(k) for k in kinds] if kinds is not None else list(ArtifactKind)
    severity_choices = [Severity(s) for s in severities] if severities is not None else list(Severity)
    if not kind_choices or not severity_choices:
        raise ValueError("kinds and severities must not be empty")
    kind = kind_choices[int(rng.integers(len(kind_choices)))]
    severity = severity_choices[int(rng.integers(len(severity_choices)))]
    return simulate(image, kind, severity, rng, foreground)

