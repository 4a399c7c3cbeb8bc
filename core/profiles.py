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
warning; ``python -m workflows.cli train-profile`` on a user's own folder of images is the way in.

**User profiles** (:mod:`workflows.user_profile`) are trained on a folder of a user's own real images.
Each lives in a folder of its own, ``profiles/<name>/`` by default: ``profile.json`` (this class,
written by :meth:`Profile.save`), its weights and calibrations, and its reference slices and
benchmarks under ``data/``. :func:`get_profile` finds one by name under ``profiles/`` or by the
folder's path, and :func:`all_profiles` lists the built-in and user profiles together.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from core.augment import AugmentParams
from core.domain import HEAD_PARTS, DomainSpec
from core.resources import PROJECT_ROOT, package_file
from core.types import Modality, Window

MODELS_DIR = PROJECT_ROOT / "models"
USER_PROFILES_DIR = PROJECT_ROOT / "profiles"  # user profiles, one folder each (git-ignored)
PROFILE_FILE = "profile.json"


@dataclass(frozen=True)
class ReferenceSubject:
    """One real volume of normal anatomy available offline."""

    name: str
    path: Path | None
    description: str
    provenance: str
    person: str = ""  # who was scanned, when two subjects are one person (Colin27 with and without skull); "": name

    @property
    def who(self) -> str:
        """The person this volume shows (:attr:`person`, else :attr:`name`): the unit of a leave-one-out."""
        return self.person or self.name


# The order is part of the split recipe: changing it changes which slices land where.
KNOWN_SUBJECTS: tuple[ReferenceSubject, ...] = (
    ReferenceSubject(
        name="mni152",
        path=package_file("nilearn.datasets", "data", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"),
        description="ICBM 2009a MNI152 T1 template, skull-stripped, 1 mm (average of 152 adults)",
        provenance="pip: nilearn (ships the file inside the wheel)",
    ),
    ReferenceSubject(
        name="colin27",
        path=Path("/usr/share/mricron/templates/ch2bet.nii.gz"),
        description="Colin27 T1 (27 averaged scans of one adult), skull-stripped, 1 mm",
        provenance="apt: mricron-data",
    ),
)


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
        home: a user profile's folder (its models, calibrations and ``data/``); None for the built-in
            profiles, whose models are in ``models/`` and data in ``data/``.
    """

    name: str
    title: str
    modality: Modality
    subjects: tuple[ReferenceSubject, ...]
    window: Window | None
    augment: AugmentParams
    data_suffix: str
    about: str
    home: Path | None = None
    domain: DomainSpec | None = None

    @property
    def domain_spec(self) -> DomainSpec:
        """What its models were made for (:mod:`core.domain`); a user profile: its modality only."""
        return self.domain or DomainSpec(self.modality, (), (0.0, float("inf")), self.title)

    def domain_file(self, models_dir: Path | None = None) -> Path:
        """``models/domain_<name>.npz``: the appearance check (``python -m workflows.cli calibrate-domain``)."""
        return self.models_dir(models_dir) / f"domain_{self.name}.npz"

    def models_dir(self, models_dir: Path | None = None) -> Path:
        """Where its files are: ``models_dir`` when given, else its home (user profile) or ``models/``."""
        return Path(models_dir) if models_dir is not None else (self.home or MODELS_DIR)

    def model_file(self, kind: str, models_dir: Path | None = None) -> Path:
        """``models/<kind>_<name>.pt`` (kind: diffusion, autoencoder, vae, generator)."""
        return self.models_dir(models_dir) / f"{kind}_{self.name}.pt"

    def calibration_file(self, models_dir: Path | None = None) -> Path:
        return self.models_dir(models_dir) / f"calibration_{self.name}.json"

    def explainer_file(self, models_dir: Path | None = None) -> Path:
        return self.models_dir(models_dir) / f"explainers_{self.name}.json"

    def _data(self, kind: str) -> Path:
        if self.home is not None:
            return self.home / "data" / kind
        return Path("out" if kind == "evaluation" else "data") / f"{kind}{self.data_suffix}"

    @property
    def reference_dir(self) -> Path:
        return self._data("reference")

    @property
    def validation_dir(self) -> Path:
        return self._data("benchmark_val")

    @property
    def benchmark_dir(self) -> Path:
        return self._data("benchmark")

    @property
    def evaluation_dir(self) -> Path:
        return self._data("evaluation")

    def available_subjects(self) -> list[ReferenceSubject]:
        return [s for s in self.subjects if s.path is not None and s.path.exists()]  # a file, or a slices folder

    def is_trained(self, models_dir: Path | None = None) -> bool:
        """Its detectors and calibration are on disk."""
        files = (self.model_file("diffusion", models_dir), self.model_file("autoencoder", models_dir),
                 self.calibration_file(models_dir))
        return all(f.is_file() for f in files)

    def save(self) -> Path:
        """Write a user profile's ``profile.json`` in its home; returns the file."""
        if self.home is None:
            raise ValueError(f"{self.name} is a built-in profile; only user profiles are saved")
        self.home.mkdir(parents=True, exist_ok=True)
        fields = asdict(self)
        fields.pop("home")
        fields["modality"] = self.modality.value
        fields["window"] = None if self.window is None else asdict(self.window)
        fields["subjects"] = [{**asdict(s), "path": str(s.path)} for s in self.subjects]
        path = self.home / PROFILE_FILE
        path.write_text(json.dumps(fields, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, home: Path) -> "Profile":
        """The user profile saved in folder ``home`` (:meth:`save`)."""
        home = Path(home)
        path = home / PROFILE_FILE
        try:
            raw = json.loads(path.read_text())
            return cls(
                name=raw["name"], title=raw["title"], modality=Modality(raw["modality"]),
                subjects=tuple(ReferenceSubject(**{**s, "path": Path(s["path"])}) for s in raw["subjects"]),
                window=None if raw["window"] is None else Window(**raw["window"]),
                augment=AugmentParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw["augment"].items()}),
                data_suffix="", about=raw["about"], home=home,
            )
        except FileNotFoundError:
            raise ValueError(f"{home} is not a profile folder: it has no {PROFILE_FILE}") from None
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path} is not a valid profile: {error}") from None


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
    domain=DomainSpec(Modality.MR, HEAD_PARTS, (120.0, 320.0), "brain MRI T1"),
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
    domain=DomainSpec(Modality.CT, HEAD_PARTS, (120.0, 400.0), "head CT"),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (MRI_T1, CT_HEAD)}
DEFAULT_PROFILE = MRI_T1
# The default (brain MRI T1) profile's files, which the baselines build on; other profiles' are
# ``Profile.model_file`` / ``Profile.calibration_file``.
DIFFUSION_WEIGHTS = DEFAULT_PROFILE.model_file("diffusion")
AUTOENCODER_WEIGHTS = DEFAULT_PROFILE.model_file("autoencoder")
CALIBRATION_FILE = DEFAULT_PROFILE.calibration_file()


def user_profiles(root: Path | None = None) -> dict[str, Profile]:
    """The user profiles saved under ``root`` (default ``profiles/``, one folder each), by name;
    unreadable ones are skipped."""
    found = {}
    for home in sorted(Path(root or USER_PROFILES_DIR).glob(f"*/{PROFILE_FILE}")):
        try:
            profile = Profile.load(home.parent)
        except ValueError:
            continue
        if profile.name not in PROFILES:
            found[profile.name] = profile
    return found


def all_profiles(root: Path | None = None) -> dict[str, Profile]:
    """The built-in profiles, then the user profiles under ``root``."""
    return {**PROFILES, **user_profiles(root)}


def get_profile(name: str | Path | Profile) -> Profile:
    """The profile called ``name``: a built-in one, a user profile under ``profiles/``, or the user
    profile in the folder ``name`` (a :class:`Profile` is returned as it is)."""
    if isinstance(name, Profile):
        return name
    if str(name) in PROFILES:
        return PROFILES[str(name)]
    for home in (USER_PROFILES_DIR / str(name), Path(name)):
        if (home / PROFILE_FILE).is_file():
            return Profile.load(home)
    found = user_profiles().get(str(name))  # a profile saved under profiles/ in a folder of another name
    if found is not None:
        return found
    raise ValueError(f"unknown profile {str(name)!r}; choose from {', '.join(all_profiles())} "
                     "or give a profile folder (python -m workflows.cli train-profile makes one)")


def profile_for(modality: Modality) -> Profile | None:
    """The built-in profile made for scans of ``modality`` (None: none fits, e.g. radiographs).
    User profiles are never picked automatically: they are chosen by name."""
    return next((p for p in PROFILES.values() if p.modality is Modality(modality)), None)


def auto_profile(modality: Modality, models_dir: Path | None = None) -> Profile:
    """The profile that scores a scan of ``modality`` under ``auto``: the one made for it when its
    models are trained, else the default (brain MRI T1; the scan then carries an out-of-domain warning)."""
    match = profile_for(modality)
    return match if match is not None and match.is_trained(models_dir) else DEFAULT_PROFILE
