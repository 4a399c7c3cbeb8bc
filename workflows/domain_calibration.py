"""``python -m workflows.cli calibrate-domain``: fit the appearance check (:class:`core.domain.AppearanceModel`).

In-domain slices, as the scorer sees them (:class:`core.head_scoring.HeadScan`): the head's training
subjects only (:data:`core.detectors.head_training.HEAD_SUBJECTS`; never the held-out subject):

* 2-D images: slices of the training split under the training's normal variation (field of view,
  crop, rotation, scale, gamma, bias, noise, blur, 8-bit storage), each scored as a 2-D image; a
  quarter of them almost noise-free;
* volumes: each subject's whole volume as it is and under volume-wide variation
  (:func:`core.variation.vary_volume`), every scored slice.

The noise-free ones matter: the head's features follow the noise level, and without them the
averaged Colin27 with skull, a training subject, was out of domain as it installs (its raw slices
had a median distance of 25 against a threshold of 15), as a smooth generated image would be.

The threshold is the 99.5th percentile of these slices' own distances. The check is then measured
(not tuned) on the seen subjects' validation images of ``data/realistic_val`` and on pictures that
are not brain MRI (:func:`out_of_domain_examples`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from core.detectors.head import HeadDetector
from core.detectors.head_training import available_head_subjects, clean_training_volumes, split_source
from core.domain import AppearanceModel, HeadFeatures
from core.head_scoring import HeadScan
from core.profiles import Profile
from core.types import Modality, Volume
from core.variation import VariationParams, quantise, vary


def _image(image: np.ndarray) -> Volume:
    return Volume(np.asarray(image, dtype=np.float32), (1.0, 1.0), np.eye(4), Modality.MR)


def in_domain_scans(n_images: int, volumes_per_subject: int, seed: int) -> list[Volume]:
    """The 2-D images and volumes described in the module docstring."""
    rng = np.random.default_rng(seed)
    params = VariationParams()
    smooth = replace(params, noise_sigma=(0.0005, 0.002))
    source = split_source("train")
    scans = []
    for _ in range(n_images):
        drawn = smooth if rng.uniform() < 0.25 else params
        image = vary(source.slices[int(rng.integers(len(source.slices)))], rng, drawn)
        scans.append(_image(quantise(image) if rng.uniform() < params.quantise_probability else image))
    scans.extend(volume for _, volume in clean_training_volumes(volumes_per_subject, rng, params))
    return scans


def scan_distances(model: AppearanceModel, features: HeadFeatures, volume: Volume, profile: Profile) -> np.ndarray:
    """The distance of each scored slice of ``volume``."""
    return model.distances(np.stack([features(s) for s in HeadScan.of(volume, profile).slices]))


def calibrate_domain(head_path: Path, profile: Profile, out: Path, *, n_images: int = 1200,
                     volumes_per_subject: int = 2, seed: int = 0, quantile: float = 0.995,
                     progress=None) -> AppearanceModel:
    """Fit and save the appearance check of ``profile``'s head; returns it."""
    head = HeadDetector.load(head_path)
    features = HeadFeatures(head)
    rows = []
    scans = in_domain_scans(n_images, volumes_per_subject, seed)
    for i, scan in enumerate(scans):
        rows.extend(features(s) for s in HeadScan.of(scan, profile).slices)
        if progress is not None:
            progress(i + 1, len(scans))
    model = AppearanceModel.fit(np.stack(rows), quantile=quantile, what=profile.title)
    model.save(out, head=Path(head_path).name, n_images=n_images, volumes_per_subject=volumes_per_subject,
               seed=seed, subjects=[s.name for s in available_head_subjects()],
               command=f"python -m workflows.cli calibrate-domain --profile {profile.name} --seed {seed}")
    return model
