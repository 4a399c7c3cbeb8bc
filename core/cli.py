"""SAFEGEN command line: ``python -m core.cli COMMAND ...``.

Commands:
    info FILE              load a scan and print what SAFEGEN sees (exit 2 on bad input)
    build-reference        build train/val/calib/test slices of real normal anatomy
    make-benchmark         corrupt reference slices with simulated artifacts (+ exact masks)
    train autoencoder      train the denoising autoencoder on the reference train split (seeded, CPU)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from core.errors import InputError
from core.io import SizeLimits, load_volume
from core.types import Modality

EXIT_BAD_INPUT = 2


def _cmd_info(args: argparse.Namespace) -> int:
    limits = SizeLimits(max_file_bytes=int(args.max_file_mb * 2**20))
    modality = Modality(args.modality) if args.modality else None
    volume = load_volume(args.path, modality=modality, limits=limits)
    finite = volume.array[np.isfinite(volume.array)]
    summary = {
        "source": volume.source,
        "modality": volume.modality.value,
        "shape": list(volume.array.shape),
        "spacing_mm": [round(float(s), 4) for s in volume.spacing],
        "n_slices": volume.n_slices,
        "intensity_min": float(finite.min()),
        "intensity_max": float(finite.max()),
        "window": None if volume.window is None else [volume.window.center, volume.window.width],
        "description": volume.description,
        "warnings": volume.warnings,
    }
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_build_reference(args: argparse.Namespace) -> int:
    from core.reference import build_reference

    start = time.perf_counter()
    manifest = build_reference(args.out, seed=args.seed, augment_per_slice=args.augment)
    print(f"subjects: {', '.join(s['name'] for s in manifest.subjects)}")
    print("images per split: " + ", ".join(f"{k}={v}" for k, v in manifest.counts.items()))
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_make_benchmark(args: argparse.Namespace) -> int:
    from core.artifacts import write_benchmark
    from core.reference import load_split

    split = load_split(args.reference, args.split)
    # Real slices only: augmentations would mix simulated variation into the benchmark's "clean".
    real = split.augmentation == 0
    images = split.images[real]
    sources = [f"{s}:{i}" for s, i in zip(split.subject[real], split.slice_index[real], strict=True)]
    start = time.perf_counter()
    table = write_benchmark(
        images, args.out, seed=args.seed, n_per_kind_severity=args.n_per, source_ids=sources
    )
    counts = table.groupby("kind").size().to_dict()
    print(f"{len(table)} images ({int(table.label.sum())} with artifacts) from {len(images)} real "
          f"{args.split} slices: {counts}")
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from core.detectors.autoencoder import train_autoencoder
    from core.reference import load_split

    train = load_split(args.reference, "train")
    val = load_split(args.reference, "val")
    val_real = val.images[val.augmentation == 0]
    detector, history = train_autoencoder(
        train.images, val_images=val_real, steps=args.steps, batch_size=args.batch_size,
        learning_rate=args.learning_rate, seed=args.seed,
    )
    manifest = json.loads((Path(args.reference) / "manifest.json").read_text())
    detector.save(
        args.out,
        metadata={
            "command": "python -m core.cli " + " ".join(sys.argv[1:]),
            "seed": args.seed,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "train_images": int(len(train.images)),
            "reference_subjects": [s["name"] for s in manifest["subjects"]],
            "history": asdict(history),
        },
    )
    print(f"final train L1 {history.train_loss[-1]:.4f}, val L1 {history.val_loss[-1]:.4f} "
          f"after {args.steps} steps in {history.seconds:.0f} s; wrote {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.cli", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="load a scan and print a summary")
    info.add_argument("path", type=Path, help="NIfTI, DICOM file or folder, zip of DICOM, PNG or JPEG")
    info.add_argument("--modality", choices=[m.value for m in Modality], help="override the detected modality")
    info.add_argument("--max-file-mb", type=float, default=1024.0, help="refuse larger files (default 1024)")
    info.set_defaults(func=_cmd_info)

    ref = sub.add_parser("build-reference", help="slices of real normal anatomy, split and augmented")
    ref.add_argument("--out", type=Path, default=Path("data/reference"))
    ref.add_argument("--seed", type=int, default=0)
    ref.add_argument("--augment", type=int, default=4, help="augmented copies per real slice (default 4)")
    ref.set_defaults(func=_cmd_build_reference)

    bench = sub.add_parser("make-benchmark", help="simulated artifacts with exact masks")
    bench.add_argument("--reference", type=Path, default=Path("data/reference"))
    bench.add_argument("--split", default="test", help="reference split to corrupt (default test)")
    bench.add_argument("--out", type=Path, default=Path("data/benchmark"))
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--n-per", type=int, default=2, help="images per artifact kind and severity")
    bench.set_defaults(func=_cmd_make_benchmark)

    train = sub.add_parser("train", help="train a detector on real normal slices (CPU, seeded)")
    train.add_argument("model", choices=["autoencoder"])
    train.add_argument("--reference", type=Path, default=Path("data/reference"))
    train.add_argument("--out", type=Path, default=Path("models/autoencoder_mri_t1.pt"))
    train.add_argument("--steps", type=int, default=1500)
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--learning-rate", type=float, default=1e-3)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=_cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
