"""How often the out-of-domain checks (core/domain.py) speak, on in-domain and out-of-domain images.

    python scripts/measure_domain.py [--benchmark data/realistic_benchmark] [--val data/realistic_val]

Prints, for the brain MRI T1 head with its committed appearance check: the share of images warned
"Out of domain" (metadata, field of view: no verdict) or "Unlike the training slices" (the appearance
check alone) on the validation set's seen-subject
images (clean and corrupted), on the reported realistic benchmark by source (seen subjects, the held-out
subject) and on its clean held-out volumes, and which of the demo scans and scikit-image's pictures are
warned. Nothing here chooses anything: the check's threshold was fitted on the training subjects
(``calibrate-domain``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.benchmark.head_evaluation import false_alarms  # noqa: E402
from core.benchmark.realistic import read_labels  # noqa: E402
from core.demo import available_cases  # noqa: E402
from core.head_scoring import HeadScan, HeadScorer  # noqa: E402
from core.io import load_volume  # noqa: E402
from core.resources import package_file  # noqa: E402
from core.types import OUT_OF_DOMAIN  # noqa: E402

PICTURES = ("camera.png", "astronaut.png", "coins.png", "moon.png", "retina.jpg", "text.png", "brick.png",
            "phantom.png", "cell.png", "page.png", "chelsea.png", "horse.png", "grass.png")


def warnings_of(scorer: HeadScorer, volume) -> list[str]:
    """The out-of-domain warnings the scorer would give ``volume`` (without running the head's map)."""
    scan = HeadScan.of(volume, scorer.profile)  # its warnings hold the metadata and field-of-view checks'
    found = [w for w in scan.warnings if w.startswith(OUT_OF_DOMAIN)]
    if (unlike := scorer.unlike_training(scan.slices)) is not None:
        found.insert(0, unlike)
    return found


def share(flags: list[bool]) -> str:
    rate, low, high = false_alarms(np.asarray(flags, dtype=bool))
    return f"{int(sum(flags))} of {len(flags)} ({rate:.1%}, 95 % CI {low:.1%}-{high:.1%})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--benchmark", type=Path, default=Path("data/realistic_benchmark"))
    parser.add_argument("--val", type=Path, default=Path("data/realistic_val"))
    args = parser.parse_args()
    scorer = HeadScorer.load()
    if scorer.appearance is None:
        print("models/domain_mri_t1.npz is missing: python -m workflows.cli calibrate-domain", file=sys.stderr)
        return 2
    for name, folder in (("validation", args.val), ("benchmark", args.benchmark)):
        if not folder.is_dir():
            print(f"{name}: {folder} is missing (make realistic-benchmark)")
            continue
        labels = read_labels(folder)
        found = [warnings_of(scorer, load_volume(folder / f)) for f in labels["file"]]
        hard = np.array([any(w.startswith(OUT_OF_DOMAIN) for w in ws) for ws in found])
        unlike = np.array([bool(ws) and not any(w.startswith(OUT_OF_DOMAIN) for w in ws) for ws in found])
        for (source, label), rows in labels.groupby(["source", "label"]):
            kind = "clean" if label == 0 else "with an artifact"
            print(f"{name}, {source} subject(s), {kind}: out of domain {share(list(hard[rows.index]))}; "
                  f"unlike the training slices {share(list(unlike[rows.index]))}")
        volumes = sorted((folder / "volumes").glob("*.nii.gz"))
        if volumes:
            print(f"{name}, clean held-out volumes: warned {share([bool(warnings_of(scorer, load_volume(v))) for v in volumes])}")
    generated = Path("demo/generated_mri_t1")
    if (generated / "manifest.csv").is_file():
        manifest = pd.read_csv(generated / "manifest.csv")
        for group, rows in manifest.groupby("group"):
            flags = [bool(warnings_of(scorer, load_volume(generated / f))) for f in rows["file"]]
            print(f"generated demo set, {group}: unlike the training slices {share(flags)}")
    for case in available_cases():
        found = warnings_of(scorer, load_volume(case.path, modality=case.modality))
        print(f"demo {case.key}: {'; '.join(found) if found else 'in domain'}")
    pictures = [p for p in (package_file("skimage", "data", n) for n in PICTURES) if p is not None and p.is_file()]
    print(f"scikit-image pictures warned: {share([bool(warnings_of(scorer, load_volume(p))) for p in pictures])}; "
          f"in domain: {[p.name for p in pictures if not warnings_of(scorer, load_volume(p))]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
