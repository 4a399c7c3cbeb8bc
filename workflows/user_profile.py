"""Bring your own data: a SAFEGEN profile trained on a folder of a user's own real, normal images.

    python -m workflows.cli train-profile my_t1 --images /data/my_normal_t1 --modality MR

SAFEGEN's built-in profiles learn from the two or three real subjects that install offline. A
research group with its own normal scans (say, the healthy slices of a BraTS-style collection)
trains a profile on them in one command, with the same recipe, seeds and files as the built-in
ones:

1. **Subjects.** Each 3-D file in the folder (NIfTI, DICOM series files are not grouped: give
   volumes as NIfTI) is one subject; all 2-D files (PNG, JPEG, DICOM, 2-D NIfTI) together are one
   subject called ``slices``, in file-name order, each normalised exactly as it is when scored.
2. **Reference and benchmarks** (:func:`core.reference.build_reference`): slices in blocks dealt to
   train / val / calib / test, augmented; simulated-artifact benchmarks of the val split
   (seed 101: it picks alpha) and of the test split (seed 202: ``evaluate`` reports it), the seeds of
   :mod:`core.benchmark.seeds`.
3. **Models** (seeded, CPU): the autoencoder, the diffusion model and latent_ig's VAE; then the
   calibration (alpha, scales, tau at 5 % false alarms on real calib slices) and the explainer
   calibration.

The profile is a folder, ``profiles/<name>/`` (git-ignored): ``profile.json``, the weights and
calibrations, and ``data/`` with the reference and benchmarks. ``--profile <name>`` then works with
``score``, ``evaluate`` and ``bench``, and the dashboard lists it. Its data never leave the machine.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from core import profiles as profiles_module
from core.benchmark.seeds import SIMULATED_TEST_SEED, SIMULATED_VAL_SEED
from core.io import ACCEPTED_SUFFIXES, load_volume
from core.profiles import CT_HEAD, MRI_T1, PROFILES, Profile, ReferenceSubject
from core.reference import image_files
from core.types import Modality, Window

NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def check_name(name: str) -> str:
    """A profile name: lower-case letters, digits and ``_``, not a built-in profile's."""
    if not name or not set(name) <= NAME_CHARS or not name[0].isalpha():
        raise ValueError(f"profile name {name!r}: use lower-case letters, digits and _, starting with a letter")
    if name in PROFILES:
        raise ValueError(f"{name!r} is a built-in profile; choose another name")
    return name


def folder_subjects(folder: Path) -> tuple[list[ReferenceSubject], set[Modality]]:
    """The subjects in ``folder`` and the modalities their files carry.

    Every 3-D file is a subject of its own (named after the file); 2-D files form one ``slices``
    subject. Files that cannot be read are reported together, so a user fixes them in one go.

    Raises:
        ValueError: the folder holds no images, or some cannot be read.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    files = image_files(folder)
    if not files:
        raise ValueError(f"{folder} holds no {', '.join(ACCEPTED_SUFFIXES)} files")
    subjects, modalities, bad, n_slices = [], Counter(), [], 0
    for path in files:
        try:
            volume = load_volume(path)
        except Exception as error:  # collect every unreadable file, then refuse
            bad.append(f"{path.name}: {error}")
            continue
        modalities[volume.modality] += 1
        if volume.is_3d:
            stem = path.name.split(".")[0]
            subjects.append(ReferenceSubject(name=stem, path=path.resolve(), description=f"{volume.array.shape} "
                                             f"at {tuple(round(float(s), 2) for s in volume.spacing)} mm",
                                             provenance=f"user folder {folder}"))
        else:
            n_slices += 1
    if bad:
        raise ValueError("cannot read " + "; ".join(bad))
    if n_slices:
        subjects.insert(0, ReferenceSubject(name="slices", path=folder.resolve(),
                                            description=f"the {n_slices} 2-D images of the folder",
                                            provenance=f"user folder {folder}"))
    return subjects, set(modalities)


def make_user_profile(name: str, images: Path, *, home: Path | None = None, modality: Modality | None = None,
                      window: Window | None = None, title: str | None = None) -> Profile:
    """Describe a user profile for the images in ``images`` and save its ``profile.json``.

    Args:
        name: the profile's name (:func:`check_name`).
        images: the folder of real, normal images.
        home: the profile's folder (default ``profiles/<name>``).
        modality: override the modality the files carry (e.g. MR for a folder of PNG slices of MR
            scans; scans of other modalities then get an out-of-domain warning).
        window: CT only: the HU window (default: the brain window, level 40 width 80).
        title: what the dashboard shows (default: the name).
    """
    name = check_name(name)
    subjects, found = folder_subjects(images)
    if modality is None and len(found) > 1:
        kinds = ", ".join(sorted(m.value for m in found))
        raise ValueError(f"{images} mixes modalities ({kinds}; PNG and JPEG files count as OT); give --modality "
                         "to say which one the profile is for")
    modality = Modality(modality) if modality is not None else found.pop()
    if window is not None and modality is not Modality.CT:
        raise ValueError("--window applies to CT profiles only (MR and pictures use robust percentiles)")
    # The built-in profile of the same kind gives the normalisation and augmentation ranges.
    built_in = CT_HEAD if modality is Modality.CT else MRI_T1
    window = window or built_in.window
    n_volumes = sum(1 for s in subjects if s.name != "slices")
    n_slices = len(image_files(images)) - n_volumes  # every other image file is a 2-D slice
    # The first clause (up to the comma) is what an out-of-domain warning quotes.
    about = (f"{modality.value} images from the folder {Path(images).name} ({n_volumes} volume(s) and "
             f"{n_slices} file(s) of 2-D slices), with augmentation standing in for normal variation")
    profile = Profile(name=name, title=title or f"{name} (user profile)", modality=modality,
                      subjects=tuple(subjects), window=window, augment=built_in.augment, data_suffix="", about=about,
                      home=Path(home) if home is not None else profiles_module.USER_PROFILES_DIR / name)
    profile.save()
    return profile


def training_steps(profile: Profile, *, seed: int = 0, steps: int | None = None, augment: int = 4,
                   n_per: int = 2, shap_samples: int = 200) -> list[list[str]]:
    """The ``python -m workflows.cli`` commands that train ``profile``, in order (what ``train-profile`` runs)."""
    where = ["--profile", str(profile.home)]
    train = ["--seed", str(seed)] + (["--steps", str(steps)] if steps else [])
    reference = str(profile.reference_dir)
    return [
        ["build-reference", *where, "--seed", str(seed), "--augment", str(augment)],
        ["make-benchmark", "--reference", reference, "--split", "val", "--out", str(profile.validation_dir),
         "--seed", str(SIMULATED_VAL_SEED), "--n-per", str(n_per)],
        ["make-benchmark", "--reference", reference, "--split", "test", "--out", str(profile.benchmark_dir),
         "--seed", str(SIMULATED_TEST_SEED), "--n-per", str(n_per)],
        ["train", "autoencoder", *where, *train],
        ["train", "diffusion", *where, *train],
        ["train", "vae", *where, *train],
        ["calibrate", *where],
        ["calibrate-explainers", *where, "--shap-samples", str(shap_samples)],
    ]
