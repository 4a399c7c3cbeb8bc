"""Is this scan what the profile's models were made for? The out-of-domain checks a reader sees.

A detector trained on brain MRI says nothing useful about a chest radiograph, a knee or a photo,
and a score from it must never read as "safe" or "unsafe" without saying so. Three checks, each
giving a sentence for the verdict, the batch table and ``scores.csv``'s ``warnings``:

1. **Metadata** (:func:`metadata_warnings`): the modality, and the body part the file names
   (DICOM ``BodyPartExamined``, else a body-part word in its study / series description), against
   the profile's :class:`DomainSpec`.
2. **Field of view** (:func:`field_of_view_warning`): the in-plane extent of a slice in mm. A head
   is 120-320 mm across; a 64-pixel crop at 0.3 mm or an 8000-pixel picture "at 1 mm" is not a head.
3. **Appearance** (:class:`AppearanceModel`): a learned check of "looks like the slices the
   detector was trained on", on the image itself, for files whose metadata say nothing (PNG, JPEG).
   Each slice as the detector sees it goes through the head's own encoder (:class:`HeadFeatures`:
   the mean and spread of each channel at its deepest level) and the Mahalanobis distance of those
   features to the training subjects' slices under normal variation (mean and a Ledoit-Wolf shrunk
   covariance; Lee et al. 2018, and PaDiM per patch) is compared with a high quantile of the
   training slices' own distances. A scan is out of domain when most of its slices are beyond it.
   Fitted by ``python -m workflows.cli calibrate-domain`` into ``models/domain_<profile>.npz``.
   (Hand-made global features, tissue fraction, histogram, edges, symmetry, were tried first: a
   photo of a man with a camera and a chest radiograph passed as brain MRI.)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.types import OUT_OF_DOMAIN, UNLIKE_TRAINING, Modality, Volume

OUT_OF_DOMAIN_FRACTION = 0.5  # a volume is out of domain when more than this share of its slices is

# DICOM body-part defined terms (PS3.16 CID 4031 and common StudyDescription words) that are not a head.
OTHER_BODY_PARTS = (
    "ABDOMEN", "ANKLE", "ARM", "BREAST", "CHEST", "CLAVICLE", "COCCYX", "CSPINE", "ELBOW", "EXTREMITY",
    "FOOT", "HAND", "HIP", "KIDNEY", "KNEE", "LEG", "LIVER", "LSPINE", "LUNG", "PANCREAS", "PELVIS",
    "PROSTATE", "SHOULDER", "SPINE", "THORAX", "TSPINE", "WRIST", "HEART", "CARDIAC", "COLON",
)


@dataclass(frozen=True)
class DomainSpec:
    """What a profile's models were made for.

    Attributes:
        modality: the scans' modality.
        body_parts: DICOM ``BodyPartExamined`` values that fit (upper case).
        fov_mm: the range of a slice's in-plane extent (its longer side) in mm.
        what: a few words for the messages ("brain MRI T1").
    """

    modality: Modality
    body_parts: tuple[str, ...]
    fov_mm: tuple[float, float]
    what: str


HEAD_PARTS = ("HEAD", "BRAIN", "SKULL", "CRANIUM", "NEURO", "HEADNECK")


def domain_warnings(volume: Volume, spec: DomainSpec) -> list[str]:
    """The metadata and field-of-view checks of ``volume`` against ``spec``, each warning starting with
    :data:`core.types.OUT_OF_DOMAIN` (the appearance check needs a model: :class:`AppearanceModel`)."""
    found = metadata_warnings(volume, spec, volume.body_part)
    if (fov := field_of_view_warning(volume, spec, spacing_assumed=not volume.spacing_known)) is not None:
        found.append(fov)
    return [OUT_OF_DOMAIN + w for w in found]


def metadata_warnings(volume: Volume, spec: DomainSpec, body_part: str = "") -> list[str]:
    """The modality and the body part the file names, against ``spec`` (nothing said when unknown)."""
    warnings = []
    if volume.modality is not Modality.OTHER and volume.modality is not spec.modality:
        warnings.append(f"the file's modality is {volume.modality.value}; the models were made for {spec.what}")
    part = body_part.strip().upper().replace(" ", "")
    if part and spec.body_parts and part not in spec.body_parts:
        warnings.append(f"the file says it shows {body_part.strip().lower()}; the models were made for {spec.what}")
    elif not part and volume.description:
        words = set(re.findall(r"[A-Z]+", volume.description.upper()))
        named = sorted(words & set(OTHER_BODY_PARTS))
        if named and spec.body_parts:
            warnings.append(f"the file's description names {', '.join(n.lower() for n in named)}; the models were "
                            f"made for {spec.what}")
    return warnings


def field_of_view_mm(volume: Volume) -> tuple[float, float]:
    """The in-plane extent of a display slice in mm (rows, columns)."""
    rows, cols = volume.array.shape[:2]
    return rows * float(volume.spacing[0]), cols * float(volume.spacing[1])


def field_of_view_warning(volume: Volume, spec: DomainSpec, *, spacing_assumed: bool = False) -> str | None:
    """A sentence when the slice's longer side is outside ``spec.fov_mm``; None when it fits."""
    extent = max(field_of_view_mm(volume))
    low, high = spec.fov_mm
    if low <= extent <= high:
        return None
    rows, cols = field_of_view_mm(volume)
    assumed = " (the file gives no pixel size: 1 mm pixels were assumed)" if spacing_assumed else ""
    side = "smaller" if extent < low else "larger"
    return (f"the image covers {rows:.0f} x {cols:.0f} mm{assumed}, {side} than the {low:.0f}-{high:.0f} mm "
            f"of {spec.what}")


class HeadFeatures:
    """What the detector's own encoder sees of a slice: the mean and standard deviation over the
    slice of each channel at the head's deepest level (a learned description of the image; 2 x 128
    numbers for the committed head). Read with a forward hook; the head is not changed."""

    def __init__(self, head) -> None:
        self.head = head
        module = head.model.model
        while True:  # MONAI UNet: nested SkipConnections; the innermost submodule is the bottleneck
            inner = [c.submodule for c in module.children() if type(c).__name__ == "SkipConnection"]
            if not inner:
                break
            module = inner[0]
        self._out: dict = {}
        module.register_forward_hook(lambda _m, _i, out: self._out.__setitem__("features", out))

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """The features of one normalised slice at about 1 mm (the head's image input)."""
        import torch  # here, not at the top: core.profiles imports this module, and pages without a model load no torch

        with torch.no_grad():
            return self._features(torch, image)

    def _features(self, torch, image: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
        self.head.logits(x)
        f = self._out["features"][0]
        return torch.cat([f.mean(dim=(1, 2)), f.std(dim=(1, 2))]).double().numpy()


@dataclass(frozen=True)
class AppearanceModel:
    """Mean and shrunk precision of in-domain slices' features (:class:`HeadFeatures`), and the
    distance beyond which a slice does not look like them."""

    mean: np.ndarray
    precision: np.ndarray
    threshold: float
    quantile: float
    n_slices: int
    what: str

    @classmethod
    def fit(cls, features: np.ndarray, *, quantile: float = 0.995, what: str = "") -> "AppearanceModel":
        """Fit on an ``(n, d)`` array of in-domain slices' features; the threshold is the ``quantile``
        of their own distances."""
        from sklearn.covariance import LedoitWolf

        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or len(features) < 2 * features.shape[1]:
            raise ValueError(f"need at least twice as many slices as features, got {features.shape}")
        estimate = LedoitWolf().fit(features)
        model = cls(estimate.location_, estimate.precision_, 0.0, quantile, len(features), what)
        threshold = float(np.quantile(model.distances(features), quantile))
        return cls(model.mean, model.precision, threshold, quantile, len(features), what)

    def distances(self, features: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each row of ``features``."""
        centred = np.atleast_2d(np.asarray(features, dtype=np.float64)) - self.mean
        return np.sqrt(np.maximum(0.0, np.einsum("ij,jk,ik->i", centred, self.precision, centred)))

    def warning(self, distances: np.ndarray) -> str | None:
        """A sentence when more than :data:`OUT_OF_DOMAIN_FRACTION` of a scan's slices (a single 2-D
        image: the one) are beyond the threshold; None otherwise."""
        far = np.asarray(distances) > self.threshold
        if not far.size or far.mean() <= OUT_OF_DOMAIN_FRACTION:
            return None
        what = f"the {self.what} slices the detector was trained on" if self.what else "the training slices"
        if far.size == 1:
            return f"{UNLIKE_TRAINING}the image does not look like {what}"
        return f"{UNLIKE_TRAINING}{int(far.sum())} of {far.size} slices do not look like {what}"

    def save(self, path: Path, **record) -> None:
        """``path`` (.npz) holds the arrays, ``path.json`` the threshold and how it was fitted."""
        path = Path(path)
        np.savez_compressed(path, mean=self.mean.astype(np.float32), precision=self.precision.astype(np.float32))
        path.with_suffix(".json").write_text(json.dumps({
            "threshold": self.threshold, "quantile": self.quantile, "n_slices": self.n_slices, "what": self.what,
            **record}, indent=1))

    @classmethod
    def load(cls, path: Path) -> "AppearanceModel":
        path = Path(path)
        arrays = np.load(path)
        record = json.loads(path.with_suffix(".json").read_text())
        return cls(arrays["mean"].astype(np.float64), arrays["precision"].astype(np.float64),
                   float(record["threshold"]), float(record["quantile"]), int(record["n_slices"]),
                   str(record.get("what", "")))
