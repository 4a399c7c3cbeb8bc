"""Figures on the realistic benchmark (:mod:`core.benchmark.realistic`), any scorer side by side.

Every image goes through the same path as ``python -m workflows.cli score``: :func:`core.io.load_volume`
of the file, then the scorer's ``score_volume``. Per method:

* detection: image AUROC and AUPRC of the scan score, F1 of the method's own flag, and the share of
  clean images flagged with its 95 % Clopper-Pearson interval (the configured rate is 5 %);
* localisation: Dice of the method's mask at its own tau with the exact artifact mask (mean over
  corrupted images), pixel AUROC (pooled, every pixel of every corrupted and clean image) and AUPRO
  (FPR up to 0.3) of its heatmap;
* the same per source (``seen`` / ``unseen`` subject), per artifact kind and per severity (AUROC
  of that group's corrupted images against all clean images of the same sources).

Component scores (``score_diffusion``, ``score_autoencoder``) of the seed's reconstruction scorer
give the S_diffusion and E_AE rows (image level only: their per-pixel maps are not kept).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from core.benchmark.realistic import read_mask
from core.io import load_volume
from core.metrics import _area_up_to, dice, image_auprc, image_auroc, pixel_auroc, pro_curve_points


@dataclass
class MethodRun:
    """One method's outputs on every benchmark image, in ``labels.csv`` order."""

    name: str
    scores: np.ndarray
    flags: np.ndarray
    maps: list[np.ndarray | None]  # display-view heatmaps (None: image-level method)
    masks: list[np.ndarray | None]
    seconds: np.ndarray
    components: dict[str, np.ndarray]


def run_method(name: str, scorer, benchmark_dir: Path, table: pd.DataFrame, *, progress=None) -> MethodRun:
    """Score every benchmark file with ``scorer`` (anything with ``score_volume``)."""
    scores, flags, maps, masks, seconds = [], [], [], [], []
    components: dict[str, list] = {"score_diffusion": [], "score_autoencoder": []}
    for file in table["file"]:
        volume = load_volume(Path(benchmark_dir) / file)
        start = time.perf_counter()
        result = scorer.score_volume(volume)
        seconds.append(time.perf_counter() - start)
        scores.append(result.score)
        flags.append(result.flag)
        maps.append(volume.display_slice_of(result.heatmap, 0) if result.pixel_maps else None)
        masks.append(volume.display_slice_of(result.mask, 0).astype(bool) if result.pixel_maps else None)
        components["score_diffusion"].append(result.score_diffusion)
        components["score_autoencoder"].append(result.score_autoencoder)
        if progress is not None:
            progress(1)
    return MethodRun(name, np.asarray(scores, dtype=float), np.asarray(flags, dtype=bool), maps, masks,
                     np.asarray(seconds), {k: np.asarray(v, dtype=float) for k, v in components.items()})


def false_alarms(flags: np.ndarray) -> tuple[float, float, float]:
    """Share flagged and its 95 % Clopper-Pearson interval."""
    n, k = len(flags), int(np.sum(flags))
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    return k / n, float(ci.low), float(ci.high)


def volume_threshold_transfer(scores: np.ndarray, groups: list[str], rate: float = 0.05) -> pd.DataFrame:
    """How a volume threshold fitted on some people's clean volumes holds on another's: for each group
    (a person: Colin27 with and without skull is one man), the threshold from the other groups' volume
    scores (conformal at ``rate``, :class:`core.calibration.ConformalCalibrator`: their largest score
    when they are fewer than ``1 / rate - 1``) and how many of the group's own volumes are above it.

    A validation-side check on training subjects only: what the held-out scanner's clean volumes show
    (``scripts/measure_volume_verdicts.py``) without looking at them.
    """
    from core.calibration import ConformalCalibrator

    scores, groups = np.asarray(scores, dtype=np.float64), np.asarray(groups)
    rows = []
    for group in dict.fromkeys(groups.tolist()):
        own, others = scores[groups == group], scores[groups != group]
        tau = ConformalCalibrator(others).threshold(rate)
        share, low, high = false_alarms(own > tau)
        rows.append({"left_out": group, "n": len(own), "fitted_on": len(others), "tau": tau,
                     "flagged": int(np.sum(own > tau)), "share": share, "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def aupro_ragged(maps: list[np.ndarray], masks: list[np.ndarray], fpr_limit: float = 0.3) -> float:
    """:func:`core.metrics.aupro` of images of different sizes.

    They are padded to one shape with a map value below every real one, and the false-positive rate
    is rescaled to the real normal pixels (padding is never predicted anomalous above that value).
    """
    h = max(m.shape[0] for m in maps)
    w = max(m.shape[1] for m in maps)
    floor = min(float(np.min(m)) for m in maps) - 1.0
    padded = np.stack([np.pad(m, ((0, h - m.shape[0]), (0, w - m.shape[1])), constant_values=floor) for m in maps])
    truth = np.stack([np.pad(g, ((0, h - g.shape[0]), (0, w - g.shape[1]))) for g in masks])
    fpr, pro, _ = pro_curve_points(padded, truth)
    real_normal = sum(int((~g).sum()) for g in masks)
    fpr = np.minimum(fpr * int((~truth).sum()) / real_normal, 1.0)
    return _area_up_to(fpr, pro, fpr_limit) / fpr_limit


def _detection(labels: np.ndarray, scores: np.ndarray, flags: np.ndarray | None) -> dict[str, float]:
    row = {"n_clean": int((labels == 0).sum()), "n_artifact": int((labels == 1).sum()),
           "image_auroc": image_auroc(labels, scores), "image_auprc": image_auprc(labels, scores)}
    if flags is not None:
        tp = int(np.sum(flags & (labels == 1)))
        fp, fn = int(np.sum(flags & (labels == 0))), int(np.sum(~flags & (labels == 1)))
        row["f1"] = 2 * tp / max(2 * tp + fp + fn, 1)
        rate, low, high = false_alarms(flags[labels == 0])
        row.update(false_alarm=rate, false_alarm_ci_low=low, false_alarm_ci_high=high)
    return row


def _localisation(run: MethodRun, gts: list[np.ndarray], labels: np.ndarray, rows: np.ndarray,
                  seed: int) -> dict[str, float]:
    if run.maps[0] is None:
        return {}
    corrupted = [i for i in rows if labels[i] == 1]
    dices = [dice(run.masks[i], gts[i]) for i in corrupted]
    # pooled pixels of every image in ``rows``, subsampled per image to keep it fast; image i's subsample
    # is drawn from its own generator, so every method and every table reads the same pixels of it
    values, truth = [], []
    for i in rows:
        flat_map, flat_gt = run.maps[i].ravel(), gts[i].ravel()
        pick = np.random.default_rng([seed, int(i)]).choice(flat_map.size, size=min(4000, flat_map.size), replace=False)
        pick = np.union1d(pick, np.flatnonzero(flat_gt))  # every artifact pixel
        values.append(flat_map[pick])
        truth.append(flat_gt[pick])
    pro = aupro_ragged([run.maps[i] for i in rows], [gts[i] for i in rows]) if corrupted else float("nan")
    return {"dice_at_tau": float(np.mean(dices)) if dices else float("nan"),
            "pixel_auroc": pixel_auroc(np.concatenate(values), np.concatenate(truth)), "aupro": pro}


def storage_of(table: pd.DataFrame) -> pd.Series | None:
    """How each image of a benchmark stored at varied pixel sizes was stored (``png, 1.5-2 mm``: its format
    and pixel size, in two bins), or None when every image is at 1 mm (nothing to tell apart)."""
    if "pixel_mm" not in table or (table["pixel_mm"].astype(float) == 1.0).all():
        return None
    coarse = table["pixel_mm"].astype(float) >= 1.5
    return table["format"] + np.where(coarse, ", 1.5-2 mm", ", 1-1.5 mm")


def summarise(runs: list[MethodRun], table: pd.DataFrame, benchmark_dir: Path, *, seed: int = 0) -> dict[str, pd.DataFrame]:
    """The tables of the module docstring: ``overall``, ``by_source``, ``by_kind``, ``by_severity``, and for
    a benchmark stored at varied pixel sizes ``by_storage`` (format and pixel size, :func:`storage_of`)."""
    labels = table["label"].to_numpy().astype(int)
    gts = [read_mask(benchmark_dir, f) for f in table["file"]]
    groupings = {"source": table["source"]}
    if (storage := storage_of(table)) is not None:
        groupings["storage"] = storage
    overall, by_kind, by_severity = [], [], []
    by_group: dict[str, list] = {column: [] for column in groupings}
    for run in runs:
        series = [(run.name, run.scores, run.flags)]
        if run.name == "seed" and np.isfinite(run.components["score_diffusion"]).all():
            series += [("seed: S_diffusion", run.components["score_diffusion"], None),
                       ("seed: E_AE", run.components["score_autoencoder"], None)]
        for name, scores, flags in series:
            everything = np.arange(len(labels))
            row = {"method": name, **_detection(labels, scores, flags)}
            if flags is not None:
                row.update(_localisation(run, gts, labels, everything, seed))
                row["seconds_per_image"] = float(np.median(run.seconds))
            overall.append(row)
            for column, values in groupings.items():
                for value, part in table.groupby(values):
                    rows = part.index.to_numpy()
                    entry = {"method": name, column: value, **_detection(labels[rows], scores[rows],
                                                                          None if flags is None else flags[rows])}
                    if flags is not None:
                        entry.update(_localisation(run, gts, labels, rows, seed))
                    by_group[column].append(entry)
            clean = labels == 0
            for column, sink in (("kind", by_kind), ("severity", by_severity)):
                for value, part in table[labels == 1].groupby(column):
                    rows = np.concatenate([part.index.to_numpy(), np.flatnonzero(clean)])
                    entry = {"method": name, column: value, "n": len(part),
                             "image_auroc": image_auroc(labels[rows], scores[rows])}
                    if flags is not None:
                        entry["recall_at_tau"] = float(np.mean(flags[part.index.to_numpy()]))
                        if run.maps[0] is not None:
                            entry["dice_at_tau"] = float(np.mean([dice(run.masks[i], gts[i]) for i in part.index]))
                    sink.append(entry)
    tables = {"overall": pd.DataFrame(overall), "by_source": pd.DataFrame(by_group["source"]),
              "by_kind": pd.DataFrame(by_kind), "by_severity": pd.DataFrame(by_severity)}
    if "storage" in by_group:
        tables["by_storage"] = pd.DataFrame(by_group["storage"])
    return tables


REPORT_TABLES = ("overall", "by_source", "by_storage", "by_kind", "by_severity", "unseen_volumes")


def write_report(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    """The tables of :func:`summarise` (and ``unseen_volumes``) as ``folder/<name>.csv``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for key in REPORT_TABLES:
        if key in tables:
            tables[key].to_csv(folder / f"{key}.csv", index=False)


def load_report(folder: Path) -> dict[str, pd.DataFrame] | None:
    """What :func:`write_report` wrote (``evaluate-realistic``), or None when there is no ``overall.csv``."""
    folder = Path(folder)
    if not (folder / "overall.csv").is_file():
        return None
    out = {}
    for key in REPORT_TABLES:
        path = folder / f"{key}.csv"
        if path.is_file() and path.stat().st_size > 1:
            out[key] = pd.read_csv(path, keep_default_na=False)
    return out


# Leave-one-kind-out: for each artifact kind of the evaluation simulator, the training corruptions
# closest to it (what a head trained without them has never seen anything like).
LOKO_LEAVE_OUT: dict[str, tuple[str, ...]] = {
    "blur": ("smoothing",),
    "checkerboard": ("grating",),
    "ringing": ("grating",),
    "lesion": ("blob",),
    "noise_patch": ("local_noise",),
    "dropout": ("intensity",),
    "bias_spot": ("intensity",),
    "duplication": ("pasted_patch", "foreign_patch"),
    "ghosting": ("pasted_patch", "foreign_patch"),
}


def loko_head_name(left_out: tuple[str, ...]) -> str:
    """The file stem of the head trained without ``left_out`` (``head_without_<a>+<b>``)."""
    return "head_without_" + "+".join(sorted(left_out))


def loko_table(scores: dict[str, np.ndarray], reference: np.ndarray, table: pd.DataFrame) -> pd.DataFrame:
    """Per artifact kind: image AUROC of that kind's images against every clean image, for the head
    trained without the kind's closest corruptions (``scores[loko_head_name(...)]``) and for the
    reference head trained on every corruption with the same recipe.

    Args:
        scores: per LOKO head file stem, its slice scores of every benchmark image (``table`` order).
        reference: the reference head's scores.
        table: the benchmark's ``labels.csv``.
    """
    labels = table["label"].to_numpy().astype(int)
    clean = np.flatnonzero(labels == 0)
    rows = []
    for kind, left_out in LOKO_LEAVE_OUT.items():
        part = np.flatnonzero((labels == 1) & (table["kind"].to_numpy() == kind))
        if not len(part) or loko_head_name(left_out) not in scores:
            continue
        pick = np.concatenate([part, clean])
        without = image_auroc(labels[pick], scores[loko_head_name(left_out)][pick])
        full = image_auroc(labels[pick], reference[pick])
        rows.append({"kind": kind, "left_out": " + ".join(left_out), "n": len(part),
                     "auroc_without": without, "auroc_all_kinds": full, "drop": full - without})
    return pd.DataFrame(rows)
