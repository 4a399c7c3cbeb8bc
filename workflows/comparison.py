"""``python -m workflows.cli evaluate --methods ...``: SAFEGEN and the baselines, one table, same benchmark, same run.

Every method is fitted on the real normal ``train`` slices only, calibrated on the 45 real
(un-augmented) ``calib`` slices (its own threshold flags at most 5 % of them, see
:mod:`core.baselines.base`) and scored on the simulated-artifact benchmark. Per method: image
AUROC, AUPRC, best F1 over thresholds, F1 and recall at its own threshold, false alarms on the
benchmark's clean slices, Dice of its mask at its threshold (mean over artifact images; an
unflagged image scores 0), pixel AUROC and AUPRO (pixel methods only), fit time and milliseconds
per slice (the columns of :func:`core.benchmark.evaluation.summary_table`, plus ``n_images``, fit and speed);
then image AUROC and Dice per artifact kind and per severity. A slow baseline (``max_images`` set)
scores the benchmark's small subset only, and ``methods_subset.csv`` compares every method there.

SAFEGEN's rows use its committed models and calibration (``combined``, ``autoencoder``,
``diffusion``), thresholded the same way (5 % of clean calibration slices).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from core.baselines import factories
from core.baselines.scorer import fit_baseline
from core.benchmark.evaluation import VariantOutput, breakdown_table, small_subset, summary_table, variant_outputs
from core.scoring import Scorer
from core.tables import markdown_table
from core.types import SAFEGEN_METHOD

SAFEGEN_ROWS = {"combined": SAFEGEN_METHOD, "autoencoder": f"{SAFEGEN_METHOD}_autoencoder",
                "diffusion": f"{SAFEGEN_METHOD}_diffusion"}
SAFEGEN_DIFFERS = ("this project's detectors (see README, Detectors); trained once with `make models` (committed "
                   "weights), so no fit time here; its ms per slice is one pass that computes every SAFEGEN row "
                   "(diffusion, NLL, autoencoder and their combination)")


def method_names(spec: str) -> list[str]:
    """``all`` or a comma list -> method names (SAFEGEN's rows first)."""
    known = [*SAFEGEN_ROWS.values(), *factories()]
    names = known if spec.strip() == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    if unknown := [n for n in names if n not in known]:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(known)} or all")
    return names


@dataclass
class MethodResult(VariantOutput):
    """A method's calibrated maps (None: image-level), slice scores and own tau on benchmark images.

    ``index``: which benchmark images it scored (None = all of them; a slow method scores the
    :func:`core.benchmark.evaluation.small_subset` only, see ``Baseline.max_images``).
    """

    fit_seconds: float = 0.0
    ms_per_slice: float = 0.0
    differs: str = ""
    index: np.ndarray | None = None

    def restrict(self, index: np.ndarray) -> "MethodResult":
        """The result on benchmark images ``index`` (a subset of those it scored)."""
        own = np.arange(len(self.scores)) if self.index is None else self.index
        rows = np.searchsorted(own, index)
        if not np.array_equal(own[np.minimum(rows, len(own) - 1)], index):
            raise ValueError(f"{self.name} did not score every image asked for")
        return replace(self, maps=None if self.maps is None else self.maps[rows], scores=self.scores[rows],
                       index=np.asarray(index))


def _subset(benchmark: dict) -> np.ndarray:
    return small_subset(benchmark["labels"].astype(int), benchmark["kinds"].astype(str), benchmark["severities"])


def run_methods(names: list[str], benchmark: dict, reference_dir: Path, *, scorer=None, progress=None
                ) -> list[MethodResult]:
    """Fit, calibrate and score every named method on the benchmark's images (a slow baseline with
    ``max_images`` set scores the benchmark's small subset only)."""
    images = benchmark["images"]
    results = []
    safegen = [n for n in names if n in SAFEGEN_ROWS.values()]
    if safegen:
        scorer = scorer or Scorer.load()
        start = time.perf_counter()
        outputs, _ = variant_outputs(scorer, images, progress=progress)
        ms = 1000 * (time.perf_counter() - start) / len(images)  # all variants share one scoring pass
        for out in outputs:
            name = SAFEGEN_ROWS.get(out.name)
            if name in safegen:
                results.append(MethodResult(name, out.maps, out.scores, out.tau, f"SAFEGEN {out.description}",
                                            fit_seconds=float("nan"), ms_per_slice=ms, differs=SAFEGEN_DIFFERS))
    others = [n for n in names if n not in SAFEGEN_ROWS.values()]
    if others:
        for name in others:
            start = time.perf_counter()
            calibrated = fit_baseline(name, reference_dir)
            fit = time.perf_counter() - start
            method = calibrated.method
            index = _subset(benchmark) if getattr(method, "max_images", None) else None
            scored = images if index is None else images[index]
            start = time.perf_counter()
            maps, scores = calibrated(scored)
            ms = 1000 * (time.perf_counter() - start) / len(scored)
            results.append(MethodResult(name, maps, scores, calibrated.tau, method.title, fit_seconds=fit,
                                        ms_per_slice=ms, differs=method.differs, index=index))
            if progress is not None:
                progress(len(scored))
    order = {n: i for i, n in enumerate(names)}
    return sorted(results, key=lambda r: order[r.name])


def _view(result: MethodResult, benchmark: dict) -> tuple[dict, slice | np.ndarray]:
    """The benchmark arrays of the images ``result`` scored."""
    keep = slice(None) if result.index is None else result.index
    return {k: benchmark[k][keep] for k in ("labels", "masks", "kinds", "severities")}, keep


def comparison_table(results: list[MethodResult], benchmark: dict) -> pd.DataFrame:
    """One row per method, each on the images it scored (``n_images``): :func:`core.benchmark.evaluation.summary_table`'s
    columns (detection at the method's own tau, localisation) plus its title, fit time and ms per slice."""
    rows = []
    for r in results:
        view, _ = _view(r, benchmark)
        row = summary_table([r], view["labels"].astype(int), view["masks"].astype(bool), None).iloc[0]
        rows.append({"method": r.name, "title": r.description, "n_images": len(r.scores), **row.to_dict(),
                     "fit_seconds": r.fit_seconds, "ms_per_slice": r.ms_per_slice})
    return pd.DataFrame(rows).set_index("method")


def per_group_table(results: list[MethodResult], benchmark: dict, group: str, metric: str) -> pd.DataFrame:
    """:func:`core.benchmark.evaluation.breakdown_table` per artifact ``group`` ("kinds" or "severities"), each
    method on the images it scored."""
    columns = []
    for r in results:
        view, _ = _view(r, benchmark)
        groups = view[group].astype(str) if group == "kinds" else view[group].astype(int)
        columns.append(breakdown_table([r], view["labels"].astype(int), view["masks"].astype(bool), groups, metric))
    return pd.concat(columns, axis=1)


def run_comparison(names: list[str], benchmark: dict, reference_dir: Path, out_dir: Path, *, scorer=None,
                   context: dict | None = None, progress=None) -> dict[str, pd.DataFrame]:
    """Score every method and write ``methods.csv``, the per-kind / per-severity tables, ``methods.md``
    and ``methods_auroc_per_kind.png`` to ``out_dir``; returns the tables.

    When a slow method scored the small subset only, ``methods_subset.csv`` compares every method
    on exactly those images, so its row can be read against SAFEGEN's on the same images.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = run_methods(names, benchmark, reference_dir, scorer=scorer, progress=progress)
    tables = {
        "methods": comparison_table(results, benchmark),
        "methods_auroc_per_kind": per_group_table(results, benchmark, "kinds", "auroc"),
        "methods_dice_per_kind": per_group_table(results, benchmark, "kinds", "dice"),
        "methods_auroc_per_severity": per_group_table(results, benchmark, "severities", "auroc"),
        "methods_dice_per_severity": per_group_table(results, benchmark, "severities", "dice"),
    }
    partial = [r for r in results if r.index is not None]
    if partial:
        subset = partial[0].index
        tables["methods_subset"] = comparison_table([r.restrict(subset) for r in results], benchmark)
    for name, table in tables.items():
        table.to_csv(out_dir / f"{name}.csv")
    # "best" among the methods that scored every image: a small-subset method's per-kind AUROC rests
    # on 3 artifact images per kind and is not comparable
    best = tables["methods_auroc_per_kind"].drop(columns=[r.name for r in partial]).idxmax(axis=1)
    lines = ["# SAFEGEN and the baselines", "", f"{len(benchmark['images'])} benchmark images "
             f"({int(benchmark['labels'].sum())} with artifacts), {time.perf_counter() - start:.0f} s.", ""]
    lines += [f"- {k}: {v}" for k, v in (context or {}).items()]
    lines += ["", "## Overall", "", markdown_table(tables["methods"].drop(columns=["title"])), ""]
    if partial:
        lines += [f"## On the small subset that {', '.join(r.name for r in partial)} scored "
                  f"({len(partial[0].index)} images: one artifact image per kind and severity, as many clean)", "",
                  markdown_table(tables["methods_subset"].drop(columns=["title"])), ""]
    lines += ["## Image AUROC per artifact kind", "", markdown_table(tables["methods_auroc_per_kind"]), "",
              "Best method per kind: " + ", ".join(f"{k} {v}" for k, v in best.items())
              + (f" ({', '.join(r.name for r in partial)} left out: its column rests on the small subset)"
                 if partial else ""), "",
              "## Dice at each method's threshold per artifact kind", "",
              markdown_table(tables["methods_dice_per_kind"]), "",
              "## Per severity (image AUROC)", "", markdown_table(tables["methods_auroc_per_severity"]), "",
              "## What each baseline changes from its paper", ""]
    lines += [f"- **{r.name}** ({r.description}): {r.differs}" for r in results]
    (out_dir / "methods.md").write_text("\n".join(lines) + "\n")
    (out_dir / "methods_context.json").write_text(json.dumps({"methods": names, **(context or {})}, indent=1))
    _plot(tables["methods_auroc_per_kind"], out_dir / "methods_auroc_per_kind.png", [r.name for r in partial])
    return tables


def _plot(per_kind: pd.DataFrame, path: Path, subset_only: list[str] = ()) -> None:
    """Grouped bars per artifact kind, one distinct colour per method (tab20: up to 20); a method
    scored on the small subset only is hatched and labelled so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / max(1, per_kind.shape[1])
    x = np.arange(len(per_kind))
    colours = plt.get_cmap("tab20" if per_kind.shape[1] > 10 else "tab10")
    for i, method in enumerate(per_kind.columns):
        partial = method in subset_only
        ax.bar(x + i * width, per_kind[method], width, color=colours(i), hatch="///" if partial else None,
               edgecolor="white" if partial else None, label=f"{method} (small subset)" if partial else method)
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_xticks(x + 0.4 - width / 2, per_kind.index, rotation=30, ha="right")
    ax.set_ylabel("image AUROC")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, ncol=4)
    ax.set_title("Image AUROC per artifact kind (against all clean images)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
