"""Shared test data of the baseline tests: real mid-brain MNI152 slices, a planted square with its
known mask, and a small reference folder written from them (no data/ needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def mid_brain_slices() -> tuple[np.ndarray, np.ndarray]:
    """24 consecutive real mid-brain MNI152 slices (128 x 128): even ones to fit, odd ones held out."""
    from core.profiles import KNOWN_SUBJECTS
    from core.reference import subject_slices

    images = subject_slices(KNOWN_SUBJECTS[0]).images
    middle = len(images) // 2
    picked = images[middle - 12:middle + 12].astype(np.float32)
    return picked[0::2], picked[1::2]


def planted(image: np.ndarray, value: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """The slice with a 12 x 12 square of ``value`` in the left hemisphere's white matter, and its mask."""
    mask = np.zeros_like(image, bool)
    mask[52:64, 40:52] = True
    out = image.copy()
    out[mask] = value
    return out, mask


def write_reference(folder: Path, train: np.ndarray, calib: np.ndarray) -> Path:
    """``train.npz`` and ``calib.npz`` in ``folder`` as ``build_reference`` writes them (all real, unaugmented)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split, images in (("train", train), ("calib", calib)):
        np.savez(folder / f"{split}.npz", images=images, subject=np.array(["mni152"] * len(images)),
                 slice_index=np.arange(len(images)), augmentation=np.zeros(len(images), int))
    return folder
