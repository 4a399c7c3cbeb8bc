"""Explanations of the segmentation head's slice score, on the head's probability scale.

The head's own probability map is the ``residual`` explainer: it already says where. The others
explain the slice score (:func:`core.detectors.head.slice_score`, rebuilt differentiably by
:class:`HeadScoreModel`) with the machinery of :mod:`core.explain` (captum ``Saliency``,
``LayerGradCam`` at :data:`GRADCAM_LAYER`, ``KernelShap`` over SLIC superpixels whose removed
regions take E_AE's reconstruction). Only the image channel is attributed: the reconstruction
channels are held fixed, as they are what "normal" looks like for this slice.

**One scale, one tau**: each explainer's raw map is quantile-matched onto the head's probability
map on clean calibration slices under normal variation (:func:`fit_head_explainer_calibration`,
``python -m workflows.cli calibrate-head --explainers``), as :mod:`core.explain` does for the
reconstruction score, so the result's tau and mask rule apply unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from core.detectors.head import HeadDetector, box_max
from core.explain import ExplainerCalibration, ExplainerName, ExplainerSettings, Explainer, QuantileMap
from core.head_scoring import HeadScorer

GRADCAM_LAYER = "head.model.1.submodule.2"  # the decoder block at half resolution (16 channels)
HEAD_EXPLAINERS = (ExplainerName.RESIDUAL, ExplainerName.SALIENCY, ExplainerName.GRADCAM, ExplainerName.SHAP)
TISSUE_LEVEL = 0.1


def head_explainer_file(profile, models_dir: Path | None = None) -> Path:
    return profile.models_dir(models_dir) / f"head_explainers_{profile.name}.json"


class HeadScoreModel(torch.nn.Module):
    """The head's slice score of the image channel ``(B, 1, H, W)`` -> ``(B,)``, the other channels fixed.

    ``context`` holds the reconstruction channels ``(B0, C - 1, H, W)`` of the slices being explained;
    a batch of ``k * B0`` images (captum's perturbations of one slice) reuses them ``k`` times.
    """

    def __init__(self, head: HeadDetector, window: int) -> None:
        super().__init__()
        self.head = head.model  # registered so captum finds its layers by name
        self.detector = head
        self.window = window
        self.context: torch.Tensor | None = None

    def channels(self, images: torch.Tensor) -> torch.Tensor:
        if self.context is None or self.context.shape[1] == 0:
            return images
        repeat = images.shape[0] // self.context.shape[0]
        return torch.cat([images, self.context.repeat(repeat, 1, 1, 1)], dim=1)

    def pixel_map(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.detector.logits(self.channels(images)))[:, 0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return box_max(self.pixel_map(images)[:, None], self.window)


class HeadExplainer(Explainer):
    """An :class:`~core.explain.Explainer` of the head: ``maps`` takes the head's input channels."""

    def __init__(self, head: HeadDetector, name: ExplainerName | str, calibration: ExplainerCalibration | None = None,
                 settings: ExplainerSettings | None = None, batch_size: int = 8, window: int | None = None) -> None:
        name = ExplainerName(name)
        if name not in HEAD_EXPLAINERS:
            raise ValueError(f"the {name.value} explainer is not available for the segmentation head; "
                             f"choose from {', '.join(n.value for n in HEAD_EXPLAINERS)}")
        model = HeadScoreModel(head, window or head.config.score_window)
        settings = settings or (calibration.settings if calibration else ExplainerSettings(gradcam_layer=GRADCAM_LAYER))
        super().__init__(model, name, calibration, settings, reconstruct=self._ae_background, batch_size=batch_size)
        self.background_channel = list(head.config.inputs).index("autoencoder") if "autoencoder" in \
            head.config.inputs else None

    def _ae_background(self, x: torch.Tensor) -> torch.Tensor:
        """SHAP's removed regions: E_AE's reconstruction of the slice (the image itself when the head has none)."""
        if self.background_channel is None:
            return x
        return self.model.context[:, self.background_channel - 1 : self.background_channel]

    def raw_maps_of(self, channels: np.ndarray, *, progress=None) -> np.ndarray:
        """Raw maps ``(N, H, W)`` of ``(N, C, H, W)`` head inputs (slices of one shape)."""
        step = 1 if self.name is ExplainerName.SHAP else self.batch_size
        out = []
        for start in range(0, len(channels), step):
            part = torch.from_numpy(np.ascontiguousarray(channels[start : start + step], dtype=np.float32))
            self.model.context = part[:, 1:]
            out.append(self.raw_maps(part[:, :1].numpy()))
            if progress is not None:
                progress(len(part))
        self.model.context = None
        return np.concatenate(out).astype(np.float32)

    def maps_of(self, channels: np.ndarray, *, progress=None) -> np.ndarray:
        """Maps on the head's probability scale (module docstring)."""
        raw = self.raw_maps_of(channels, progress=progress)
        if self.name is ExplainerName.RESIDUAL:
            return raw
        if self.calibration is None or self.name.value not in self.calibration.maps:
            raise ValueError(f"no calibration for the head's {self.name.value} explainer; run "
                             "`python -m workflows.cli calibrate-head --explainers`")
        return self.calibration.maps[self.name.value](raw)


def fit_head_explainer_calibration(head: HeadDetector, channels: list[np.ndarray], *, window: int,
                                   settings: ExplainerSettings | None = None, progress=None,
                                   metadata: dict | None = None) -> ExplainerCalibration:
    """Quantile-match saliency, Grad-CAM and SHAP onto the head's probability on clean slices' tissue."""
    import time

    settings = settings or ExplainerSettings(gradcam_layer=GRADCAM_LAYER)
    residual = HeadExplainer(head, ExplainerName.RESIDUAL, settings=settings, window=window)
    tissue = [one[0] > TISSUE_LEVEL for one in channels]
    target = np.concatenate([residual.raw_maps_of(one[None])[0][t] for one, t in zip(channels, tissue, strict=True)])
    maps, seconds = {}, {}
    for name in (ExplainerName.SALIENCY, ExplainerName.GRADCAM, ExplainerName.SHAP):
        explainer = HeadExplainer(head, name, settings=settings, window=window)
        raw_values = []
        start = time.perf_counter()
        for one, t in zip(channels, tissue, strict=True):
            raw_values.append(explainer.raw_maps_of(one[None])[0][t])
            if progress is not None:
                progress(1)
        seconds[name.value] = round((time.perf_counter() - start) / len(channels), 4)
        maps[name.value] = QuantileMap.fit(np.concatenate(raw_values), target)
    return ExplainerCalibration(maps, settings, {**(metadata or {}), "calib_slices": len(channels),
                                                 "seconds_per_slice": seconds})


def load_explainer(scorer, name: ExplainerName | str, **overrides) -> Explainer:
    """The explainer ``name`` of a SAFEGEN scorer with its committed calibration: the head's
    (:class:`HeadExplainer`, ``models/head_explainers_<profile>.json``) for a
    :class:`~core.head_scoring.HeadScorer`, else :meth:`core.explain.Explainer.load`. ``overrides``
    change settings such as ``shap_samples``."""
    from dataclasses import replace

    if not isinstance(scorer, HeadScorer):
        return Explainer.load(scorer, name, **overrides)
    name = ExplainerName(name)
    if name is ExplainerName.RESIDUAL:
        return HeadExplainer(scorer.head, name, window=scorer.window)
    path = head_explainer_file(scorer.profile)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; make it with `python -m workflows.cli calibrate-head --explainers`")
    calibration = ExplainerCalibration.load(path)
    return HeadExplainer(scorer.head, name, calibration, replace(calibration.settings, **overrides),
                         window=scorer.window)
