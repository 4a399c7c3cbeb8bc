"""The generator report card's figures on the demo's generated set (demo/generated_mri_t1), timed.

    PYTHONPATH=. python scripts/generator_report_demo.py [--neighbour-slices N]

Real set (fidelity, coverage, diversity) and training set (copies): the reference's train split, all
240 images (the generators were trained on it). Copy threshold: the val + calib splits (real, unseen),
each compared only with training slices of the *other* volume (default) or, with --neighbour-slices N,
with every training slice more than N slices away in its own volume too.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from core import generator_report as gr
from core.profiles import get_profile
from core.reference import load_split


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--folder", type=Path, default=Path("demo/generated_mri_t1"))
    parser.add_argument("--neighbour-slices", type=int, default=None)
    parser.add_argument("--real", choices=("train", "plain"), default="train",
                        help="train: the train split as stored (augmented copies included); plain: the un-augmented "
                             "slices of train + val + calib (test holds the real controls' sources)")
    args = parser.parse_args()
    start = time.perf_counter()
    profile = get_profile("mri_t1")
    manifest = pd.read_csv(args.folder / "manifest.csv")
    gen = gr.prepare_image_files([args.folder / f for f in manifest["file"]], profile)
    train = load_split(profile.reference_dir, "train")
    held = [load_split(profile.reference_dir, s) for s in ("val", "calib")]
    held_images = np.concatenate([h.images for h in held])
    held_ids = np.concatenate([h.subject for h in held])
    held_slices = np.concatenate([h.slice_index for h in held])
    if args.real == "train":
        real = train.images
    else:
        real = np.concatenate([s.images[s.augmentation == 0] for s in (train, *held)])
    loaded = time.perf_counter()
    report = gr.build_report(gen, manifest["group"].to_numpy(), real, train_images=train.images,
                             training_volume_ids=train.subject, heldout_images=held_images,
                             heldout_volume_ids=held_ids, training_slices=train.slice_index,
                             heldout_slices=held_slices, neighbour_slices=args.neighbour_slices,
                             profile=profile)
    done = time.perf_counter()
    cal = report.calibration
    print(f"features: {report.feature_layer}")
    print(f"real set n={report.real_n}, pairwise MS-SSIM {report.real_ms_ssim.mean:.3f} (sd {report.real_ms_ssim.sd:.3f})")
    print(f"copy threshold: pixel NCC {cal.pixel_threshold:.4f}, feature cosine {cal.feature_threshold:.4f} "
          f"(max over {len(held_images)} held-out, neighbour_slices={args.neighbour_slices})")
    print(f"{'group':<10} {'n':>3} {'KID':>8} {'+-SE':>7} {'FID':>7} {'prec':>5} {'rec':>5} {'MS-SSIM':>7} "
          f"{'collapse':>8} {'copies':>6} max_NCC")
    check = report.copy_check
    groups = manifest["group"].to_numpy()
    for g in report.groups:
        max_ncc = check.pixel.similarity[groups == g.group].max()
        print(f"{g.group:<10} {g.n:>3} {g.kid:>8.4f} {g.kid_se:>7.4f} {g.fid:>7.3f} {g.precision:>5.2f} {g.recall:>5.2f} "
              f"{g.ms_ssim.mean:>7.3f} {str(g.mode_collapse):>8} {len(g.copies):>6} {max_ncc:.4f}")
        for c in g.copies:
            print(f"    copy: {manifest['file'][c.generated_index]} ~ train #{c.training_index} "
                  f"({train.subject[c.training_index]}:{train.slice_index[c.training_index]}) NCC {c.pixel_ncc:.4f}")
    print(f"time: load {loaded - start:.1f} s, report {done - loaded:.1f} s, total {done - start:.1f} s")


if __name__ == "__main__":
    main()
