"""Whether a volume threshold fitted on one person's clean volumes holds on another's: the validation-side
check of the head's volume verdict, on the training subjects only.

    python scripts/measure_volume_transfer.py [--heads models/head_mri_t1.pt,models/ablation/F.pt,...]
                                              [--per-subject 15] [--seed 9]

For each head: the 48 clean whole volumes ``calibrate-head`` scores (each training subject as it installs
and under ``--per-subject`` draws of volume-wide variation, seed 9 as there), grouped by person (MNI152, an
average of 152 adults; Colin27 with and without skull, one man), and for each person the volume threshold
fitted on the other person's volumes (:func:`core.benchmark.head_evaluation.volume_threshold_transfer`) and how many
of the person's own clean volumes are above it. The held-out subject stays out: this is what a choice
between heads may look at (``scripts/measure_volume_verdicts.py`` reports the held-out scanner).
About 4 min per head on 2 cores.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from core.benchmark.head_evaluation import volume_threshold_transfer
from core.detectors.head_training import HEAD_SUBJECTS
from core.head_scoring import HeadScorer, calibration_file_of, fit_volume_scores
from core.profiles import MRI_T1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", default="models/head_mri_t1.pt", help="comma-separated head files")
    parser.add_argument("--per-subject", type=int, default=15)
    parser.add_argument("--seed", type=int, default=9)
    args = parser.parse_args()
    who = {subject.name: subject.who for subject in HEAD_SUBJECTS}
    for head in (Path(h.strip()) for h in args.heads.split(",") if h.strip()):
        start = time.perf_counter()
        scorer = HeadScorer.from_files(head, calibration_file_of(head, MRI_T1), profile=MRI_T1)  # its score window
        scores, subjects = fit_volume_scores(scorer, per_subject=args.per_subject, seed=args.seed)
        table = volume_threshold_transfer(scores, [who[s] for s in subjects])
        stored = scorer.calibration.volume_scores
        if stored is None:
            check = "its calibration file has no volume scores to compare with"
        elif np.allclose(np.sort(scores), np.sort(stored), atol=1e-6):
            check = f"the calibration file's {len(stored)} volume scores reproduced"
        else:
            check = "NOT the calibration file's volume scores: recalibrate the head"
        print(f"{head} ({time.perf_counter() - start:.0f} s; {check})")
        for row in table.itertuples():
            print(f"  {row.left_out}: tau {row.tau:.6f} from the other person's {row.fitted_on} volumes; "
                  f"{row.flagged} of {row.n} clean volumes above it ({row.share:.0%}, 95 % CI "
                  f"{row.ci_low:.0%}-{row.ci_high:.0%})")


if __name__ == "__main__":
    main()
