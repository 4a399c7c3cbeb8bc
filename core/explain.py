"""Where is a slice unsafe? Explanations of the SAFEGEN score, on one scale, thresholded at tau.

Every explainer answers the same question for a slice on the 128x128 model grid: which pixels
make its anomaly score high? The score is the :class:`~core.scoring.Scorer`'s slice score, the
mean of the top 1 % of the calibrated combined map ``alpha * z_diffusion + (1 - alpha) * z_AE``,
rebuilt here as a differentiable torch function (:class:`AnomalyScoreModel`), and it is captum's
forward function (``target=None``: one scalar per slice).

* ``residual``: the calibrated combined map itself (the detectors' reconstruction error). Free.
* ``saliency``: ``|d score / d x|`` (captum ``Saliency``), smoothed by ``saliency_sigma`` pixels
  because raw input gradients flicker from pixel to pixel.
* ``gradcam``: captum ``LayerGradCam`` at ``gradcam_layer``, an inner layer of the autoencoder
  (default ``decode.decode_1``, 32 channels at 32x32), ReLU-ed and upsampled bilinearly
  (``LayerAttribution.interpolate``). The next layer up (64x64) carries the row pattern of its
  stride-2 transposed convolution, which Grad-CAM copies into the map as stripes; on the
  validation benchmark the two layers localise alike (pixel AUROC 0.77 / 0.76). The layer lives
  in the autoencoder, so at ``alpha > 0`` it explains the autoencoder's share of the score only.
* ``shap``: captum ``KernelShap`` over SLIC superpixels of the tissue (scikit-image; the
  background is one more region) or a square grid. A region is "removed" by replacing it with the
  **autoencoder's reconstruction** of the slice: the model's own pseudo-normal version of that
  region, so removing a region asks "what if this region looked the way real anatomy does here?".
  (A blurred copy is the documented alternative, ``shap_background="blur"``; it leaves blurred
  artifacts half-present.) Every pixel gets its region's Shapley value divided by the region's
  area, so the map sums to ``score(x) - score(background)`` and the one large background region
  does not outrank small superpixels by its size alone. ``shap_samples`` coalitions per slice.
* ``latent_ig``: medXGAN-style latent-walk Integrated Gradients (Dravid et al., arXiv:2204.05376),
  with the small VAE of :mod:`core.detectors.vae` as the generator. The path runs through
  *generated* normal-looking images ``D(z0 + a (z - z0))`` from a baseline latent ``z0`` to the
  slice's latent ``z = mu(x)``, then straight from ``D(z)`` to ``x`` (captum
  ``IntegratedGradients``), and the score's gradients are integrated along it, so the map sums to
  ``score(x) - score(D(z0))``. Positive part, smoothed by ``latent_ig_sigma`` pixels; see
  :meth:`Explainer._latent_ig` for the choices and how they differ from the paper.

**One scale, one tau.** Raw maps of different explainers are in different units (z-scores,
gradients, Shapley values). Each non-residual explainer is brought onto the residual map's
calibrated scale by quantile matching on real images: on the clean ``calib`` slices (tissue
pixels only), its quantiles at :data:`ANCHOR_QUANTILES` are mapped linearly, piece by piece, onto
the residual map's quantiles at the same levels (linear beyond the end anchors, so the order of
pixels is kept). So at any tau, every explainer marks about the same share of clean tissue
pixels, and tau keeps the meaning it has for the score: robust standard deviations of the
combined map. :func:`fit_explainer_calibration` fits it; ``python -m workflows.cli
calibrate-explainers`` writes ``models/explainers_mri_t1.json``.

**Masks** at tau come from :func:`core.masks.unsafe_mask`, whatever the explainer.

**Where, not how much.** Saliency and Grad-CAM say where the score is sensitive, not how
anomalous a pixel is: the gradient of a top-1 % mean has about the same size on a clean slice as
on a corrupted one, and only grows where the top pixels cluster (the smoothing adds them up). So
their maps rarely pass tau on clean slices (as calibrated), but a strongly flagged slice whose
anomaly is spread out (a CT slice under brain-MRI models) can show no region above tau. The
residual map and SHAP (whose values sum to the score drop) carry the magnitude.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path

import numpy as np
import torch

from core.detectors.autoencoder import smooth
from core.detectors.vae import VAE
from core.profiles import DEFAULT_PROFILE
from core.scoring import FOREGROUND_LEVEL, Scorer

EXPLAINER_FILE = DEFAULT_PROFILE.explainer_file()  # the default (brain MRI T1) profile's
# Quantiles of clean tissue pixels at which explainer maps are matched to the residual map.
ANCHOR_QUANTILES = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999)


class ExplainerName(StrEnum):
    """The explainers, in order of cost."""

    RESIDUAL = "residual"
    SALIENCY = "saliency"
    GRADCAM = "gradcam"
    LATENT_IG = "latent_ig"
    SHAP = "shap"


# The default of ``score --explainer`` and the dashboard: the best Dice of the mask users see (tau
# mask on flagged slices), chosen on the validation benchmark (``evaluate --benchmark
# data/benchmark_val``: residual 0.014, saliency 0.012, Grad-CAM 0.001). Saliency's ungated masks
# score higher (0.050 vs 0.026) but its map is nearly magnitude-free (see the module docstring),
# so a strongly flagged slice can show no region above tau. The README's table has the test figures.
DEFAULT_EXPLAINER = ExplainerName.RESIDUAL


@dataclass(frozen=True)
class ExplainerSettings:
    """Knobs of the explainers; stored with the explainer calibration they were fitted with."""

    saliency_sigma: float = 1.0
    gradcam_layer: str = "autoencoder.decode.decode_1"  # a submodule of the score model
    shap_samples: int = 200
    shap_regions: str = "slic"  # "slic" superpixels or "grid" squares
    shap_segments: int = 80  # SLIC target number of tissue superpixels
    shap_grid: int = 8  # side of a grid square, pixels
    shap_background: str = "reconstruction"  # or "blur"
    shap_batch: int = 50  # coalitions per model call
    latent_ig_steps: int = 8  # midpoint-rule pieces of the latent walk D(z0) -> D(z)
    latent_ig_final_steps: int = 16  # midpoint-rule steps of the straight segment D(z) -> x (captum IG)
    latent_ig_baseline: str = "reencoded"  # z0 = mu(D(mu(x))), or "mean": the training slices' mean latent
    latent_ig_sigma: float = 1.0  # Gaussian smoothing (pixels) of the positive attributions
    seed: int = 0


class AnomalyScoreModel(torch.nn.Module):
    """The scorer's slice score as a differentiable function: ``(B, 1, H, W)`` -> ``(B,)``.

    Exactly the computation of :meth:`core.scoring.Scorer.score_volume` on grid slices (same
    detectors, robust scales, alpha and top-fraction mean), with gradients. A component whose
    weight is 0 is skipped, so at the committed alpha = 0 only the autoencoder runs.
    """

    def __init__(self, scorer: Scorer) -> None:
        super().__init__()
        self.scorer = scorer
        # Registered so captum's layer hooks can find the autoencoder's layers by name.
        self.autoencoder = scorer.autoencoder.model
        self.fraction = scorer.calibration.score_fraction

    def pixel_map(self, images: torch.Tensor) -> torch.Tensor:
        """Calibrated combined map ``(B, H, W)``."""
        alpha = self.scorer.alpha
        scales = self.scorer.calibration.scales
        total = torch.zeros(images.shape[0], *images.shape[2:], dtype=images.dtype)
        if alpha > 0:
            raw, _ = self.scorer.diffusion.reconstruction_residual(images)
            total = total + alpha * (raw[:, 0] - scales["diffusion"].median) / scales["diffusion"].scale
        if alpha < 1:
            raw, _ = self.scorer.autoencoder.residual_map(images)
            total = total + (1 - alpha) * (raw[:, 0] - scales["autoencoder"].median) / scales["autoencoder"].scale
        return total

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        flat = self.pixel_map(images).flatten(1)
        k = max(1, int(round(self.fraction * flat.shape[1])))
        return flat.topk(k, dim=1).values.mean(dim=1)


@dataclass(frozen=True)
class QuantileMap:
    """Monotone piecewise-linear map through ``(source[i], target[i])``, linear beyond both ends.

    Strictly increasing wherever the anchors are, so it keeps the order of pixels (pixel AUROC and
    AUPRO of a map do not change). Ties in ``source`` (a sparse map whose lower quantiles are all
    0) keep the highest target.
    """

    source: tuple[float, ...]
    target: tuple[float, ...]

    def __call__(self, values: np.ndarray) -> np.ndarray:
        src, tgt = np.asarray(self.source, float), np.asarray(self.target, float)
        keep = np.append(src[1:] > src[:-1], True)  # last of each run of ties
        src, tgt = src[keep], tgt[keep]
        values = np.asarray(values, dtype=np.float64)
        if len(src) == 1:
            return np.full(values.shape, tgt[0], dtype=np.float32)
        out = np.interp(values, src, tgt)
        above, below = values > src[-1], values < src[0]
        out[above] = tgt[-1] + (tgt[-1] - tgt[-2]) / (src[-1] - src[-2]) * (values[above] - src[-1])
        out[below] = tgt[0] + (tgt[1] - tgt[0]) / (src[1] - src[0]) * (values[below] - src[0])
        return out.astype(np.float32)

    @classmethod
    def fit(cls, source_values: np.ndarray, target_values: np.ndarray,
            quantiles: tuple[float, ...] = ANCHOR_QUANTILES) -> "QuantileMap":
        """Match the ``quantiles`` of ``source_values`` to those of ``target_values``."""
        s = np.quantile(np.asarray(source_values, float).ravel(), quantiles)
        t = np.quantile(np.asarray(target_values, float).ravel(), quantiles)
        return cls(tuple(np.maximum.accumulate(s).tolist()), tuple(np.maximum.accumulate(t).tolist()))


@dataclass(frozen=True)
class ExplainerCalibration:
    """One :class:`QuantileMap` per non-residual explainer, and the settings they were fitted with."""

    maps: dict[str, QuantileMap]
    settings: ExplainerSettings = ExplainerSettings()
    metadata: dict = field(default_factory=dict)

    def save(self, path: Path) -> None:
        payload = {
            "anchor_quantiles": list(ANCHOR_QUANTILES),
            "maps": {k: asdict(v) for k, v in self.maps.items()},
            "settings": asdict(self.settings),
            "metadata": self.metadata,
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(payload, indent=1))

    @classmethod
    def load(cls, path: Path) -> "ExplainerCalibration":
        raw = json.loads(Path(path).read_text())
        return cls(
            maps={k: QuantileMap(tuple(v["source"]), tuple(v["target"])) for k, v in raw["maps"].items()},
            settings=ExplainerSettings(**raw["settings"]),
            metadata=raw.get("metadata", {}),
        )


def _tissue(images: np.ndarray) -> np.ndarray:
    return images > FOREGROUND_LEVEL


def latent_walk(latent_model, x: torch.Tensor, steps: int, baseline: str = "reencoded") -> torch.Tensor:
    """Generated images ``(steps + 1, B, 1, H, W)`` along the latent line from ``z0`` to ``z = mu(x)``.

    Image ``k`` is ``D(z0 + k / steps * (z - z0))``: the first is the baseline image ``D(z0)``, the
    last the reconstruction ``D(z)``. ``baseline`` picks ``z0``: ``"reencoded"`` is ``mu(D(z))``
    (the encoding of the VAE's own reconstruction), ``"mean"`` the training slices' mean latent.

    Args:
        latent_model: a VAE with ``encode(x) -> (mu, logvar)``, ``decode(z)`` and ``latent_mean``.
        x: ``(B, 1, H, W)`` slices.
    """
    with torch.no_grad():
        z = latent_model.encode(x)[0]
        if baseline == "reencoded":
            z0 = latent_model.encode(latent_model.decode(z))[0]
        elif baseline == "mean":
            z0 = latent_model.latent_mean.to(z.dtype).expand_as(z)
        else:
            raise ValueError(f"latent_ig_baseline must be 'reencoded' or 'mean', got {baseline!r}")
        return torch.stack([latent_model.decode(z0 + a * (z - z0)) for a in torch.linspace(0.0, 1.0, steps + 1)])


def path_integrated_gradients(model: torch.nn.Module, path: torch.Tensor) -> torch.Tensor:
    """Integrated gradients of ``model`` (one scalar per slice) along a polyline of images.

    ``path``: ``(K + 1, B, 1, H, W)``, the points ``x_0 .. x_K``. Returns ``(B, 1, H, W)``:
    ``sum_k grad S((x_k + x_{k+1}) / 2) * (x_{k+1} - x_k)``, the midpoint rule on each straight
    piece. It sums to ``S(x_K) - S(x_0)`` up to the rule's error, and on a straight path with ``K``
    equal pieces it is captum's ``IntegratedGradients`` with ``method="riemann_middle"``.
    """
    total = torch.zeros_like(path[0])
    for start, end in zip(path[:-1], path[1:]):
        point = ((start + end) / 2).detach().requires_grad_()
        (grad,) = torch.autograd.grad(model(point).sum(), point)
        total += grad * (end - start)
    return total


def shap_regions(image: np.ndarray, settings: ExplainerSettings) -> np.ndarray:
    """Integer region labels ``(H, W)`` from 0: 0 is the background, then tissue superpixels or squares."""
    tissue = _tissue(image)
    if settings.shap_regions == "grid":
        h, w = image.shape
        g = settings.shap_grid
        squares = (np.arange(h)[:, None] // g) * ((w + g - 1) // g) + (np.arange(w)[None, :] // g) + 1
        labels = np.where(tissue, squares, 0)
    elif settings.shap_regions == "slic":
        from skimage.segmentation import slic

        if not tissue.any():
            return np.zeros(image.shape, dtype=np.int64)
        labels = slic(image.astype(np.float64), n_segments=settings.shap_segments, compactness=0.1,
                      channel_axis=None, mask=tissue, start_label=1)
    else:
        raise ValueError(f"shap_regions must be 'slic' or 'grid', got {settings.shap_regions!r}")
    _, consecutive = np.unique(labels, return_inverse=True)  # ids 0..n-1, as captum requires
    return consecutive.reshape(image.shape).astype(np.int64)


class Explainer:
    """One explainer of a score model, with its calibration onto the common scale (see the module doc).

    Args:
        model: the score as a torch module, ``(B, 1, H, W)`` -> ``(B,)``, with a ``pixel_map``
            method for the residual explainer (:class:`AnomalyScoreModel` for SAFEGEN; a toy
            model in the tests).
        name: which explainer.
        calibration: quantile maps onto the common scale (not needed for ``residual``).
        settings: knobs; default: the calibration's.
        reconstruct: ``(B, 1, H, W)`` -> pseudo-normal images, SHAP's background and the
            deletion test's in-painting.
        latent_model: the generator of ``latent_ig`` (a :class:`~core.detectors.vae.VAE`).
        batch_size: slices per model call for the gradient explainers.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        name: ExplainerName | str = DEFAULT_EXPLAINER,
        calibration: ExplainerCalibration | None = None,
        settings: ExplainerSettings | None = None,
        *,
        reconstruct=None,
        latent_model=None,
        batch_size: int = 16,
    ) -> None:
        self.model = model
        self.name = ExplainerName(name)
        self.calibration = calibration
        self.settings = settings or (calibration.settings if calibration else ExplainerSettings())
        self.reconstruct = reconstruct
        self.latent_model = latent_model
        self.batch_size = batch_size

    @classmethod
    def for_scorer(
        cls, scorer: Scorer, name: ExplainerName | str = DEFAULT_EXPLAINER,
        calibration: ExplainerCalibration | None = None, settings: ExplainerSettings | None = None,
        latent_model=None,
    ) -> "Explainer":
        """An explainer of ``scorer``'s slice score; removed regions become its autoencoder's reconstruction.

        ``latent_ig`` walks in ``latent_model``'s latent space (default: the profile's committed
        ``models/vae_<profile>.pt``; FileNotFoundError naming ``train vae`` if it is missing).
        """
        name = ExplainerName(name)
        if name is ExplainerName.LATENT_IG and latent_model is None:
            latent_model = VAE.load(scorer.profile.model_file("vae"))
        return cls(AnomalyScoreModel(scorer), name, calibration, settings, reconstruct=scorer.autoencoder.reconstruct,
                   latent_model=latent_model, batch_size=scorer.batch_size)

    @classmethod
    def load(cls, scorer: Scorer, name: ExplainerName | str = DEFAULT_EXPLAINER, path: Path | None = None,
             **overrides) -> "Explainer":
        """The explainer ``name`` of ``scorer`` with the committed calibration of its profile
        (``models/explainers_<profile>.json`` unless ``path`` is given; ``overrides`` change settings
        such as ``shap_samples``)."""
        name = ExplainerName(name)
        path = Path(path) if path is not None else scorer.profile.explainer_file()
        if name is ExplainerName.RESIDUAL:
            return cls.for_scorer(scorer, name)
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path} is missing; make it with `python -m workflows.cli calibrate-explainers`")
        calibration = ExplainerCalibration.load(path)
        latent_model = None
        if name is ExplainerName.LATENT_IG:  # the profile's VAE beside the calibration file

            latent_model = VAE.load(scorer.profile.model_file("vae", path.parent))
        return cls.for_scorer(scorer, name, calibration, replace(calibration.settings, **overrides), latent_model)

    # -- raw maps -------------------------------------------------------------------------------

    def raw_maps(self, grid: np.ndarray, *, residual: np.ndarray | None = None, progress=None) -> np.ndarray:
        """Raw explanation maps ``(N, H, W)`` of ``(N, 1, H, W)`` grid slices (units differ per explainer).

        ``residual``: the combined map when the caller has it already (the residual explainer returns it).
        """
        if self.name is ExplainerName.RESIDUAL and residual is not None:
            return residual
        method = {ExplainerName.RESIDUAL: self._residual, ExplainerName.SALIENCY: self._saliency,
                  ExplainerName.GRADCAM: self._gradcam, ExplainerName.SHAP: self._shap,
                  ExplainerName.LATENT_IG: self._latent_ig}[self.name]
        step = 1 if self.name is ExplainerName.SHAP else self.batch_size
        maps = []
        for start in range(0, len(grid), step):
            maps.append(method(_tensor(grid[start : start + step])))
            if progress is not None:
                progress(len(maps[-1]))
        return np.concatenate(maps).astype(np.float32) if maps else np.zeros((0, *grid.shape[2:]), np.float32)

    def _residual(self, x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return self.model.pixel_map(x).numpy()

    def _saliency(self, x: torch.Tensor) -> np.ndarray:
        from captum.attr import Saliency

        grads = Saliency(self.model).attribute(x.requires_grad_(), target=None, abs=True)
        return smooth(grads.detach(), self.settings.saliency_sigma)[:, 0].numpy()

    def _gradcam(self, x: torch.Tensor) -> np.ndarray:
        from captum.attr import LayerAttribution, LayerGradCam

        layer = self.model.get_submodule(self.settings.gradcam_layer)
        cam = LayerGradCam(self.model, layer).attribute(x.requires_grad_(), target=None, relu_attributions=True)
        return LayerAttribution.interpolate(cam.detach(), tuple(x.shape[-2:]), "bilinear")[:, 0].numpy()

    def background(self, x: torch.Tensor) -> torch.Tensor:
        """What a removed SHAP region is replaced with: the reconstruction, or a blur (sigma 4 px)."""
        if self.settings.shap_background == "reconstruction":
            if self.reconstruct is None:
                raise ValueError("shap_background='reconstruction' needs an explainer with a reconstruct function")
            with torch.no_grad():
                return self.reconstruct(x)
        if self.settings.shap_background == "blur":
            return smooth(x, 4.0)
        raise ValueError(f"shap_background must be 'reconstruction' or 'blur', got {self.settings.shap_background!r}")

    def _shap(self, x: torch.Tensor) -> np.ndarray:
        from captum.attr import KernelShap

        out = []
        for one in x.split(1):
            regions = torch.from_numpy(shap_regions(one[0, 0].numpy(), self.settings))[None, None]
            with torch.random.fork_rng(), torch.no_grad():
                torch.manual_seed(self.settings.seed)  # captum draws its coalitions from torch's RNG
                values = KernelShap(self.model).attribute(
                    one, baselines=self.background(one), target=None, feature_mask=regions,
                    n_samples=self.settings.shap_samples, perturbations_per_eval=self.settings.shap_batch,
                )
            # Spread each region's value evenly over its pixels: the map then sums to
            # score(x) - score(background), and the large background region does not outshine
            # small superpixels just by its size.
            area = torch.bincount(regions.flatten()).to(values.dtype)
            out.append((values / area[regions])[:, 0].numpy())
        return np.concatenate(out)

    def latent_ig_attributions(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Signed latent-walk integrated gradients ``(B, 1, H, W)`` of ``x`` and the baseline images ``D(z0)``.

        The attributions sum to ``score(x) - score(D(z0))`` up to the midpoint rule's error
        (see :meth:`_latent_ig`).
        """
        from captum.attr import IntegratedGradients

        if self.latent_model is None:
            raise ValueError("the latent_ig explainer needs a latent_model (a VAE: `python -m workflows.cli train vae`)")
        settings = self.settings
        walk = latent_walk(self.latent_model, x, settings.latent_ig_steps, settings.latent_ig_baseline)
        along_walk = path_integrated_gradients(self.model, walk)
        final = IntegratedGradients(self.model).attribute(
            x, baselines=walk[-1], target=None, n_steps=settings.latent_ig_final_steps, method="riemann_middle",
            internal_batch_size=len(x) * 8)
        return (along_walk + final).detach(), walk[0]

    def _latent_ig(self, x: torch.Tensor) -> np.ndarray:
        """medXGAN's latent-walk Integrated Gradients of the score, positive part, smoothed.

        Follows medXGAN (Dravid et al. 2022, arXiv:2204.05376): the gradients of the explained
        function are integrated along the path of generated images from a "normal" baseline latent
        to the query's latent, so the attributions follow how a generator of normal anatomy morphs
        one image into the other instead of a straight pixel line from a black image (plain IG).
        Differences from the paper, and why:

        * Generator: a small VAE of real normal slices, not a GAN with an anatomy/pathology split
          (no pathology to train on, no labels to split with); its encoder gives ``z = mu(x)``
          without medXGAN's per-image latent optimisation.
        * Baseline latent ``z0`` (``latent_ig_baseline``): medXGAN keeps the query's anatomy code and
          sets the pathology code to the normal one. Without that split, the default ``"reencoded"``
          takes ``z0 = mu(D(z))``, the encoding of the VAE's own reconstruction: it keeps the slice's
          anatomy, and whatever of the anomaly the encoder caught in ``z`` is what re-encoding the
          normal-looking ``D(z)`` drops. ``"mean"`` (the training slices' mean latent) is the
          classic "average normal" baseline, but the walk then morphs a different anatomy into this
          one and spreads attribution over every anatomical difference: on the validation
          benchmark's artifact images, pixel AUROC 0.79 and pointing game 0.07 against 0.84 and
          0.20 for ``"reencoded"``.
        * The end of the path: the VAE cannot reproduce ``x`` (nor its artifact), so a straight
          segment from ``D(z)`` to ``x`` (captum ``IntegratedGradients``, baseline ``D(z)``) closes
          the path at the real input; the attributions then sum to ``score(x) - score(D(z0))``.
        * The explained function is SAFEGEN's anomaly score, not a classifier's logit. Both parts
          use the midpoint rule: ``latent_ig_steps`` pieces along the walk, whose images change
          smoothly, and ``latent_ig_final_steps`` along the straight segment, where the blurry
          ``D(z)`` turns into the sharp slice and the top-1 % score changes its top pixels often.
          At 8 + 16 steps the map's sum misses ``score(x) - score(D(z0))`` by 3 % of its mean size
          on the validation artifact images (with 8 final steps, an earlier VAE missed it by 28 %
          and with 32 by 2 %, at the same pixel AUROC).
        * The map: the positive part (pixels whose change from the normal baseline raised the
          score), like Grad-CAM's ReLU; negative attributions (e.g. the sharp real edges where the
          blurry VAE image scored higher) are not unsafe regions, and an absolute value would mark
          them. On the validation benchmark the two localise alike (pixel AUROC 0.84 positive vs
          0.85 absolute, pointing game 0.20 vs 0.19), so the sign's meaning decides. Then a
          Gaussian blur of ``latent_ig_sigma`` pixels, as for saliency.
        """
        attributions, _ = self.latent_ig_attributions(x)
        return smooth(attributions.clamp(min=0), self.settings.latent_ig_sigma)[:, 0].numpy()

    # -- calibrated maps --------------------------------------------------------------------------

    def maps(self, grid: np.ndarray, *, residual: np.ndarray | None = None, progress=None) -> np.ndarray:
        """Explanation maps ``(N, H, W)`` on the residual map's calibrated scale (one tau for all)."""
        if self.name is ExplainerName.RESIDUAL:
            return self.raw_maps(grid, residual=residual, progress=progress).astype(np.float32)
        if self.calibration is None or self.name.value not in self.calibration.maps:
            raise ValueError(f"no calibration for the {self.name.value} explainer; "
                             "run `python -m workflows.cli calibrate-explainers`")
        return self.calibration.maps[self.name.value](self.raw_maps(grid, progress=progress))


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def fit_explainer_calibration(
    model: torch.nn.Module,
    calib_images: np.ndarray,
    *,
    names: tuple[ExplainerName, ...] | None = None,
    settings: ExplainerSettings = ExplainerSettings(),
    reconstruct=None,
    latent_model=None,
    progress=None,
    metadata: dict | None = None,
) -> ExplainerCalibration:
    """Quantile-match each explainer to the residual map on clean calibration slices ``(N, H, W)``.

    Args:
        model: the score model (``Explainer.for_scorer(scorer).model`` for SAFEGEN).
        calib_images: real normal slices the score was calibrated on (tissue pixels are used).
        names, settings: which explainers, with which knobs; default: saliency, Grad-CAM, SHAP,
            and ``latent_ig`` when a ``latent_model`` is given.
        reconstruct: SHAP's background (see :class:`Explainer`).
        latent_model: ``latent_ig``'s VAE (see :class:`Explainer`).
    """
    if names is None:
        names = (ExplainerName.SALIENCY, ExplainerName.GRADCAM, ExplainerName.SHAP) + (
            (ExplainerName.LATENT_IG,) if latent_model is not None else ())
    grid = calib_images[:, None]
    tissue = _tissue(calib_images)
    residual = Explainer(model, ExplainerName.RESIDUAL).raw_maps(grid)
    maps, seconds = {}, {}
    for name in names:
        start = time.perf_counter()
        raw = Explainer(model, name, settings=settings, reconstruct=reconstruct,
                        latent_model=latent_model).raw_maps(grid, progress=progress)
        seconds[name.value] = round((time.perf_counter() - start) / len(grid), 4)
        maps[name.value] = QuantileMap.fit(raw[tissue], residual[tissue])
    info = {**(metadata or {}), "calib_images": int(len(calib_images)), "seconds_per_slice": seconds}
    return ExplainerCalibration(maps, settings, info)
