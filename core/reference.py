"""Reference data of real, normal anatomy, built offline from packages that ship it.

SAFEGEN's detectors learn what *real* images look like. No public brain-MRI dataset can be
downloaded at run time here, so the reference set is built from the few real volumes that install
with Python and Debian packages (:data:`core.profiles.KNOWN_SUBJECTS`):

* ``mni152``: the ICBM 2009a MNI152 T1 template shipped inside the nilearn wheel (an average of
  152 adult brains, skull-stripped, 1 mm). Always available: nilearn is a pinned requirement.
* ``colin27``: Colin Holmes' brain (27 averaged T1 scans of one adult, skull-stripped ``ch2bet``),
  from Debian's ``mricron-data`` package, used when that package is installed (``make`` installs it
  where apt is available).

That is at most two subjects, both averages, so they are smoother than a single clinical scan.
Normal variation is therefore simulated with augmentation (:mod:`core.augment`: rotation, scale,
crop/translation, gamma, smooth bias field, Rician noise). The README and the dashboard say so.

Other modality profiles (:mod:`core.profiles`, e.g. head CT from the InVesalius sample scan) build
their reference sets with the same recipe, their own subjects, normalisation and augmentation.

Splits: each subject's usable axial slices are cut into contiguous blocks of ``block`` slices,
dealt round-robin to train / val / calib / test, and ``gap`` slices at every block border are
dropped, so no split holds a slice within ``gap`` mm of a slice of another split. Every image
records its subject and slice index, so leave-one-subject-out analyses remain possible.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from core.augment import AugmentParams, augment
from core.io import ACCEPTED_SUFFIXES, load_volume
from core.preprocess import GRID_SIZE, foreground_mask, normalise_for_models, normalize_intensity, to_model_grid
from core.profiles import DEFAULT_PROFILE, Profile, ReferenceSubject, get_profile
from core.resources import file_sha256
from core.types import Modality, Window

SPLITS = ("train", "val", "calib", "test")
REFERENCE_SPACING_MM = 1.0


@dataclass
class SubjectSlices:
    """The usable axial slices of one subject on the model grid."""

    subject: str
    images: np.ndarray  # (S, GRID_SIZE, GRID_SIZE) float32 in [0, 1]
    slice_index: np.ndarray  # (S,) axial index in the subject's RAS volume


def subject_slices(subject: ReferenceSubject, *, modality: Modality = Modality.MR, window: Window | None = None,
                   min_brain_fraction: float = 0.25) -> SubjectSlices:
    """Normalise a subject's volume and cut it into axial slices on the model grid.

    Slices whose brain area is below ``min_brain_fraction`` of the largest slice's are dropped:
    the top and bottom of the brain are mostly partial-volume edge and carry little anatomy.
    ``modality`` and ``window`` are the profile's (:mod:`core.profiles`): MR is normalised by
    percentiles inside the head, CT by the HU ``window``; the foreground is the modality's
    (:func:`core.preprocess.foreground_mask`: for CT the body above -500 HU).
    """
    if Path(subject.path).is_dir():
        return folder_slices(subject, modality=modality, window=window)
    volume = load_volume(subject.path, modality=modality)
    zoom = np.asarray(volume.spacing, dtype=float) / REFERENCE_SPACING_MM
    if not np.allclose(zoom, 1.0):
        # Model-grid pixels must mean the same millimetres for every subject.
        volume = replace(
            volume,
            array=ndimage.zoom(volume.array, zoom, order=1).astype(np.float32),
            spacing=(REFERENCE_SPACING_MM,) * 3,
            affine=volume.affine @ np.diag([*(1.0 / zoom), 1.0]),
        )
    brain = foreground_mask(volume.array, modality)
    normalised = normalize_intensity(volume.array, modality, foreground=brain, window=window)
    area = brain.sum(axis=(0, 1))
    keep = np.flatnonzero(area >= min_brain_fraction * area.max())
    volume_norm = volume.with_array(normalised)
    images = [to_model_grid(volume_norm.display_slice(int(k)), GRID_SIZE)[0] for k in keep]
    return SubjectSlices(subject.name, np.stack(images).astype(np.float32), keep.astype(np.int32))


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, in file-name order."""
    return sorted(p for p in Path(folder).iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(ACCEPTED_SUFFIXES))


def folder_slices(subject: ReferenceSubject, *, modality: Modality, window: Window | None) -> SubjectSlices:
    """A "slices" subject: every 2-D image file in the folder ``subject.path``, in file-name order.

    Each image is normalised exactly as it will be when it is scored
    (:func:`core.preprocess.normalise_for_models` of the file as loaded, so a PNG keeps its own scale)
    and put on the model grid. Blank images are dropped, and so are 3-D files (each volume is a
    subject of its own). ``modality`` and ``window`` are the profile's.
    """
    images, kept = [], []
    for index, path in enumerate(image_files(subject.path)):
        volume = load_volume(path)
        if volume.is_3d:
            continue
        normalised = normalise_for_models(volume, modality, window).array
        if not np.ptp(normalised) > 0:
            continue
        images.append(to_model_grid(normalised, GRID_SIZE)[0])
        kept.append(index)
    if not images:
        raise ValueError(f"{subject.path} holds no usable 2-D images")
    return SubjectSlices(subject.name, np.stack(images).astype(np.float32), np.asarray(kept, dtype=np.int32))


def _subject_sha256(path: Path) -> str:
    """SHA-256 of a volume file, or of a slices folder's files (names and bytes, in order)."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    digest = hashlib.sha256()
    for file in image_files(path):
        digest.update(file.name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def assign_splits(n_slices: int, *, block: int = 8, gap: int = 2) -> np.ndarray:
    """Split label per slice index ("" for dropped buffer slices).

    Blocks of ``block`` consecutive slices are dealt round-robin to :data:`SPLITS`; the first and
    last ``gap // 2`` (rounded up at the start) slices of each block are dropped so that
    neighbouring blocks of different splits are at least ``gap`` slices apart.
    """
    labels = np.full(n_slices, "", dtype=object)
    head, tail = (gap + 1) // 2, gap // 2
    for b, start in enumerate(range(0, n_slices, block)):
        stop = min(start + block, n_slices)
        labels[start + head : max(start + head, stop - tail)] = SPLITS[b % len(SPLITS)]
    return labels


def split_gap(reference_dir: Path) -> int:
    """The ``gap`` the reference in ``reference_dir`` was split with (its ``manifest.json``; the
    default of :func:`assign_splits` for a reference without one): a slice of one split lies more than
    ``gap`` slices from every slice of another split of the same subject."""
    path = Path(reference_dir) / "manifest.json"
    if not path.is_file():
        return 2
    return int(json.loads(path.read_text()).get("gap", 2))


@dataclass
class ReferenceManifest:
    seed: int
    augment_per_slice: int
    grid_size: int
    block: int
    gap: int
    subjects: list[dict]
    counts: dict[str, int] = field(default_factory=dict)
    augment_params: dict = field(default_factory=dict)
    profile: str = "mri_t1"


def _iter_split_images(
    slices: SubjectSlices, labels: np.ndarray, split: str, n_augment: int, rng: np.random.Generator,
    params: AugmentParams = AugmentParams(),
) -> Iterator[tuple[np.ndarray, int, int]]:
    """Yield (image, slice_index, augmentation_number); number 0 is the unaugmented slice."""
    for image, index, label in zip(slices.images, slices.slice_index, labels, strict=True):
        if label != split:
            continue
        yield image, int(index), 0
        for a in range(1, n_augment + 1):
            yield augment(image, rng, params), int(index), a


def build_reference(
    out_dir: Path,
    *,
    seed: int = 0,
    augment_per_slice: int = 4,
    block: int = 8,
    gap: int = 2,
    subjects: list[ReferenceSubject] | None = None,
    profile: Profile | str | None = None,
) -> ReferenceManifest:
    """Build ``train/val/calib/test.npz`` and ``manifest.json`` under ``out_dir``.

    Each ``.npz`` holds ``images`` ``(N, 128, 128)`` float16 in [0, 1], ``subject`` ``(N,)`` str,
    ``slice_index`` ``(N,)`` int and ``augmentation`` ``(N,)`` int (0 = the real slice unchanged).

    ``profile`` (default ``mri_t1``) gives the subjects (unless ``subjects`` is given), the
    normalisation and the augmentation ranges.

    Raises:
        FileNotFoundError: no reference subject is available.
    """
    profile = get_profile(profile or DEFAULT_PROFILE)
    subjects = profile.available_subjects() if subjects is None else subjects
    if not subjects:
        missing = ", ".join(f"{s.name} ({s.provenance})" for s in profile.subjects)
        raise FileNotFoundError(f"no reference volume of profile {profile.name} found; it needs {missing} "
                                "(`make setup` installs them where it can)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    per_subject = [subject_slices(s, modality=profile.modality, window=profile.window) for s in subjects]
    manifest = ReferenceManifest(
        seed=seed,
        augment_per_slice=augment_per_slice,
        grid_size=GRID_SIZE,
        block=block,
        gap=gap,
        subjects=[
            {**{k: str(v) for k, v in asdict(s).items()}, "sha256": _subject_sha256(s.path), "n_slices": len(ps.images)}
            for s, ps in zip(subjects, per_subject, strict=True)
        ],
        augment_params=asdict(profile.augment),
        profile=profile.name,
    )
    for split_number, split in enumerate(SPLITS):
        # One generator per split, so adding subjects never reshuffles another split's noise.
        rng = np.random.default_rng([seed, split_number])
        images, subject_names, indices, augmentations = [], [], [], []
        for ps in per_subject:
            labels = assign_splits(len(ps.images), block=block, gap=gap)
            for image, index, a in _iter_split_images(ps, labels, split, augment_per_slice, rng, profile.augment):
                images.append(image)
                subject_names.append(ps.subject)
                indices.append(index)
                augmentations.append(a)
        if not images:
            usable = sum(len(ps.images) for ps in per_subject)
            raise ValueError(f"the {split} split is empty: the subjects give {usable} usable slices, and each "
                             f"subject needs at least {len(SPLITS) * block} (one block of {block} per split)")
        np.savez_compressed(
            out_dir / f"{split}.npz",
            images=np.stack(images).astype(np.float16),
            subject=np.array(subject_names),
            slice_index=np.array(indices, dtype=np.int32),
            augmentation=np.array(augmentations, dtype=np.int32),
        )
        manifest.counts[split] = len(images)
    (out_dir / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2))
    return manifest


@dataclass
class ReferenceSplit:
    images: np.ndarray  # (N, H, W) float32
    subject: np.ndarray
    slice_index: np.ndarray
    augmentation: np.ndarray


def ensure_reference(reference_dir: Path, profile: Profile | str | None = None) -> Path:
    """``reference_dir``, built first as ``make reference`` does (seed 0, a few seconds from the installed
    subjects) when a checkout has none (its ``train`` split missing); the one place that builds on demand."""
    if not (Path(reference_dir) / "train.npz").is_file():
        build_reference(reference_dir, seed=0, profile=profile)
    return Path(reference_dir)


def load_split(reference_dir: Path, split: str) -> ReferenceSplit:
    """Read one split written by :func:`build_reference`."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    path = Path(reference_dir) / f"{split}.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `python -m workflows.cli build-reference` first")
    with np.load(path) as data:
        return ReferenceSplit(
            images=data["images"].astype(np.float32),
            subject=data["subject"],
            slice_index=data["slice_index"],
            augmentation=data["augmentation"],
        )
