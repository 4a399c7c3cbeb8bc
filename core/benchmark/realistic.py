"""A benchmark as hard as the world: real slices under normal variation, half with one artifact.

Every image, clean or corrupted, is a real axial slice under a fresh draw of normal variation
(:func:`core.variation.vary`: field of view 128-224 px, non-square, crop, rotation, scale, flip,
bias field, gamma, global blur on some, Rician noise over a 12x range), written as an 8-bit PNG or
a float NIfTI. Half the images then carry one artifact of the evaluation simulator
(:func:`core.artifacts.simulate`, every kind and severity, its exact mask), inserted before the
file is written, so quantisation and format apply to the artifact as to the anatomy.

Sources (``source`` column):

* ``seen``: the ``test`` split of the head's training subjects (MNI152, Colin27 with and without
  skull): anatomy the models saw, slices they did not.
* ``unseen``: every usable slice of the held-out subject
  (:data:`core.detectors.head_training.UNSEEN_SUBJECT`), a real scan from another scanner, which
  no model, calibration or choice ever saw.

With ``pixel_mm=(lo, hi)`` each image is also stored at a pixel size drawn from that range
(:func:`core.variation.coarsen`, after the variation and before the artifact, so an artifact is made in
the pixels of the stored grid, as a generator makes it): a PNG then says nothing of it (a reader takes
1 mm, as for a generator's 128-px slice of a whole brain), a NIfTI states it in its affine.

Layout of ``OUT``: ``images/NNNNN.png|.nii.gz``, ``masks/NNNNN.png`` (0/255, the display view of the
image), ``labels.csv`` (file, label, kind, severity, source, subject, format, height, width, pixel_mm).
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from PIL import Image

from core.artifacts import ArtifactKind, ArtifactPlacementError, Severity, simulate
from core.benchmark.seeds import REALISTIC_SEED, UNSEEN_VOLUMES_SEED
from core.detectors.head_training import UNSEEN_SUBJECT, SampleSource, load_subject, split_source
from core.errors import InputError
from core.types import from_display
from core.variation import VariationParams, coarsen, quantise, vary, vary_volume

LABEL_COLUMNS = ("file", "label", "kind", "severity", "source", "subject", "format", "height", "width", "pixel_mm")


def _write_image(path: Path, image: np.ndarray, fmt: str, pixel_mm: float = 1.0) -> Path:
    """``image`` (a display view scaled to [0, 1]) as an 8-bit PNG (no pixel size) or a float32 2-D
    NIfTI (RAS, ``pixel_mm`` in-plane, 1 mm thick)."""
    if fmt == "png":
        target = path.with_suffix(".png")
        Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(target)
    else:
        target = path.with_suffix(".nii.gz")
        affine = np.diag([pixel_mm, pixel_mm, 1.0, 1.0])
        nib.save(nib.Nifti1Image(from_display(image.astype(np.float32))[:, :, None], affine), str(target))
    return target


def make_realistic_benchmark(out_dir: Path, *, n_seen: int = 216, n_unseen: int = 216, seed: int = REALISTIC_SEED,
                             split: str = "test", variation: VariationParams = VariationParams(),
                             pixel_mm: tuple[float, float] | None = None) -> pd.DataFrame:
    """Write the benchmark (module docstring); half of each source corrupted, kinds and severities
    dealt evenly. Returns the labels table.

    ``pixel_mm``: the range of stored pixel sizes (None: every image at 1 mm, and the random draws
    exactly as before the option existed, so earlier benchmarks are rebuilt byte for byte).

    ``split="val"`` (with ``n_unseen=0``) makes the same kind of set from the training subjects'
    ``val`` slices: a realistic validation set on which heads may be compared and chosen, leaving the
    ``test`` split and the held-out subject to the reported figures."""
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if split not in ("test", "val"):
        raise ValueError(f"split must be test or val, not {split!r}")
    seen = split_source(split)
    unseen_stack = load_subject(UNSEEN_SUBJECT)
    unseen = SampleSource(unseen_stack.slices, [unseen_stack.name] * len(unseen_stack.slices))
    cells = [(k, s) for k in ArtifactKind for s in Severity]
    rows = []
    for source_name, source, n in (("seen", seen, n_seen), ("unseen", unseen, n_unseen)):
        corrupted_cells = [cells[i % len(cells)] for i in range(n // 2)]
        plan = [None] * (n - n // 2) + corrupted_cells
        rng.shuffle(plan)
        for cell in plan:
            size = 1.0 if pixel_mm is None else float(rng.uniform(*pixel_mm))

            def varied(i: int) -> np.ndarray:
                image = coarsen(vary(source.slices[i], rng, variation), size)
                return image / max(float(image.max()), 1e-6)

            index = int(rng.integers(len(source.slices)))
            image = varied(index)
            mask = np.zeros(image.shape, dtype=bool)
            kind = severity = ""
            if cell is not None:
                for _ in range(5):
                    try:
                        corruption = simulate(image, cell[0], cell[1], rng)
                        break
                    except ArtifactPlacementError:
                        index = int(rng.integers(len(source.slices)))
                        image = varied(index)
                else:
                    raise ArtifactPlacementError(f"could not place {cell} on {source_name} slices")
                image, mask = corruption.image, corruption.mask
                kind, severity = cell[0].value, int(cell[1])
            fmt = "png" if rng.uniform() < 0.5 else "nifti"
            if fmt == "png":
                image = quantise(image)
            name = f"{len(rows):05d}"
            target = _write_image(out_dir / "images" / name, image, fmt, size)
            Image.fromarray(mask.astype(np.uint8) * 255).save(out_dir / "masks" / f"{name}.png")
            rows.append({"file": f"images/{target.name}", "label": int(cell is not None), "kind": kind,
                         "severity": severity, "source": source_name, "subject": source.subjects[index],
                         "format": fmt, "height": image.shape[0], "width": image.shape[1],
                         "pixel_mm": round(size, 3)})
    table = pd.DataFrame(rows, columns=LABEL_COLUMNS)
    table.to_csv(out_dir / "labels.csv", index=False)
    return table


def read_mask(out_dir: Path, file: str) -> np.ndarray:
    """The exact artifact mask of a benchmark image, in its display view (bool)."""
    name = Path(file).name.split(".")[0]
    return np.asarray(Image.open(Path(out_dir) / "masks" / f"{name}.png")) > 0


def make_unseen_volumes(out_dir: Path, *, n: int = 12, seed: int = UNSEEN_VOLUMES_SEED,
                        variation: VariationParams = VariationParams()) -> list[Path]:
    """``n`` clean copies of the held-out subject's volume, each under one volume-wide draw of
    normal variation (gamma, a smooth bias field shared by the slices, Rician noise, 8-bit storage
    half of the time), on the scan's own 2 x 2 x 3 mm grid, as NIfTI files under ``out_dir/volumes``.
    They measure the volume-level false-alarm rate."""
    folder = Path(out_dir) / "volumes"
    folder.mkdir(parents=True, exist_ok=True)
    image = nib.load(str(UNSEEN_SUBJECT.path))
    array = np.asarray(image.dataobj, dtype=np.float32)
    scale = float(np.percentile(array[array > np.percentile(array, 50)], 99))
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        out = vary_volume(array / scale, rng, variation)
        path = folder / f"unseen_{i:02d}.nii.gz"
        nib.save(nib.Nifti1Image(out.astype(np.float32), image.affine), str(path))
        paths.append(path)
    return paths


def read_labels(benchmark_dir: Path) -> pd.DataFrame:
    """A realistic benchmark's ``labels.csv`` (empty kinds stay ``""``); :class:`core.errors.InputError`
    with the command that makes it if the folder has none."""
    path = Path(benchmark_dir) / "labels.csv"
    if not path.is_file():
        raise InputError(f"{path} not found; run `python -m workflows.cli make-realistic-benchmark`")
    table = pd.read_csv(path, keep_default_na=False)
    if "pixel_mm" not in table:  # made before pixel sizes varied: every image at 1 mm
        table["pixel_mm"] = 1.0
    return table
