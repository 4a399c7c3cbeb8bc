"""The simulated-artifact benchmark: real slices corrupted by :mod:`core.artifacts`, written as files.

``make-benchmark`` (:func:`benchmark_from_reference`) writes ``benchmark.csv`` (one row per image:
:data:`BENCHMARK_COLUMNS`), ``images/<id>.png`` and ``masks/<id>.png`` (16-bit and 8-bit PNGs) and
``benchmark.npz`` (the same arrays). The seeds of the sets the README reports are in
:mod:`core.benchmark.seeds`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from core.artifacts import (
    VISIBLE_DELTA, ArtifactKind, ArtifactPlacementError, Severity, as_slice, default_foreground, simulate,
)
from core.reference import load_split

_PNG_MAX = 65535

BENCHMARK_COLUMNS = (
    "id", "image", "mask", "label", "kind", "severity", "extent", "source", "mask_fraction", "params",
    "seed", "sample_seed",
)
_ID_PATTERN = re.compile(r"^\d{5,}$")


def _split_sources(order: np.ndarray, n_corrupted: int, n_clean: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint pools of source images for corrupted and clean samples, sized in proportion, so
    that a clean image and a corrupted one rarely share anatomy. With one source, both share it."""
    if len(order) == 1 or n_corrupted == 0 or n_clean == 0:
        return order, order
    n_clean_pool = int(round(len(order) * n_clean / (n_clean + n_corrupted)))
    n_clean_pool = min(max(n_clean_pool, 1), len(order) - 1)
    return order[n_clean_pool:], order[:n_clean_pool]


def _write_png16(path: Path, image: np.ndarray) -> None:
    Image.fromarray(np.round(image.astype(np.float64) * _PNG_MAX).astype(np.uint16)).save(path)


def read_png16(path: Path) -> np.ndarray:
    """Read a benchmark image back as float32 ``(H, W)`` in [0, 1]."""
    return (np.asarray(Image.open(path), dtype=np.float64) / _PNG_MAX).astype(np.float32)


def write_benchmark(
    images: np.ndarray,
    out_dir: Path,
    *,
    seed: int,
    n_per_kind_severity: int = 1,
    n_clean: int | None = None,
    kinds: Sequence[ArtifactKind | str] | None = None,
    severities: Sequence[Severity | int] | None = None,
    source_ids: list[str] | None = None,
) -> pd.DataFrame:
    """Corrupt real slices with every kind x severity and write an evaluation benchmark.

    Writes into ``out_dir``:

    * ``images/{id}.png``: 16-bit grayscale, the [0, 1] image scaled to 0..65535;
    * ``masks/{id}.png``: 8-bit, 255 inside the ground-truth mask (all 0 for clean images);
    * ``labels.csv``: one row per image, columns :data:`BENCHMARK_COLUMNS`; ``seed`` is this
      benchmark's seed and ``sample_seed`` reproduces the row:
      ``simulate(images[source], kind, severity, np.random.default_rng(sample_seed))`` (-1 for clean
      rows); ``extent`` is ``none`` and ``params`` ``{}`` for clean rows;
    * ``benchmark.npz``: ``images`` float32 ``(N, H, W)``, ``masks`` bool, ``labels`` int64, ``ids``,
      ``kinds``, ``severities`` and ``visible_delta``, in the CSV's row order.

    Rows are shuffled (ids are neutral numbers) so neither the order nor a file name gives the
    label away. Stale ``{id}.png`` files of an earlier run in ``images/`` and ``masks/`` are removed.

    Args:
        images: ``(N, H, W)`` normalised clean slices.
        out_dir: output folder, created if needed.
        seed: the whole benchmark is a function of ``images`` and ``seed`` (byte-identical CSV).
        n_per_kind_severity: corrupted images per (kind, severity).
        n_clean: clean images; default as many as corrupted ones, from other source images
            where there are enough.
        kinds: default all of :class:`ArtifactKind`.
        severities: default all of :class:`Severity`.
        source_ids: one name per input image for the ``source`` column; default its index.

    Returns:
        the ``labels.csv`` table as a DataFrame.
    """
    stack = np.asarray(images)
    if stack.ndim != 3 or len(stack) == 0:
        raise ValueError(f"expected images of shape (N, H, W) with N >= 1, got {stack.shape}")
    sources = [str(i) for i in range(len(stack))] if source_ids is None else [str(s) for s in source_ids]
    if len(sources) != len(stack):
        raise ValueError(f"{len(sources)} source ids for {len(stack)} images")
    kind_list = [ArtifactKind(k) for k in kinds] if kinds is not None else list(ArtifactKind)
    severity_list = [Severity(s) for s in severities] if severities is not None else list(Severity)
    jobs = [(k, s) for k in kind_list for s in severity_list for _ in range(n_per_kind_severity)]
    n_clean = len(jobs) if n_clean is None else int(n_clean)
    if n_clean < 0:
        raise ValueError(f"n_clean must be >= 0, got {n_clean}")
    if not jobs and n_clean == 0:
        raise ValueError("nothing to write: no corrupted and no clean images asked for")

    # One child seed for the plan, one per corrupted sample: a sample does not depend on how much
    # randomness the others used (retries), so any row can be regenerated alone.
    plan_seq, *sample_seqs = np.random.SeedSequence(seed).spawn(1 + len(jobs))
    plan_rng = np.random.default_rng(plan_seq)
    corrupt_pool, clean_pool = _split_sources(plan_rng.permutation(len(stack)), len(jobs), n_clean)
    slices = [as_slice(image) for image in stack]
    foregrounds: dict[int, np.ndarray] = {}

    samples = []  # (source index, Corruption | None, sample seed)
    for j, (kind, severity) in enumerate(jobs):
        sample_seed = int(sample_seqs[j].generate_state(1)[0])
        failures = []
        for t in range(len(corrupt_pool)):
            source = int(corrupt_pool[(j + t) % len(corrupt_pool)])
            if source not in foregrounds:
                foregrounds[source] = default_foreground(slices[source])
            try:
                corruption = simulate(slices[source], kind, severity, np.random.default_rng(sample_seed),
                                      foregrounds[source])
            except ArtifactPlacementError as error:
                failures.append(f"source {sources[source]}: {error}")
                continue
            samples.append((source, corruption, sample_seed))
            break
        else:
            raise ArtifactPlacementError(f"no source image takes {kind} ({severity.name.lower()}):\n"
                                         + "\n".join(failures))
    samples += [(int(clean_pool[i % len(clean_pool)]), None, -1) for i in range(n_clean)]

    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    width = max(5, len(str(len(samples) - 1)))
    rows, out_images, out_masks = [], [], []
    for index, position in enumerate(plan_rng.permutation(len(samples))):
        source, corruption, sample_seed = samples[position]
        sample_id = f"{index:0{width}d}"
        if corruption is None:
            image, mask = slices[source], np.zeros(slices[source].shape, bool)
            kind, severity, extent, params = "clean", 0, "none", {}
        else:
            image, mask = corruption.image, corruption.mask
            kind, severity = str(corruption.kind), int(corruption.severity)
            extent, params = str(corruption.extent), corruption.params
        _write_png16(out_dir / "images" / f"{sample_id}.png", image)
        Image.fromarray(mask.astype(np.uint8) * 255).save(out_dir / "masks" / f"{sample_id}.png")
        out_images.append(image)
        out_masks.append(mask)
        rows.append({
            "id": sample_id, "image": f"images/{sample_id}.png", "mask": f"masks/{sample_id}.png",
            "label": int(corruption is not None), "kind": kind, "severity": severity, "extent": extent,
            "source": sources[source], "mask_fraction": round(float(mask.mean()), 6),
            "params": json.dumps(params, sort_keys=True, separators=(",", ":")),
            "seed": int(seed), "sample_seed": sample_seed,
        })

    ids = {row["id"] for row in rows}
    for folder in ("images", "masks"):
        for path in (out_dir / folder).glob("*.png"):
            if _ID_PATTERN.match(path.stem) and path.stem not in ids:
                path.unlink()
    table = pd.DataFrame(rows, columns=list(BENCHMARK_COLUMNS))
    table.to_csv(out_dir / "labels.csv", index=False, lineterminator="\n")
    np.savez_compressed(
        out_dir / "benchmark.npz",
        images=np.stack(out_images).astype(np.float32),
        masks=np.stack(out_masks).astype(bool),
        labels=table["label"].to_numpy(np.int64),
        ids=np.array(table["id"].tolist()),
        kinds=np.array(table["kind"].tolist()),
        severities=table["severity"].to_numpy(np.int64),
        visible_delta=np.float64(VISIBLE_DELTA),
    )
    return table


def benchmark_from_reference(reference_dir: Path, split: str, out_dir: Path, *, seed: int,
                             n_per_kind_severity: int) -> pd.DataFrame:
    """``make-benchmark``: corrupt the *real* slices of a reference split (never its augmented copies,
    which would mix simulated variation into the benchmark's "clean")."""
    data = load_split(reference_dir, split)
    real = data.augmentation == 0
    sources = [f"{s}:{i}" for s, i in zip(data.subject[real], data.slice_index[real], strict=True)]
    return write_benchmark(data.images[real], out_dir, seed=seed, n_per_kind_severity=n_per_kind_severity,
                           source_ids=sources)
