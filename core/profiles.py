"""Modality profiles: which real anatomy a set of detectors learned, and how its images are prepared.

A profile bundles everything that must agree between training and scoring:

* the **reference subjects** (real volumes that install offline) and the **intensity
  normalisation** (MR: robust percentiles inside the head; CT: a fixed HU window);
* the **augmentation** that stands in for normal variation (few real subjects exist offline);
* the **files**: reference slices and benchmarks under ``data/``, trained weights, calibration
  (alpha, scales, default tau) and explainer calibration under ``models/``, all named after it.

``mri_t1`` keeps the file names the project always had (``data/reference``, ``models/*_mri_t1.*``).
A scan is matched to a profile by its modality (:func:`profile_for`: the DICOM Modality tag, or a
NIfTI's intensity range: values below -500 are HU, so CT); ``--profile`` and the dashboard override it.

There is no X-ray profile: one real chest radiograph installs offline (pydicom-data), not enough to
learn what normal radiographs look like. Radiographs are scored with the brain MRI profile and a
warning; ``python -m core.cli build-reference --profile ...`` on a user's own folder is the way in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.reference import KNOWN_SUBJECTS, AugmentParams, ReferenceSubject
from core.resources import PROJECT_ROOT
from core.types import Modality, Window

MODELS_DIR = PROJECT_ROOT / "models"


@dataclass(frozen=True)
class Profile:
    """One modality / body-part profile.

    Attributes:
        name: short id used in file names and on the command line (``mri_t1``, ``ct_head``).
        title: what the dashboard shows.
        modality: the scans it is for.
        subjects: the real reference volumes, in split-recipe order.
        window: CT: the HU window mapped to [0, 1]; None: robust percentiles (MR).
        augment: the augmentation ranges of its reference set.
        data_suffix: ``""`` for ``data/reference`` etc., else ``_<name>``.
        about: one line for the UI and the model card: what the detectors saw.
    """

    name: str
    title: str
    modality: Modality
    subjects: tuple[ReferenceSubject, ...]
    window: Window | None
    augment: AugmentParams
    data_suffix: str
    about: str

    def model_file(self, kind: str, models_dir: Path = MODELS_DIR) -> Path:
        """``models/<kind>_<name>.pt`` (kind: diffusion, autoencoder, vae)."""
        return Path(models_dir) / f"{kind}_{self.name}.pt"

    def calibration_file(self, models_dir: Path = MODELS_DIR) -> Path:
        return Path(models_dir) / f"calibration_{self.name}.json"

    def explainer_file(self, models_dir: Path = MODELS_DIR) -> Path:
        return Path(models_dir) / f"explainers_{self.name}.json"

    @property
    def reference_dir(self) -> Path:
        return Path(f"data/reference{self.data_suffix}")

    @property
    def validation_dir(self) -> Path:
        return Path(f"data/benchmark_val{self.data_suffix}")

    @property
    def benchmark_dir(self) -> Path:
        return Path(f"data/benchmark{self.data_suffix}")

    @property
    def evaluation_dir(self) -> Path:
        return Path(f"out/evaluation{self.data_suffix}")

    def available_subjects(self) -> list[ReferenceSubject]:
        return [s for s in self.subjects if s.path is not None and s.path.is_file()]

    def is_trained(self, models_dir: Path = MODELS_DIR) -> bool:
        """Its detectors and calibration are on disk."""
        files = (self.model_file("diffusion", models_dir), self.model_file("autoencoder", models_dir),
                 self.calibration_file(models_dir))
        return all(f.is_file() for f in files)


MRI_T1 = Profile(
    name="mri_t1",
    title="Brain MRI T1",
    modality=Modality.MR,
    subjects=KNOWN_SUBJECTS,
    window=None,
    augment=AugmentParams(),
    data_suffix="",
    about="brain MRI T1 slices of two real subjects (MNI152 and Colin27, both averages), skull-stripped, "
          "with augmentation standing in for normal variation",
)

# Head CT: one real scan. Brain window (level 40, width 80 HU), the window head CT is read in:
# grey/white matter and blood are resolved, bone and air saturate to 1 and 0. Artifacts confined to
# bone or air therefore cannot be seen by this profile.
CT_HEAD = Profile(
    name="ct_head",
    title="Head CT (brain window)",
    modality=Modality.CT,
    subjects=(
        ReferenceSubject(
            name="invesalius_cranium",
            path=Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3"),
            description="'ProMED CT 0051': one adult head CT, 256 x 256 x 108 at 0.96 x 0.96 x 1.5 mm, in HU",
            provenance="apt: invesalius-examples (InVesalius 3 sample project, GPL-2)",
        ),
    ),
    window=Window(40.0, 80.0, "Brain"),
    # CT has no bias field and no Rician noise; its intensities are calibrated (HU), so gamma stays
    # near 1. Geometry varies as for MRI; quantum noise is Gaussian, a few HU (0.0-0.03 of 80 HU).
    augment=AugmentParams(gamma=(0.9, 1.1), bias_amplitude=0.0, noise_sigma=(0.0, 0.03), noise="gaussian"),
    data_suffix="_ct_head",
    about="head CT slices of ONE real subject (the InVesalius sample scan) in the brain window, with "
          "augmentation standing in for normal variation: a first CT profile, not a validated detector",
)

PROFILES: dict[str, Profile] = {p.name: p for p in (MRI_T1, CT_HEAD)}
DEFAULT_PROFILE = MRI_T1


def get_profile(name: str | Profile) -> Profile:
    """The profile called ``name`` (a :class:`Profile` is returned as it is)."""
    if isinstance(name, Profile):
        return name
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r}; choose from {', '.join(PROFILES)}") from None


def profile_for(modality: Modality) -> Profile | None:
    """The profile made for scans of ``modality`` (None: no profile fits, e.g. radiographs)."""
    return next((p for p in PROFILES.values() if p.modality is Modality(modality)), None)


def auto_profile(modality: Modality, models_dir: Path = MODELS_DIR) -> Profile:
    """The profile that scores a scan of ``modality`` under ``auto``: the one made for it when its
    models are trained, else the default (brain MRI T1; the scan then carries an out-of-domain warning)."""
    match = profile_for(modality)
    return match if match is not None and match.is_trained(models_dir) else DEFAULT_PROFILE
