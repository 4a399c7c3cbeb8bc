"""A generator's report card: fidelity, coverage, diversity and memorisation of a set of 2-D images.

SAFEGEN's detectors judge one image at a time. The people who make synthetic sets also ask whether
the *set* looks like real data and covers it, whether it is diverse, and whether the generator has
copied its training patients (Dar et al., arXiv:2402.01054; Akbar et al., arXiv:2305.07644). This
module holds the science of that report as pure functions over arrays; reading folders, writing
files and drawing plots belong to the workflow that calls it.

All images are ``(N, H, W)`` float32 in [0, 1] on SAFEGEN's model grid (128 x 128), prepared as the
detectors prepare them (:func:`prepare_image_files`, i.e. :func:`core.preprocess.normalise_for_models`
then :func:`core.preprocess.to_model_grid`, the path of :class:`core.scoring.PreparedScan`).

Features
--------
:func:`image_features` are SAFEGEN's own, from a network that installs offline (:class:`FeatureEncoder`):
for a profile with a segmentation head on the image alone (``models/head_<profile>.pt``, brain MRI T1), the
outputs of the head's four encoder stages (16, 32, 64 and 128 channels at 1/2 to 1/8 of the 128 grid), each
channel pooled to its spatial mean and standard deviation: :data:`HEAD_FEATURES`, 480 numbers; the head was
trained to tell local blur, noise, gratings and foreign texture from normal anatomy, so its statistics see
what a generator gets wrong in texture. A profile without such a head (head CT) uses its autoencoder's
8 x 8 x 64 bottleneck, average-pooled (:data:`AUTOENCODER_FEATURES`, 64 numbers). Either way each feature is
then standardised on the report's real set (:meth:`FeatureEncoder.standardised_on`), so that no one
channel's scale rules the kernels. The head's layer was chosen over the autoencoder's on a validation
generated set of another seed (``scripts/measure_report_features.py``; README, Generator report card): the
autoencoder is a *denoising* one and its pooled bottleneck is built to ignore noise. **FID and KID on these
features are not comparable with published FIDs on Inception-v3 or RadImageNet features**: the feature
space, its dimension and its scale differ; compare numbers only within SAFEGEN, same profile and same
weights.

Directions: KID, FID lower is better (0 = same distribution); precision, recall higher is better;
mean pairwise MS-SSIM: higher means *less* diverse; copy similarity: higher is worse (privacy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from monai.metrics import FIDMetric, MultiScaleSSIMMetric

from core.detectors.autoencoder import AutoencoderDetector
from core.io import load_volume
from core.preprocess import GRID_SIZE, normalise_for_models, to_model_grid
from core.profiles import DEFAULT_PROFILE, Profile, get_profile
from core.types import Volume

HEAD_FEATURES = ("segmentation head's encoder, its 4 stages (16, 32, 64, 128 channels), each channel's spatial mean "
                 "and standard deviation -> 480, standardised on the real set")
AUTOENCODER_FEATURES = ("autoencoder encoder bottleneck (8x8x64), global average pooled -> 64, standardised on the "
                        "real set")

# MS-SSIM at 128 px. MONAI's 5 scales (the weights of Wang et al. 2003) shrink the image 16-fold, and
# MONAI requires side // 16 > kernel_size - 1: 128 // 16 = 8, so the Gaussian window may be at most
# 8 px; 7 px with sigma 1.5 (about +-2 sigma, the usual 11 px window cut to fit) keeps all 5 scales.
MS_SSIM_KERNEL_SIZE = 7
MS_SSIM_KERNEL_SIGMA = 1.5

# Mode collapse: warn when generated pairs are more alike than real pairs by more than one standard
# deviation of the real pairwise MS-SSIM values (the typical generated pair is then as alike as the
# most alike ~16 % of real pairs), and the difference is also beyond 2 standard errors (not sampling noise).
COLLAPSE_REAL_SDS = 1.0
COLLAPSE_MIN_Z = 2.0

# Two images count as the same picture up to a small misregistration: pixel NCC is the maximum
# over circular shifts of up to this many pixels (background is 0, so a circular shift of a padded
# slice moves only background around the border).
COPY_MAX_SHIFT_PX = 3


# ---------------------------------------------------------------------------------------------
# Preparing images and features
# ---------------------------------------------------------------------------------------------

def prepare_image_files(paths: Sequence[Path], profile: Profile | str | None = None) -> np.ndarray:
    """2-D image files -> ``(N, 128, 128)`` float32 in [0, 1], exactly as the detectors see them.

    Each file is loaded (:func:`core.io.load_volume`), normalised with the one function the scorer
    uses (:func:`core.preprocess.normalise_for_models`, the profile's modality and window) and put
    on the model grid (:func:`core.preprocess.to_model_grid`).

    Raises:
        ValueError: a file holds a 3-D volume (the report is about 2-D generated slices).
    """
    profile = get_profile(profile or DEFAULT_PROFILE)
    return np.stack([prepare_volume(load_volume(path), profile) for path in paths])


def prepare_volume(volume: Volume, profile: Profile | str | None = None) -> np.ndarray:
    """One loaded 2-D image -> ``(128, 128)`` float32 in [0, 1] on the model grid (see
    :func:`prepare_image_files`).

    Raises:
        ValueError: ``volume`` is 3-D.
    """
    profile = get_profile(profile or DEFAULT_PROFILE)
    if volume.is_3d:
        raise ValueError(f"{volume.name} is a 3-D volume; the generator report takes 2-D images")
    normalised = normalise_for_models(volume, profile.modality, profile.window).array
    return to_model_grid(normalised, GRID_SIZE)[0].astype(np.float32)


class _Enough(Exception):
    """Raised by the last stage's hook: the rest of the network (a decoder) is not needed."""


@dataclass(frozen=True)
class FeatureEncoder:
    """A network whose stage outputs, pooled per channel, are the report's features (see the module docstring).

    ``network`` runs on ``(B, 1, 128, 128)``; the outputs of ``stages`` (in the order they run; the pass
    stops after the last) are pooled to each channel's spatial mean, and standard deviation with
    ``pool_std``; :meth:`standardised_on` fixes a centre and scale per feature, and keeps the images it was
    fitted on with their features, so a report that asks again for that real set's features (the copy
    calibration, the card's measures) reads them instead of running the network three times.
    """

    network: torch.nn.Module
    stages: tuple[torch.nn.Module, ...]
    layer: str  # in words, for the report
    pool_std: bool = True
    mean: np.ndarray | None = None
    scale: np.ndarray | None = None
    fitted_images: np.ndarray | None = field(default=None, repr=False, compare=False)
    fitted_features: np.ndarray | None = field(default=None, repr=False, compare=False)

    @torch.no_grad()
    def raw(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """The pooled stage outputs, ``(N, D)`` float32, before standardisation."""
        outputs: list[torch.Tensor] = []

        def keep(module, _inputs, output):
            outputs.append(output)
            if module is self.stages[-1]:
                raise _Enough

        hooks = [stage.register_forward_hook(keep) for stage in self.stages]
        self.network.eval()
        rows = []
        try:
            for start in range(0, len(images), batch_size):
                outputs.clear()
                try:
                    self.network(torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size, None])))
                except _Enough:
                    pass
                pooled = [o.mean(dim=(2, 3)) for o in outputs]
                if self.pool_std:
                    pooled += [o.std(dim=(2, 3)) for o in outputs]
                rows.append(torch.cat(pooled, dim=1))
        finally:
            for hook in hooks:
                hook.remove()
        return torch.cat(rows).numpy().astype(np.float32)

    def standardised_on(self, images: np.ndarray) -> FeatureEncoder:
        """This encoder with each feature centred and scaled by its mean and spread over ``images`` (the
        real set), so that no channel's scale rules KID's kernel or the k-NN balls."""
        feats = self.raw(images).astype(np.float64)
        mean, scale = feats.mean(axis=0), feats.std(axis=0) + 1e-6
        return replace(self, mean=mean, scale=scale, fitted_images=images,
                       fitted_features=((feats - mean) / scale).astype(np.float32))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        if self.fitted_images is not None and images is self.fitted_images:
            return self.fitted_features.copy()  # the same numbers as below: float32 features, float64 centring
        feats = self.raw(images)
        if self.mean is None:
            return feats
        return ((feats - self.mean) / self.scale).astype(np.float32)


def unet_encoder_stages(model: torch.nn.Module) -> tuple[torch.nn.Module, ...]:
    """The down-path blocks of a MONAI ``UNet``, top to bottom: ``model.model`` is
    ``Sequential(down, SkipConnection(Sequential(down, SkipConnection(...), up)), up)`` down to a bottom block."""
    block, stages = model.model, []
    while isinstance(block, torch.nn.Sequential):
        stages.append(block[0])
        block = block[1].submodule
    return (*stages, block)


def load_feature_encoder(profile: Profile | str | None = None, models_dir: Path | None = None) -> FeatureEncoder:
    """The profile's feature network, not yet standardised: its segmentation head's encoder where the profile
    has a head on the image alone, else its autoencoder's bottleneck (see the module docstring)."""
    from core.detectors.head import HeadDetector

    profile = get_profile(profile or DEFAULT_PROFILE)
    head_path = profile.model_file("head", models_dir)
    if head_path.is_file():
        head = HeadDetector.load(head_path)
        if tuple(head.config.inputs) == ("image",):
            return FeatureEncoder(head.model, unet_encoder_stages(head.model), HEAD_FEATURES)
    autoencoder = AutoencoderDetector.load(profile.model_file("autoencoder", models_dir)).model
    return FeatureEncoder(autoencoder.encode, (autoencoder.encode,), AUTOENCODER_FEATURES, pool_std=False)


def image_features(images: np.ndarray, profile: Profile | str | None = None, *,
                   encoder: FeatureEncoder | None = None) -> np.ndarray:
    """SAFEGEN features of 2-D images (see the module docstring).

    Args:
        images: ``(N, 128, 128)`` float32 in [0, 1] on the model grid (:func:`prepare_image_files`).
        profile: whose network (default brain MRI T1); ignored when ``encoder`` is given.
        encoder: a loaded (and usually standardised) :class:`FeatureEncoder`; None: the profile's, unstandardised.

    Returns:
        ``(N, D)`` float32.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1:] != (GRID_SIZE, GRID_SIZE):
        raise ValueError(f"images must be (N, {GRID_SIZE}, {GRID_SIZE}) on the model grid, got {images.shape}")
    return (encoder or load_feature_encoder(profile))(images)


# ---------------------------------------------------------------------------------------------
# Fidelity and coverage
# ---------------------------------------------------------------------------------------------

def _polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KID's kernel ``k(x, y) = (x . y / d + 1) ** 3`` (Binkowski et al. 2018), in float64."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def _mmd2_unbiased(k_rr: np.ndarray, k_gg: np.ndarray, k_rg: np.ndarray) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3) from the three kernel matrices."""
    m, n = len(k_rr), len(k_gg)
    within_r = (k_rr.sum() - np.trace(k_rr)) / (m * (m - 1))
    within_g = (k_gg.sum() - np.trace(k_gg)) / (n * (n - 1))
    return float(within_r + within_g - 2.0 * k_rg.mean())


def _kid_jackknife_se(k_rr: np.ndarray, k_gg: np.ndarray, k_rg: np.ndarray) -> float:
    """Two-sample delete-one jackknife standard error of the full-set unbiased MMD^2.

    Leaving out real image ``i`` (or generated ``j``) changes only row/column sums, so all
    ``m + n`` leave-one-out estimates cost O(m^2 + n^2 + mn) from the kernel matrices.
    """
    m, n = len(k_rr), len(k_gg)
    off_r = k_rr.sum() - np.trace(k_rr)
    off_g = k_gg.sum() - np.trace(k_gg)
    row_r = k_rr.sum(axis=1) - np.diag(k_rr)  # off-diagonal row sums
    row_g = k_gg.sum(axis=1) - np.diag(k_gg)
    cross_r, cross_g, cross = k_rg.sum(axis=1), k_rg.sum(axis=0), k_rg.sum()
    loo_r = ((off_r - 2 * row_r) / ((m - 1) * (m - 2)) + off_g / (n * (n - 1))
             - 2 * (cross - cross_r) / ((m - 1) * n))
    loo_g = (off_r / (m * (m - 1)) + (off_g - 2 * row_g) / ((n - 1) * (n - 2))
             - 2 * (cross - cross_g) / (m * (n - 1)))
    variance = (m - 1) / m * np.sum((loo_r - loo_r.mean()) ** 2) + (n - 1) / n * np.sum((loo_g - loo_g.mean()) ** 2)
    return float(math.sqrt(variance))


def kid(real_feats: np.ndarray, gen_feats: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0, max_se_samples: int = 2000) -> tuple[float, float]:
    """Kernel Inception Distance on SAFEGEN features: unbiased MMD^2 with a cubic polynomial kernel.

    Binkowski et al., "Demystifying MMD GANs", ICLR 2018: ``k(x, y) = (x . y / d + 1)^3``, the unbiased
    estimator averaged over ``subsets`` random subsets of ``min(subset_size, n_real, n_gen)`` images of
    each set (drawn without replacement). Lower is better; 0 in expectation for the same distribution,
    and it can be slightly negative. Unlike FID it is unbiased, so it suits sets of a few hundred.

    The standard error is the two-sample delete-one jackknife of the full-set estimate (sets
    subsampled to ``max_se_samples`` beyond that); the spread over subsets is not used because
    subsets overlap (with 8 generated images every subset holds all 8) and would understate it.

    Args:
        real_feats: ``(M, D)`` features of real images, ``M >= 3``.
        gen_feats: ``(N, D)`` features of generated images, ``N >= 3``.
        subsets, subset_size, seed: the subset averaging.
        max_se_samples: cap on each set's size for the O(n^2) jackknife.

    Returns:
        ``(kid, standard_error)``.
    """
    real = np.asarray(real_feats, dtype=np.float64)
    gen = np.asarray(gen_feats, dtype=np.float64)
    if len(real) < 3 or len(gen) < 3 or real.shape[1] != gen.shape[1]:
        raise ValueError(f"KID needs >= 3 images per set and equal feature sizes, got {real.shape} and {gen.shape}")
    rng = np.random.default_rng(seed)
    size = min(subset_size, len(real), len(gen))
    estimates = []
    for _ in range(subsets):
        r = real[rng.choice(len(real), size, replace=False)]
        g = gen[rng.choice(len(gen), size, replace=False)]
        estimates.append(_mmd2_unbiased(_polynomial_kernel(r, r), _polynomial_kernel(g, g), _polynomial_kernel(r, g)))
    r_se = real if len(real) <= max_se_samples else real[rng.choice(len(real), max_se_samples, replace=False)]
    g_se = gen if len(gen) <= max_se_samples else gen[rng.choice(len(gen), max_se_samples, replace=False)]
    se = _kid_jackknife_se(_polynomial_kernel(r_se, r_se), _polynomial_kernel(g_se, g_se), _polynomial_kernel(r_se, g_se))
    return float(np.mean(estimates)), se


def fid(real_feats: np.ndarray, gen_feats: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to the two feature sets (MONAI ``FIDMetric``).

    Heusel et al. 2017. Lower is better. Biased upwards for small sets (it depends on N), so with
    fewer images than feature dimensions (64) read it only next to KID.
    """
    real = torch.as_tensor(np.asarray(real_feats, dtype=np.float64))
    gen = torch.as_tensor(np.asarray(gen_feats, dtype=np.float64))
    return float(FIDMetric()(gen, real))


def _kth_neighbour_radii(points: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each point to its ``k``-th nearest neighbour in the same set (itself excluded)."""
    distances = torch.cdist(points, points)
    return distances.sort(dim=1).values[:, k]  # column 0 is the point itself


def precision_recall(real_feats: np.ndarray, gen_feats: np.ndarray, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al., NeurIPS 2019, arXiv:1904.06991).

    Each set's manifold is the union of balls around its points, of radius the distance to the
    point's ``k``-th nearest neighbour in its own set. Precision: the share of generated points inside
    the real manifold (fidelity); recall: the share of real points inside the generated manifold
    (coverage). Both in [0, 1], higher is better.

    Returns:
        ``(precision, recall)``.
    """
    real = torch.as_tensor(np.asarray(real_feats, dtype=np.float64))
    gen = torch.as_tensor(np.asarray(gen_feats, dtype=np.float64))
    if len(real) <= k or len(gen) <= k:
        raise ValueError(f"precision/recall with k={k} needs more than {k} images per set")
    real_radii, gen_radii = _kth_neighbour_radii(real, k), _kth_neighbour_radii(gen, k)
    cross = torch.cdist(gen, real)  # (N_gen, M_real)
    precision = (cross <= real_radii[None, :]).any(dim=1).double().mean()
    recall = (cross <= gen_radii[:, None]).any(dim=0).double().mean()
    return float(precision), float(recall)


# ---------------------------------------------------------------------------------------------
# Diversity
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PairwiseMsSsim:
    """Mean MS-SSIM over random pairs of distinct images of one set (higher = less diverse)."""

    mean: float
    sd: float
    se: float
    pairs: int


def ms_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """MS-SSIM of image pairs ``(P, H, W)`` in [0, 1] (MONAI ``MultiScaleSSIMMetric``, 5 scales,
    Gaussian window :data:`MS_SSIM_KERNEL_SIZE` px, sigma :data:`MS_SSIM_KERNEL_SIGMA`); ``(P,)``."""
    metric = MultiScaleSSIMMetric(spatial_dims=2, data_range=1.0, kernel_size=MS_SSIM_KERNEL_SIZE,
                                  kernel_sigma=MS_SSIM_KERNEL_SIGMA)
    x = torch.as_tensor(np.asarray(a, dtype=np.float32))[:, None]
    y = torch.as_tensor(np.asarray(b, dtype=np.float32))[:, None]
    return metric(x, y).reshape(-1).numpy().astype(np.float64)


def mean_pairwise_ms_ssim(images: np.ndarray, *, pairs: int = 200, seed: int = 0) -> PairwiseMsSsim:
    """Mean MS-SSIM over ``pairs`` random pairs of distinct images (all pairs when there are fewer).

    The diversity measure of the MONAI GenerativeModels realism/diversity tutorial: lower = more diverse.
    It is confounded by image quality: noise lowers it (noisy samples look "diverse") and blur raises it,
    and a real set with simulated augmentation is more diverse than plain real slices; read it with KID.
    """
    images = np.asarray(images, dtype=np.float32)
    n = len(images)
    if n < 2:
        raise ValueError("pairwise MS-SSIM needs at least 2 images")
    all_pairs = np.array([(i, j) for i in range(n) for j in range(i + 1, n)])
    if len(all_pairs) > pairs:
        all_pairs = all_pairs[np.random.default_rng(seed).choice(len(all_pairs), pairs, replace=False)]
    values = ms_ssim(images[all_pairs[:, 0]], images[all_pairs[:, 1]])
    sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    return PairwiseMsSsim(float(values.mean()), sd, sd / math.sqrt(len(values)), len(values))


def mode_collapse_warning(generated: PairwiseMsSsim, real: PairwiseMsSsim) -> bool:
    """True when generated pairs are much more alike than real pairs.

    Rule: ``generated.mean - real.mean > COLLAPSE_REAL_SDS * real.sd`` (the typical generated pair is
    as alike as the most alike ~16 % of real pairs) **and** the difference exceeds
    ``COLLAPSE_MIN_Z`` combined standard errors (so a handful of pairs cannot raise it by chance).
    """
    difference = generated.mean - real.mean
    se = math.hypot(generated.se, real.se)
    return bool(difference > COLLAPSE_REAL_SDS * real.sd and difference > COLLAPSE_MIN_Z * se)


# ---------------------------------------------------------------------------------------------
# Memorisation
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Nearest:
    """For each query image, its most similar training image and the similarity."""

    index: np.ndarray  # (N,) int, into the training set
    similarity: np.ndarray  # (N,) float


def _standardise(images: np.ndarray) -> torch.Tensor:
    """Flattened images, zero mean and unit norm each (so a dot product is Pearson's r)."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32)).reshape(len(images), -1)
    x = x - x.mean(dim=1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def ncc_matrix(queries: np.ndarray, training: np.ndarray, *, max_shift: int = COPY_MAX_SHIFT_PX) -> np.ndarray:
    """Normalised cross-correlation (Pearson's r over pixels) of every query with every training image,
    maximised over circular shifts of the query by up to ``max_shift`` pixels in each direction.

    Args:
        queries: ``(N, H, W)``; training: ``(M, H, W)``, the same grid (the model grid).
        max_shift: 0 for plain NCC.

    Returns:
        ``(N, M)`` float64 in [-1, 1].
    """
    queries = np.asarray(queries, dtype=np.float32)
    train = _standardise(training)
    # A circular shift keeps each query's mean and norm, so standardise once and roll the result.
    base = _standardise(queries).reshape(queries.shape)
    best = torch.full((len(queries), len(train)), -1.0)
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            shifted = torch.roll(base, shifts=(dy, dx), dims=(1, 2)).reshape(len(queries), -1)
            best = torch.maximum(best, shifted @ train.T)
    return best.double().numpy()


def cosine_matrix(query_feats: np.ndarray, training_feats: np.ndarray) -> np.ndarray:
    """Cosine similarity ``(N, M)`` of feature vectors."""
    q = torch.nn.functional.normalize(torch.as_tensor(np.asarray(query_feats, dtype=np.float64)), dim=1)
    t = torch.nn.functional.normalize(torch.as_tensor(np.asarray(training_feats, dtype=np.float64)), dim=1)
    return (q @ t.T).numpy()


def nearest_training(similarity: np.ndarray, excluded: np.ndarray | None = None) -> Nearest:
    """The most similar training image per row of a similarity matrix ``(N, M)``; ``excluded``
    ``(N, M)`` bool marks pairs that may not count (same volume, neighbouring slices)."""
    similarity = np.array(similarity, dtype=np.float64, copy=True)
    if excluded is not None:
        similarity[excluded] = -np.inf
    index = similarity.argmax(axis=1)
    return Nearest(index.astype(np.int64), similarity[np.arange(len(similarity)), index])


def same_volume_pairs(heldout_volume_ids: np.ndarray, training_volume_ids: np.ndarray, *,
                      heldout_slices: np.ndarray | None = None, training_slices: np.ndarray | None = None,
                      neighbour_slices: int | None = None) -> np.ndarray:
    """``(N, M)`` bool: held-out image ``i`` and training image ``j`` come from the same volume and,
    when slice indices and ``neighbour_slices`` are given, lie within ``neighbour_slices`` slices of
    each other. Without them every slice of the same volume counts: the threshold is then a different
    person's, and with two reference volumes it lies below what a new slice of a training subject reaches.
    The report card (``workflows/report.py``, ``NEIGHBOUR_RULE``) passes the reference split's gap
    (:func:`core.reference.split_gap`): held-out slices as far from the training set as a new slice of
    the same subjects can be."""
    same = np.asarray(heldout_volume_ids)[:, None] == np.asarray(training_volume_ids)[None, :]
    if neighbour_slices is not None and heldout_slices is not None and training_slices is not None:
        gap = np.abs(np.asarray(heldout_slices)[:, None].astype(int) - np.asarray(training_slices)[None, :].astype(int))
        same &= gap <= neighbour_slices
    return same


def copy_threshold(heldout_similarity: np.ndarray, excluded: np.ndarray, *, quantile: float = 1.0) -> float:
    """The copy threshold: how similar a real image that is *not* a copy can be to the training set.

    For each real held-out image, its nearest training image is found among the training images of
    *other* volumes (``excluded`` masks the same volume / neighbouring slices, which are
    near-duplicates and would make every copy look ordinary); the threshold is the ``quantile`` of
    those nearest similarities. Default 1.0 (the maximum): with ~100 calibration images a 0.99 or
    0.95 quantile would, by construction, flag 1-5 % of real independent images as copies, and a
    false accusation of memorisation costs more than a missed near-copy; the maximum flags none.

    Args:
        heldout_similarity: ``(N_heldout, M_train)`` similarities (:func:`ncc_matrix` or
            :func:`cosine_matrix`).
        excluded: ``(N_heldout, M_train)`` bool (:func:`same_volume_pairs`).
        quantile: in (0, 1].

    Returns:
        The threshold; an image is a likely copy when its nearest similarity is above it.
    """
    nearest = nearest_training(heldout_similarity, excluded).similarity
    if not np.isfinite(nearest).all():
        raise ValueError("a held-out image has no training image of another volume to compare with")
    return float(np.quantile(nearest, quantile))


@dataclass(frozen=True)
class CopyCheck:
    """Memorisation check of generated images against the training set.

    ``pixel`` (shift-tolerant NCC) decides; ``feature`` (cosine of :func:`image_features`) is
    reported beside it. A generated image is a likely copy when its pixel NCC to its nearest
    training image exceeds ``pixel_threshold``.
    """

    pixel: Nearest
    feature: Nearest
    pixel_threshold: float
    feature_threshold: float
    flagged: np.ndarray  # (N,) bool

    @property
    def margin(self) -> np.ndarray:
        """Pixel similarity minus the threshold, per generated image (> 0: flagged)."""
        return self.pixel.similarity - self.pixel_threshold


def likely_copies(gen_images: np.ndarray, gen_feats: np.ndarray, train_images: np.ndarray, train_feats: np.ndarray,
                  *, pixel_threshold: float, feature_threshold: float = float("nan"),
                  max_shift: int = COPY_MAX_SHIFT_PX) -> CopyCheck:
    """Nearest training image of each generated image (pixels and features), flagged above the threshold.

    Pixels decide because a copy is a pixel-level near-duplicate; the 64 global-average features of
    different brains at the same level are alike, so their cosine is not specific enough to accuse.
    """
    pixel = nearest_training(ncc_matrix(gen_images, train_images, max_shift=max_shift))
    feature = nearest_training(cosine_matrix(gen_feats, train_feats))
    return CopyCheck(pixel, feature, float(pixel_threshold), float(feature_threshold),
                     pixel.similarity > pixel_threshold)


@dataclass(frozen=True)
class CopyCalibration:
    """Copy thresholds calibrated on real held-out images (:func:`copy_threshold`), and the
    held-out images' own nearest similarities (for the histogram beside the threshold)."""

    pixel_threshold: float
    feature_threshold: float
    heldout_pixel: Nearest
    heldout_feature: Nearest


def calibrate_copies(heldout_images: np.ndarray, heldout_feats: np.ndarray, heldout_volume_ids: np.ndarray,
                     train_images: np.ndarray, train_feats: np.ndarray, training_volume_ids: np.ndarray, *,
                     heldout_slices: np.ndarray | None = None, training_slices: np.ndarray | None = None,
                     neighbour_slices: int | None = None, quantile: float = 1.0,
                     max_shift: int = COPY_MAX_SHIFT_PX) -> CopyCalibration:
    """Both copy thresholds (pixel NCC and feature cosine) from real held-out images; see
    :func:`copy_threshold` and :func:`same_volume_pairs` for the exclusion."""
    excluded = same_volume_pairs(heldout_volume_ids, training_volume_ids, heldout_slices=heldout_slices,
                                 training_slices=training_slices, neighbour_slices=neighbour_slices)
    pixel = ncc_matrix(heldout_images, train_images, max_shift=max_shift)
    feature = cosine_matrix(heldout_feats, train_feats)
    return CopyCalibration(copy_threshold(pixel, excluded, quantile=quantile),
                           copy_threshold(feature, excluded, quantile=quantile),
                           nearest_training(pixel, excluded), nearest_training(feature, excluded))


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LikelyCopy:
    """One flagged generated image and its training twin."""

    generated_index: int  # into the full generated set
    training_index: int  # into the training set: the pixel-NCC twin
    pixel_ncc: float
    feature_cosine: float  # to its nearest training image in feature space (may be another image)


@dataclass(frozen=True)
class GroupReport:
    """The report card of one group of generated images against the real set."""

    group: str
    n: int
    kid: float
    kid_se: float
    fid: float
    precision: float
    recall: float
    ms_ssim: PairwiseMsSsim | None  # None for a group of one image
    mode_collapse: bool
    copies: list[LikelyCopy]

    @property
    def copy_share(self) -> float:
        return len(self.copies) / self.n if self.n else float("nan")


@dataclass(frozen=True)
class GeneratorReport:
    """Per-group report cards plus what they were measured against; ``copy_check`` holds every generated
    image's nearest training image (for the similarity histogram beside the threshold)."""

    groups: list[GroupReport]
    real_n: int
    real_ms_ssim: PairwiseMsSsim
    calibration: CopyCalibration
    copy_check: CopyCheck
    feature_layer: str  # in words: the encoder's layer (FeatureEncoder.layer)
    notes: list[str] = field(default_factory=lambda: [
        "FID/KID are on SAFEGEN's own network's features, not Inception/RadImageNet: not comparable with published "
        "values.",
    ])

    def group(self, name: str) -> GroupReport:
        return next(g for g in self.groups if g.group == name)


def build_report(gen_images: np.ndarray, groups: Sequence[str], real_images: np.ndarray, *,
                 train_images: np.ndarray, training_volume_ids: np.ndarray,
                 heldout_images: np.ndarray, heldout_volume_ids: np.ndarray,
                 training_slices: np.ndarray | None = None, heldout_slices: np.ndarray | None = None,
                 neighbour_slices: int | None = None, profile: Profile | str | None = None,
                 encoder: FeatureEncoder | None = None, k: int = 3, kid_subsets: int = 100,
                 kid_subset_size: int = 1000, ms_ssim_pairs: int = 200, seed: int = 0,
                 calibration: CopyCalibration | None = None) -> GeneratorReport:
    """The generator report card from arrays (no files read or written).

    Args:
        gen_images: ``(N, 128, 128)`` generated images in [0, 1] (:func:`prepare_image_files`).
        groups: ``N`` group labels (e.g. ``manifest.csv``'s ``group``); one label for an ungrouped set.
        real_images: ``(M, 128, 128)`` the real set fidelity, coverage and diversity are measured against.
        train_images, training_volume_ids: the generator's training images and their volume (subject) ids,
            searched for copies.
        heldout_images, heldout_volume_ids: real images the generator did not see, to calibrate the copy
            threshold (:func:`calibrate_copies`); ``training_slices`` / ``heldout_slices`` /
            ``neighbour_slices`` narrow the exclusion to neighbouring slices.
        profile, encoder: the feature network (:func:`image_features`); None: the profile's, standardised on
            ``real_images``. Give ``calibration`` only with the encoder it was calibrated with.
        k, kid_subsets, kid_subset_size, ms_ssim_pairs, seed: metric settings.
        calibration: the copy thresholds already calibrated on these held-out and training images
            (:func:`calibrate_copies`, the slow part: reuse it for several generated sets); None: calibrate here.

    A group of ``k`` images or fewer gets NaN for KID, FID, precision and recall (the k-NN balls and
    the unbiased estimator need more); its copies and diversity are still reported.
    """
    groups = np.asarray(groups)
    if len(groups) != len(gen_images):
        raise ValueError(f"{len(groups)} group labels for {len(gen_images)} images")
    encoder = encoder or load_feature_encoder(profile).standardised_on(real_images)
    gen_feats = image_features(gen_images, encoder=encoder)
    real_feats = image_features(real_images, encoder=encoder)
    train_feats = real_feats if train_images is real_images else image_features(train_images, encoder=encoder)
    if calibration is None:
        heldout_feats = image_features(heldout_images, encoder=encoder)
        calibration = calibrate_copies(heldout_images, heldout_feats, heldout_volume_ids, train_images, train_feats,
                                       training_volume_ids, heldout_slices=heldout_slices,
                                       training_slices=training_slices, neighbour_slices=neighbour_slices)
    check = likely_copies(gen_images, gen_feats, train_images, train_feats,
                          pixel_threshold=calibration.pixel_threshold,
                          feature_threshold=calibration.feature_threshold)
    real_diversity = mean_pairwise_ms_ssim(real_images, pairs=ms_ssim_pairs, seed=seed)
    reports = []
    for name in dict.fromkeys(groups.tolist()):  # first-seen order
        members = np.flatnonzero(groups == name)
        if len(members) > k:
            kid_value, kid_se = kid(real_feats, gen_feats[members], subsets=kid_subsets,
                                    subset_size=kid_subset_size, seed=seed)
            precision, recall = precision_recall(real_feats, gen_feats[members], k=k)
            fid_value = fid(real_feats, gen_feats[members])
        else:
            kid_value = kid_se = precision = recall = fid_value = float("nan")
        diversity = mean_pairwise_ms_ssim(gen_images[members], pairs=ms_ssim_pairs, seed=seed) if len(members) > 1 else None
        copies = [LikelyCopy(int(i), int(check.pixel.index[i]), float(check.pixel.similarity[i]),
                             float(check.feature.similarity[i])) for i in members if check.flagged[i]]
        reports.append(GroupReport(
            group=str(name), n=len(members), kid=kid_value, kid_se=kid_se,
            fid=fid_value, precision=precision, recall=recall, ms_ssim=diversity,
            mode_collapse=diversity is not None and mode_collapse_warning(diversity, real_diversity),
            copies=copies,
        ))
    return GeneratorReport(reports, len(real_images), real_diversity, calibration, check, feature_layer=encoder.layer)
