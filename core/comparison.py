"""``python -m core.cli evaluate --methods ...``: SAFEGEN and the baselines, one table, same benchmark, same run.

Every method is fitted on the real normal ``train`` slices only, calibrated on the 45 real
(un-augmented) ``calib`` slices (its own threshold flags at most 5 % of them, see
:mod:`core.baselines.base`) and scored on the simulated-artifact benchmark. Per method: image
AUROC, AUPRC, best F1 over thresholds, F1 and recall at its own threshold, false alarms on the
benchmark's clean slices, Dice of its mask at its threshold (mean over artifact images; an
unflagged image scores 0), pixel AUROC and AUPRO (pixel methods only), fit time and milliseconds
per slice; then image AUROC and Dice per artifact kind and per severity.

SAFEGEN's rows use its committed models and calibration (``combined``, ``autoencoder``,
``diffusion``), thresholded the same way (5 % of clean calibration slices).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.metrics import aupro, dice, f1_max, image_auprc, image_auroc, pixel_auroc
from core.reference import load_split

SAFEGEN_ROWS = {"combined": "safegen", "autoencoder": "safegen_autoencoder", "diffusion": "safegen_diffusion"}


def baseline_factories() -> dict:
    """``--method`` name -> a factory of the baseline (imported lazily)."""
    from core.baselines.iqm import IQMBaseline
    from core.baselines.padim import PaDiMBaseline
    from core.baselines.patchcore import PatchCoreBaseline
    from core.baselines.phanes import PHANESBaseline
    from core.baselines.spectral import LocalSpectralBaseline, SpectralBaseline

    return {"phanes": PHANESBaseline, "padim": PaDiMBaseline, "patchcore": PatchCoreBaseline,
            "mriqc_iqm": IQMBaseline, "spectral": SpectralBaseline, "spectral_local": LocalSpectralBaseline}


def method_names(spec: str) -> list[str]:
    """``all`` or a comma list -> method names (SAFEGEN's rows first)."""
    known = [*SAFEGEN_ROWS.values(), *baseline_factories()]
    names = known if spec.strip() == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    if unknown := [n for n in names if n not in known]:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(known)} or all")
    return names


@dataclass
class MethodResult:
    name: str
    title: str
    maps: np.ndarray | None
    scores: np.ndarray
    tau: float
    fit_seconds: float
    ms_per_slice: float
    differs: str = ""

    @property
    def masks(self) -> np.ndarray | None:
        if self.maps is None:
            return None
        return (self.maps > self.tau) & (self.scores > self.tau)[:, None, None]


def run_methods(names: list[str], benchmark: dict, reference_dir: Path, *, scorer=None, progress=None
                ) -> list[MethodResult]:
    """Fit, calibrate and score every named method on the benchmark's images."""
    from core.baselines.base import calibrate

    images = benchmark["images"]
    results = []
    safegen = [n for n in names if n in SAFEGEN_ROWS.values()]
    if safegen:
        from core.evaluation import variant_outputs
        from core.scoring import Scorer

        scorer = scorer or Scorer.load()
        start = time.perf_counter()
        outputs, _ = variant_outputs(scorer, images, progress=progress)
        ms = 1000 * (time.perf_counter() - start) / len(images)  # all variants share one scoring pass
        for out in outputs:
            name = SAFEGEN_ROWS.get(out.name)
            if name in safegen:
                results.append(MethodResult(name, f"SAFEGEN {out.description}", out.maps, out.scores, out.tau, 0.0, ms,
                                            "this project's detectors (see README, Detectors)"))
    others = [n for n in names if n not in SAFEGEN_ROWS.values()]
    if others:
        train = load_split(reference_dir, "train").images
        calib_split = load_split(reference_dir, "calib")
        calib = calib_split.images[calib_split.augmentation == 0]
        factories = baseline_factories()
        for name in others:
            start = time.perf_counter()
            method = factories[name]().fit(train)
            calibrated = calibrate(method, calib)
            fit = time.perf_counter() - start
            start = time.perf_counter()
            maps, scores = calibrated(images)
            ms = 1000 * (time.perf_counter() - start) / len(images)
            results.append(MethodResult(name, method.title, maps, scores, calibrated.tau, fit, ms, method.differs))
            if progress is not None:
                progress(len(images))
    order = {n: i for i, n in enumerate(names)}
    return sorted(results, key=lambda r: order[r.name])


def comparison_table(results: list[MethodResult], benchmark: dict) -> pd.DataFrame:
    """One row per method (see the module docstring)."""
    labels = benchmark["labels"].astype(int)
    gt = benchmark["masks"].astype(bool)
    artifact = labels == 1
    rows = []
    for r in results:
        flags = r.scores > r.tau
        tp, fp, fn = int(np.sum(flags & artifact)), int(np.sum(flags & ~artifact)), int(np.sum(~flags & artifact))
        row = {"method": r.name, "title": r.title, "auroc": image_auroc(labels, r.scores),
               "auprc": image_auprc(labels, r.scores), "f1_max": f1_max(labels, r.scores)[0],
               "f1_at_tau": 2 * tp / max(1, 2 * tp + fp + fn), "recall_at_tau": tp / max(1, tp + fn),
               "false_alarms_clean": fp / max(1, int(np.sum(~artifact))),
               "dice_at_tau": np.nan, "pixel_auroc": np.nan, "aupro": np.nan,
               "fit_seconds": r.fit_seconds, "ms_per_slice": r.ms_per_slice}
        if r.maps is not None:
            row["dice_at_tau"] = float(np.mean(dice(r.masks[artifact], gt[artifact], axis=(1, 2))))
            row["pixel_auroc"] = pixel_auroc(r.maps[artifact], gt[artifact])
            row["aupro"] = aupro(r.maps[artifact], gt[artifact])
        rows.append(row)
    return pd.DataFrame(rows).set_index("method")


def run_comparison(names: list[str], benchmark: dict, reference_dir: Path, out_dir: Path, *, scorer=None,
                   context: dict | None = None, progress=None) -> dict[str, pd.DataFrame]:
    """Score every method and write ``methods.csv``, the per-kind / per-severity tables, ``methods.md``
    and ``methods_auroc_per_kind.png`` to ``out_dir``; returns the tables."""
    from core.evaluation import breakdown_table, markdown_table

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = run_methods(names, benchmark, reference_dir, scorer=scorer, progress=progress)
    kinds, severities = benchmark["kinds"].astype(str), benchmark["severities"].astype(int)
    labels, gt = benchmark["labels"].astype(int), benchmark["masks"].astype(bool)
    tables = {
        "methods": comparison_table(results, benchmark),
        "methods_auroc_per_kind": breakdown_table(results, labels, gt, kinds, "auroc"),
        "methods_dice_per_kind": breakdown_table(results, labels, gt, kinds, "dice"),
        "methods_auroc_per_severity": breakdown_table(results, labels, gt, severities, "auroc"),
        "methods_dice_per_severity": breakdown_table(results, labels, gt, severities, "dice"),
    }
    for name, table in tables.items():
        table.to_csv(out_dir / f"{name}.csv")
    best = tables["methods_auroc_per_kind"].idxmax(axis=1)
    lines = ["# SAFEGEN and the baselines", "", f"{len(benchmark['images'])} benchmark images "
             f"({int(benchmark['labels'].sum())} with artifacts), {time.perf_counter() - start:.0f} s.", ""]
    lines += [f"- {k}: {v}" for k, v in (context or {}).items()]
    lines += ["", "## Overall", "", markdown_table(tables["methods"].drop(columns=["title"])), "",
              "## Image AUROC per artifact kind", "", markdown_table(tables["methods_auroc_per_kind"]), "",
              "Best method per kind: " + ", ".join(f"{k} {v}" for k, v in best.items()), "",
              "## Dice at each method's threshold per artifact kind", "",
              markdown_table(tables["methods_dice_per_kind"]), "",
              "## Per severity (image AUROC)", "", markdown_table(tables["methods_auroc_per_severity"]), "",
              "## What each baseline changes from its paper", ""]
    lines += [f"- **{r.name}** ({r.title}): {r.differs}" for r in results]
    (out_dir / "methods.md").write_text("\n".join(lines) + "\n")
    (out_dir / "methods_context.json").write_text(json.dumps({"methods": names, **(context or {})}, indent=1))
    _plot(tables["methods_auroc_per_kind"], out_dir / "methods_auroc_per_kind.png")
    return tables


def _plot(per_kind: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / max(1, per_kind.shape[1])
    x = np.arange(len(per_kind))
    for i, method in enumerate(per_kind.columns):
        ax.bar(x + i * width, per_kind[method], width, label=method)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x + 0.4 - width / 2, per_kind.index, rotation=30, ha="right")
    ax.set_ylabel("image AUROC")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, ncol=4)
    ax.set_title("Image AUROC per artifact kind (against all clean images)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
