"""How the brain-MRI head's volume verdict behaves on the held-out subject's volumes.

    python scripts/measure_volume_verdicts.py [--benchmark data/realistic_benchmark] [--severity 2] [--seed 31]
                                              [--volumes N]

For the committed head and calibration (``models/head_mri_t1.pt``, ``models/head_calibration_mri_t1.json``),
on the realistic benchmark's clean held-out volumes (``make-realistic-benchmark`` writes 12 under
``volumes/``: the held-out ITK T1 under volume-wide normal variation, 2 x 3 x 2 mm):

* clean: how many are flagged at the volume threshold (calibrated on clean volumes of the training
  subjects) and how many would be under the Bonferroni rule it replaced (the slice quantile at 5 % / n);
* one artifact: each volume again with one artifact of each kind (``core.artifacts``, one severity)
  planted in one scored slice of its middle half, drawn at random: flagged at the volume threshold,
  the planted slice above the volume threshold, above the Bonferroni threshold, and the volume flagged
  under Bonferroni (by any slice).

Nothing here chooses anything: the held-out subject is never in training, calibration or a choice.
About 20 minutes on 2 cores (117 volumes scored).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from core.artifacts import ArtifactKind, ArtifactPlacementError, simulate
from core.benchmark.head_evaluation import false_alarms
from core.errors import EmptyImageError
from core.head_scoring import HeadScorer
from core.io import load_volume
from core.scoring import slices_to_score
from core.types import Modality, from_display


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", type=Path, default=Path("data/realistic_benchmark"))
    parser.add_argument("--severity", type=int, default=2)
    parser.add_argument("--seed", type=int, default=31)
    parser.add_argument("--volumes", type=int, default=None, help="only the first N volumes (a quick look)")
    args = parser.parse_args()
    scorer = HeadScorer.load(profile="mri_t1")
    calibration = scorer.calibration
    files = sorted((args.benchmark / "volumes").glob("*.nii.gz"))[: args.volumes]
    if not files:
        raise SystemExit(f"no volumes under {args.benchmark / 'volumes'}: run make-realistic-benchmark")
    rng = np.random.default_rng(args.seed)
    clean_flags, clean_bonferroni, rows = [], [], []
    for path in files:
        volume = load_volume(path, modality=Modality.MR)
        result = scorer.score_volume(volume)
        scores = np.asarray(result.slice_scores)
        n = int(np.isfinite(scores).sum())
        bonferroni = calibration.calibrator.threshold(calibration.false_alarm_rate / n)
        clean_flags.append(result.flag)
        clean_bonferroni.append(bool(np.nanmax(scores) > bonferroni))
        scored = np.flatnonzero(slices_to_score(volume))
        middle = scored[len(scored) // 4 : 3 * len(scored) // 4]
        for kind in ArtifactKind:
            k = int(rng.choice(middle))
            shown = volume.display_slice(k).astype(np.float32)
            top = float(shown.max())
            try:
                corrupted = simulate(np.clip(shown / top, 0, 1), kind, args.severity, rng)
            except (ArtifactPlacementError, EmptyImageError):
                continue
            array = volume.array.copy()
            array[:, :, k] = from_display(corrupted.image * top)
            planted = scorer.score_volume(volume.with_array(array))
            slice_scores = np.asarray(planted.slice_scores)
            rows.append((kind.value, planted.flag, slice_scores[k] > planted.tau, slice_scores[k] > bonferroni,
                         np.nanmax(slice_scores) > bonferroni))
        print(f"{path.name}: clean score {result.score:.6f}, flagged {result.flag}", flush=True)
    rate, low, high = false_alarms(np.array(clean_flags))
    n_calibration = 0 if calibration.volume_scores is None else len(calibration.volume_scores)
    source = (f"from {n_calibration} clean calibration volumes" if n_calibration
              else "Bonferroni: no calibration volumes")
    print(f"\nvolume threshold {calibration.volume_tau(n):.6f} ({source}); Bonferroni at {n} slices {bonferroni:.6f}")
    print(f"clean volumes flagged: {sum(clean_flags)} of {len(files)} ({rate:.1%}, 95 % CI {low:.1%}-{high:.1%}); "
          f"under Bonferroni {sum(clean_bonferroni)} of {len(files)}")
    print("\nkind | volumes | flagged (volume threshold) | planted slice above it | planted slice above Bonferroni "
          "| flagged under Bonferroni")
    table = np.array([r[1:] for r in rows], dtype=float)
    for kind in dict.fromkeys(r[0] for r in rows):
        part = np.array([r[1:] for r in rows if r[0] == kind], dtype=float)
        print(f"{kind} | {len(part)} | " + " | ".join(f"{v:.0%}" for v in part.mean(axis=0)))
    print(f"all | {len(table)} | " + " | ".join(f"{v:.1%}" for v in table.mean(axis=0)))


if __name__ == "__main__":
    main()
