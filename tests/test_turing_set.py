"""The visual Turing test set: real slices through the generator's grid, SDEdit samples from the committed model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core.benchmark.turing_set import make_turing_set, round_trip


def tiny_reference(folder: Path, n: int = 12) -> Path:
    """A ``test`` split of ``n`` real MNI152 slices (nilearn's template, no data/ needed)."""
    from core.profiles import KNOWN_SUBJECTS
    from core.reference import subject_slices

    slices = subject_slices(KNOWN_SUBJECTS[0])
    middle = len(slices.images) // 2
    picked = np.arange(middle - n // 2, middle - n // 2 + n)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "test.npz", images=slices.images[picked].astype(np.float32),
             subject=np.array(["mni152"] * n), slice_index=picked, augmentation=np.zeros(n, int))
    return folder


def test_the_turing_set_writes_real_and_sdedit_images_with_their_levels(tmp_path):
    reference = tiny_reference(tmp_path / "reference")
    table = make_turing_set(reference, tmp_path / "set", n=2, seed=5, levels=(150, 500))
    assert table["truth"].tolist() == ["real", "real", "synthetic", "synthetic"]
    assert table["level"].tolist() == [0, 0, 150, 500]
    assert pd.read_csv(tmp_path / "set" / "cases.csv").equals(table)
    again = make_turing_set(reference, tmp_path / "again", n=2, seed=5, levels=(150, 500))
    for name in table["image"]:  # seeded: the same bytes twice
        assert (tmp_path / "set" / name).read_bytes() == (tmp_path / "again" / name).read_bytes()
    assert again.equals(table)

    images = {name: np.asarray(Image.open(tmp_path / "set" / name), np.float32) / 255 for name in table["image"]}
    source = np.load(reference / "test.npz")
    index = {int(s.split(":")[1]): i for i, s in enumerate(f"mni152:{k}" for k in source["slice_index"])}
    change = {}
    for row in table.itertuples():
        original = source["images"][index[int(row.source.split(":")[1])]]
        image, seen = images[row.image], round_trip(original[None], 64)[0]
        assert image.shape == (128, 128)
        if row.truth == "real":  # the real slice through the same 64 -> 128 round trip, to 8-bit precision
            np.testing.assert_allclose(image, seen, atol=1 / 255 + 1e-6)
        else:  # a new image that keeps the source's anatomy (measured r 0.98 and 0.92), less of it from far
            change[row.level] = float(np.abs(image - seen).mean())
            assert np.corrcoef(image.ravel(), original.ravel())[0, 1] > (0.95 if row.level == 150 else 0.85)
    assert 0.01 < change[150] < change[500]
