"""``python -m workflows.cli report GENERATED [--real REAL] [--out OUT]``: a generator's report card.

The science is :mod:`core.generator_report` (fidelity and coverage, diversity, memorisation, on SAFEGEN's
own networks' features); this module reads the files, adds SAFEGEN's per-image artifact score, and
writes the report (:func:`make_report`) or hands it to the dashboard in memory (:func:`report_card`).

Generated images: every file of :data:`core.io.ACCEPTED_SUFFIXES` in GENERATED, screened first as
``score`` screens a folder (:func:`workflows.score_folder.score_folder`, into OUT/:data:`SCREENING`: its
``scores.csv``, heatmaps and masks), in this process or sharded over ``--workers`` processes or a Ray cluster
(``--ray-address``), resumable (``--resume``); the card then takes each file's artifact score from that
``scores.csv``, as the dashboard's card takes it from the Batch screening table, so the engine never changes
the report. 2-D images only (a 3-D volume gets an error row). Groups: the ``group`` column of
GENERATED/manifest.csv where there is one, else one group :data:`ALL`.

Real images, two ways (:class:`RealSet`):

* the profile's reference (default): fidelity, coverage and diversity against its ``train`` split (the
  images SAFEGEN's models and the demo's generators learned from), copies searched in the same split, and
  the copy threshold calibrated on its ``val`` and ``calib`` splits (real slices no generator saw), each
  compared with the training slices outside its own volume's neighbourhood (:data:`NEIGHBOUR_RULE`);
* ``--real REAL``, a folder of real images: the same measures against it, copies searched in it, but no
  volume or slice ids, so the threshold is each real image's similarity to its nearest *other* real image
  of the folder (:data:`FOLDER_COPY_RULE` says what that can and cannot catch).

Outputs in OUT: ``screening/`` (above), ``report.md``, ``report.json`` (strict JSON), ``groups.csv``, ``images.csv`` (per image:
group, file, artifact score, flagged, nearest training image, NCC, cosine, likely copy), and
``precision_recall.png``, ``similarity.png``, ``copies.png`` (the likely copies beside their training twin,
written when there are any).

Exit status: 0 when the report was written, 2 for bad input (no folder, no readable 2-D image, a real
folder with too few images, missing reference data or models).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core import generator_report as gr
from core.benchmark.generated_set import read_manifest
from core.export import spreadsheet_safe
from core.io import ACCEPTED_SUFFIXES, load_volume
from core.jsonable import json_safe, records
from core.profiles import get_profile
from core.reference import ensure_reference, load_split, split_gap
from core.tables import markdown_table
from core.types import Volume
from workflows.score_files import score_files
from workflows.score_folder import find_inputs, score_folder

ALL = "all"  # the one group of a set without manifest.csv
UNLISTED = "(not in manifest.csv)"  # the group of a file manifest.csv does not list
HELDOUT_SPLITS = ("val", "calib")
WORST_SHOWN = 8  # highest artifact scores listed in the report
COPIES_SHOWN = 12  # likely copies drawn beside their twin in copies.png
EXIT_BAD_INPUT = 2
REPORT_STAGES = 3  # progress steps after the files: real set, measures, outputs
SCREENING = "screening"  # OUT's folder of the artifact screening: scores.csv, heatmaps/, masks/ (as `score` writes)
IMAGE_COLUMNS = ("group", "file", "artifact_score", "flagged", "nearest_training", "ncc", "cosine", "copy_margin",
                 "likely_copy", "error")

# The default exclusion of the copy threshold's calibration. Held-out real images stand for a
# legitimately new image, so they must be as far from the training set as a new image of the *same*
# subjects can be, no nearer and no farther. The reference split keeps every held-out slice more than
# `gap` slices from every training slice of its volume (core.reference.assign_splits), so a new slice of a
# training subject is at best gap + 1 slices from a training slice: same-volume pairs within the gap are
# excluded, the rest count. Excluding the whole volume instead (each held-out slice compared only with the
# other subject's slices) would calibrate on a *different person*: with two reference volumes that
# threshold sits below the similarity of any new slice of a training subject to its neighbours, and every
# such slice (the demo's real controls) would be called a copy.
NEIGHBOUR_RULE = ("each real held-out slice (reference val + calib splits) is compared with every training slice "
                  "except those of its own volume within {gap} slices (the split's gap: a new slice of a training "
                  "subject is never nearer than that); the threshold is the highest of their nearest similarities")
FOLDER_COPY_RULE = ("the real folder has no volume or slice ids, so the threshold is each real image's similarity to "
                    "its nearest *other* image of the folder (the highest of them). It catches exact and near-exact "
                    "copies; when the folder holds neighbouring slices of the same volumes the threshold is as high "
                    "as neighbouring slices are alike, so a generated image only as close to a training image as "
                    "its neighbouring slice is passes unflagged. Give one slice per volume, or use the profile's "
                    "reference (no --real), for a sharper threshold")
FEATURE_NOTE = ("Features: {layer} (a network SAFEGEN trained on the profile's real reference subjects). "
                "KID, FID, precision and recall on SAFEGEN's own features are not comparable with published FIDs on "
                "Inception-v3 or RadImageNet features: compare them only between groups of this report, or between "
                "reports of the same profile and weights.")

Progress = Callable[[int, int, str], None]  # (steps done, steps in all, what is being done)


@dataclass(frozen=True)
class RealSet:
    """Real images a generated set is measured against, on the model grid.

    ``images`` are the real set of fidelity, coverage and diversity and the training set searched for
    copies; ``heldout_*`` calibrate the copy threshold (:func:`core.generator_report.calibrate_copies`).
    """

    images: np.ndarray  # (M, 128, 128) float32 in [0, 1]
    names: list[str]  # where each came from ("mni152 slice 74", a file name)
    volume_ids: np.ndarray  # (M,)
    slices: np.ndarray | None  # (M,) slice index in the volume, None when unknown
    heldout_images: np.ndarray
    heldout_volume_ids: np.ndarray
    heldout_slices: np.ndarray | None
    neighbour_slices: int | None
    source: str  # in words
    copy_rule: str  # how the copy threshold is calibrated, and what it can and cannot catch


def reference_real_set(profile: str = "mri_t1") -> RealSet:
    """The profile's reference: ``train`` (real set, copies) and ``val`` + ``calib`` (copy threshold).

    A checkout without it (a fresh `make run`) builds it first, as `make reference` does (seed 0, a few
    seconds from the installed reference subjects).

    Raises:
        FileNotFoundError: the profile's reference subjects are not installed.
    """
    profile = get_profile(profile)
    ensure_reference(profile.reference_dir, profile)
    train = load_split(profile.reference_dir, "train")
    held = [load_split(profile.reference_dir, split) for split in HELDOUT_SPLITS]
    gap = split_gap(profile.reference_dir)
    names = [f"{s} slice {int(i)}" + (f" (augmented #{int(a)})" if a else "")
             for s, i, a in zip(train.subject, train.slice_index, train.augmentation, strict=True)]
    plain = int((train.augmentation == 0).sum())
    return RealSet(
        images=train.images, names=names, volume_ids=train.subject, slices=train.slice_index,
        heldout_images=np.concatenate([h.images for h in held]),
        heldout_volume_ids=np.concatenate([h.subject for h in held]),
        heldout_slices=np.concatenate([h.slice_index for h in held]), neighbour_slices=gap,
        source=(f"the {profile.name} reference's train split ({len(train.images)} images: {plain} real slices of "
                f"{', '.join(dict.fromkeys(train.subject.tolist()))} and their augmented copies)"),
        copy_rule=NEIGHBOUR_RULE.format(gap=gap),
    )


def folder_real_set(real_dir: Path, profile: str = "mri_t1") -> tuple[RealSet, list[str]]:
    """A folder of real 2-D images as the real set, and the messages of the files that could not be read.

    Raises:
        ValueError: fewer than 4 readable images (precision / recall's k = 3 needs more than 3).
    """
    real_dir = Path(real_dir)
    items = [(p.name, lambda p=p: load_volume(p)) for p in find_inputs(real_dir)]
    names, images, skipped = [], [], []
    for file in score_files(items, None, load=_load_two_d):
        if file.error is None:
            names.append(file.path[0])
            images.append(gr.prepare_volume(file.volume, profile))
        else:
            skipped.append(f"{file.path[0]}: {file.error}")
    if len(images) < 4:
        raise ValueError(f"--real {real_dir} holds {len(images)} readable 2-D image(s) of "
                         f"{', '.join(ACCEPTED_SUFFIXES)}; the report needs at least 4")
    stack = np.stack(images)
    ids = np.array([f"image {i}" for i in range(len(stack))])  # every image its own volume: leave one out
    return RealSet(images=stack, names=names, volume_ids=ids, slices=None, heldout_images=stack,
                   heldout_volume_ids=ids, heldout_slices=None, neighbour_slices=None,
                   source=f"the folder {real_dir} ({len(stack)} images)", copy_rule=FOLDER_COPY_RULE), skipped


def calibrate(real: RealSet, encoder: gr.FeatureEncoder) -> gr.CopyCalibration:
    """The copy thresholds of ``real`` (the slow, reusable part of a report: the dashboard caches it), with
    ``encoder`` standardised on ``real.images`` as the card's."""
    train_feats = gr.image_features(real.images, encoder=encoder)
    heldout_feats = gr.image_features(real.heldout_images, encoder=encoder)
    return gr.calibrate_copies(real.heldout_images, heldout_feats, real.heldout_volume_ids, real.images, train_feats,
                               real.volume_ids, heldout_slices=real.heldout_slices, training_slices=real.slices,
                               neighbour_slices=real.neighbour_slices)


def _load_two_d(item: tuple[str, Callable[[], Volume]]) -> Volume:
    """Load a ``(name, load)`` item, refusing a 3-D volume before it is scored."""
    volume = item[1]()
    if volume.is_3d:
        raise ValueError(f"{item[0]} is a 3-D volume; the generator report takes 2-D images (slices)")
    return volume


def group_of(names: Sequence[str], manifest: pd.DataFrame | None) -> list[str]:
    """Each file's group: its ``manifest.csv`` group, :data:`UNLISTED` when the manifest does not list it,
    :data:`ALL` without a manifest."""
    if manifest is None:
        return [ALL] * len(names)
    groups = dict(zip(manifest["file"], manifest["group"], strict=True))
    return [groups.get(name) or UNLISTED for name in names]


def in_manifest_order(items: Sequence[tuple[str, Callable[[], Volume]]],
                      manifest: pd.DataFrame | None) -> list[tuple[str, Callable[[], Volume]]]:
    """``items`` with the files ``manifest.csv`` lists first, in its order (so the groups keep its order),
    the others after them in their own order."""
    if manifest is None:
        return list(items)
    position = {name: i for i, name in enumerate(manifest["file"])}
    return sorted(items, key=lambda item: position.get(item[0], len(position)))  # stable: the rest keep order


def read_generated(items: Sequence[tuple[str, Callable[[], Volume]]], groups: Sequence[str], *, profile: str,
                   scored: pd.DataFrame, progress: Callable[[str], None] | None = None,
                   ) -> tuple[pd.DataFrame, np.ndarray]:
    """Load the generated images (through :func:`workflows.score_files.score_files`) with their artifact scores
    from a screening of them.

    Args:
        items: a display name and a zero-argument loader per file.
        groups: the group of each item.
        profile: whose normalisation puts the images on the model grid.
        scored: the screening's table, one row per file (``file``, ``score``, ``flag``, ``error``): the Batch
            screening table in the dashboard, :func:`screening_table` of ``scores.csv`` in :func:`make_report`.
        progress: called with each file's name after it is done.

    Returns:
        The table of :data:`IMAGE_COLUMNS` (artifact columns filled, one row per item) and the
        ``(N_ok, 128, 128)`` images of its rows without an error, in order.
    """
    by_name = scored.set_index("file")[["score", "flag", "error"]].to_dict("index")
    rows, images = [], []
    for file, group in zip(score_files(items, None, load=_load_two_d), groups, strict=True):
        name = file.path[0]
        row = {**dict.fromkeys(IMAGE_COLUMNS), "group": group, "file": name, "error": file.error or "",
               "artifact_score": np.nan, "flagged": False, "likely_copy": False}
        if name in by_name:
            screened = by_name[name]
            row.update(artifact_score=float(screened["score"]), flagged=bool(screened["flag"]),
                       error=row["error"] or screened["error"])
        if not row["error"]:
            try:
                images.append(gr.prepare_volume(file.volume, profile))
            except Exception as error:  # one bad file costs only its own row
                row["error"] = f"{type(error).__name__}: {error}"
        rows.append(row)
        if progress is not None:
            progress(name)
    table = pd.DataFrame(rows, columns=list(IMAGE_COLUMNS))
    stack = np.stack(images) if images else np.zeros((0, 128, 128), np.float32)
    return table, stack


@dataclass
class ReportCard:
    """A generator report card: the science's report, the per-image and per-group tables, and what it
    was measured against."""

    report: gr.GeneratorReport
    files: pd.DataFrame  # images.csv: one row per file (IMAGE_COLUMNS)
    groups: pd.DataFrame  # groups.csv: one row per group
    real: RealSet
    generated: np.ndarray  # (N_ok, 128, 128): the files without an error, in the table's order
    method: str  # the artifact score's detector
    false_alarm_rate: float  # the configured share of real clean slices flagged
    source: str  # the generated set, in words
    seconds: float = float("nan")

    @property
    def ok(self) -> pd.DataFrame:
        return self.files[self.files["error"] == ""]

    def copies(self) -> list[dict]:
        """The likely copies, highest NCC first: generated file, group, images and their similarity."""
        out = []
        ok = self.ok.reset_index(drop=True)
        for group in self.report.groups:
            for copy in group.copies:
                out.append({"file": ok.loc[copy.generated_index, "file"], "group": group.group,
                            "training": self.real.names[copy.training_index], "ncc": copy.pixel_ncc,
                            "cosine": copy.feature_cosine,
                            "margin": copy.pixel_ncc - self.report.calibration.pixel_threshold,
                            "generated_image": self.generated[copy.generated_index],
                            "training_image": self.real.images[copy.training_index]})
        return sorted(out, key=lambda c: -c["ncc"])

    def markdown(self) -> str:
        """``report.md``: one table per section, in plain words."""
        report, cal = self.report, self.report.calibration
        groups = self.groups.set_index("group")
        n_error = int((self.files["error"] != "").sum())
        lines = [
            "# Generator report card", "",
            f"Generated images: {self.source}, {len(self.files)} file(s) in {len(groups)} group(s)"
            + (f", {n_error} could not be read (listed at the end)" if n_error else "") + ".",
            f"Real images: {self.real.source}.", "",
            FEATURE_NOTE.format(layer=report.feature_layer), "",
            "## Fidelity and coverage", "",
            "KID (unbiased MMD² with a cubic kernel, ± its jackknife standard error) and FID: lower is closer to the "
            "real set. Precision: the share of generated images inside the real images' manifold (k = 3 nearest "
            "neighbours), i.e. fidelity; recall: the share of real images inside the generated images' manifold, i.e. "
            "coverage; higher is better. FID is biased upwards with fewer images than features (the number after the "
            "arrow above): read it beside KID. Groups of 3 images or fewer get a dash.", "",
            markdown_table(groups[["images", "KID", "KID SE", "FID", "precision", "recall"]], digits=4), "",
            "## Diversity", "",
            "Mean MS-SSIM of random pairs of images within a group (higher = the images are more alike, less "
            f"diverse), against {report.real_ms_ssim.mean:.3f} ± {report.real_ms_ssim.se:.3f} for "
            f"{report.real_ms_ssim.pairs} pairs of real images. A mode-collapse warning means the group's pairs are "
            "more alike than real pairs by more than one standard deviation of the real pairs' values (and beyond "
            "2 standard errors). Noise lowers MS-SSIM and blur raises it: read it with KID.", "",
            markdown_table(groups[["images", "MS-SSIM pairs", "MS-SSIM", "MS-SSIM SE", "mode collapse"]]), "",
            "## Memorisation: likely copies of training images", "",
            f"Each generated image's nearest training image by normalised cross-correlation of pixels (the best "
            f"over shifts of up to {gr.COPY_MAX_SHIFT_PX} px) and, reported beside it, by cosine of the features. The "
            f"copy threshold, NCC {cal.pixel_threshold:.4f} (feature cosine {cal.feature_threshold:.4f}, not used to "
            f"decide), comes from {len(cal.heldout_pixel.similarity)} real images: {self.real.copy_rule}. An image "
            "above it is more like a training image than any real image not in the training set is: a likely copy. "
            "Margin: the group's highest NCC minus the threshold (> 0: flagged).", "",
            markdown_table(groups[["images", "likely copies", "copy share", "highest NCC", "copy margin"]], digits=4),
            "",
        ]
        copies = self.copies()
        if copies:
            lines += ["Likely copies (copies.png shows them beside their training twin):", "",
                      markdown_table(pd.DataFrame([{k: c[k] for k in ("file", "group", "training", "ncc", "cosine",
                                                                          "margin")} for c in copies]), digits=4), ""]
        else:
            lines += ["No likely copy.", ""]
        lines += [
            "## Artifacts: SAFEGEN's per-image score", "",
            f"Score of the {self.method} detector; an image is flagged above its threshold τ, which flags "
            f"{self.false_alarm_rate:.0%} of real clean slices. A group flagged far more often than that holds images "
            "unlike real ones.", "",
            markdown_table(groups[["scored", "flagged", "flag rate", "median score"]]), "",
            f"Highest scores ({min(WORST_SHOWN, len(self.ok))} of {len(self.ok)}):", "",
            markdown_table(self.ok.sort_values("artifact_score", ascending=False).head(WORST_SHOWN)
                           [["file", "group", "artifact_score", "flagged"]].set_index("file")), "",
        ]
        if n_error:
            lines += ["## Files that could not be read", "",
                      markdown_table(self.files[self.files["error"] != ""][["file", "error"]].set_index("file")), ""]
        lines += ["Figures: precision_recall.png (precision against recall per group), similarity.png (nearest-"
                  "training NCC of the generated and the held-out real images, with the threshold)"
                  + (", copies.png (likely copies beside their training twin)" if copies else "") + ".", ""]
        return "\n".join(lines)

    def as_json(self) -> dict:
        """``report.json``'s content (JSON-safe: NaN -> null)."""
        report, cal = self.report, self.report.calibration
        return json_safe({
            "generated": self.source, "real": self.real.source, "feature_layer": report.feature_layer,
            "notes": [*report.notes, FEATURE_NOTE.format(layer=report.feature_layer)],
            "real_images": report.real_n,
            "real_ms_ssim": {"mean": report.real_ms_ssim.mean, "sd": report.real_ms_ssim.sd,
                             "se": report.real_ms_ssim.se, "pairs": report.real_ms_ssim.pairs},
            "copy_threshold": {"pixel_ncc": cal.pixel_threshold, "feature_cosine": cal.feature_threshold,
                               "calibration_images": len(cal.heldout_pixel.similarity),
                               "neighbour_slices": self.real.neighbour_slices, "rule": self.real.copy_rule,
                               "max_shift_px": gr.COPY_MAX_SHIFT_PX},
            "artifacts": {"method": self.method, "false_alarm_rate": self.false_alarm_rate},
            "groups": records(self.groups),
            "likely_copies": [{k: c[k] for k in ("file", "group", "training", "ncc", "cosine", "margin")}
                              for c in self.copies()],
            "images": records(self.files),
            "seconds": self.seconds,
        })


def report_card(files: pd.DataFrame, images: np.ndarray, real: RealSet, *, profile: str = "mri_t1",
                calibration: gr.CopyCalibration | None = None, encoder=None, method: str = "safegen",
                false_alarm_rate: float = float("nan"), source: str = "", seed: int = 0) -> ReportCard:
    """The report card of loaded generated images (:func:`read_generated`) against ``real``.

    Args:
        files: :func:`read_generated`'s table; its copy columns are filled here.
        images: the images of its rows without an error.
        calibration: ``real``'s copy thresholds (:func:`calibrate`); None: calibrated here.
        encoder: the feature network standardised on ``real.images`` (:func:`core.generator_report.load_feature_encoder`,
            then ``standardised_on``), the one ``calibration`` was made with; None: made here.
    """
    start = time.perf_counter()
    files = files.copy()
    ok = np.flatnonzero(files["error"].to_numpy() == "")
    if len(ok) == 0:
        raise ValueError("no generated image could be read")
    encoder = encoder or gr.load_feature_encoder(profile).standardised_on(real.images)
    calibration = calibration or calibrate(real, encoder)
    report = gr.build_report(images, files["group"].to_numpy()[ok], real.images, train_images=real.images,
                             training_volume_ids=real.volume_ids, heldout_images=real.heldout_images,
                             heldout_volume_ids=real.heldout_volume_ids, training_slices=real.slices,
                             heldout_slices=real.heldout_slices, neighbour_slices=real.neighbour_slices,
                             encoder=encoder, calibration=calibration, seed=seed)
    check = report.copy_check
    files = files.astype({"nearest_training": object, "ncc": float, "cosine": float, "copy_margin": float})
    files.loc[ok, "nearest_training"] = [real.names[i] for i in check.pixel.index]
    files.loc[ok, "ncc"] = check.pixel.similarity
    files.loc[ok, "cosine"] = check.feature.similarity
    files.loc[ok, "copy_margin"] = check.margin
    files.loc[ok, "likely_copy"] = check.flagged
    files["flagged"] = files["flagged"].astype(bool)
    files["likely_copy"] = files["likely_copy"].astype(bool)
    rows = []
    for group in report.groups:
        part = files.iloc[ok][files["group"].to_numpy()[ok] == group.group]
        scored = part[part["artifact_score"].notna()]
        diversity = group.ms_ssim
        rows.append({
            "group": group.group, "images": group.n, "KID": group.kid, "KID SE": group.kid_se, "FID": group.fid,
            "precision": group.precision, "recall": group.recall,
            "MS-SSIM pairs": diversity.pairs if diversity else 0,
            "MS-SSIM": diversity.mean if diversity else np.nan, "MS-SSIM SE": diversity.se if diversity else np.nan,
            "mode collapse": "yes" if group.mode_collapse else "no",
            "likely copies": len(group.copies), "copy share": group.copy_share,
            "highest NCC": float(part["ncc"].max()), "copy margin": float(part["ncc"].max()) - calibration.pixel_threshold,
            "scored": len(scored), "flagged": int(scored["flagged"].sum()),
            "flag rate": float(scored["flagged"].mean()) if len(scored) else np.nan,
            "median score": float(scored["artifact_score"].median()) if len(scored) else np.nan,
        })
    return ReportCard(report, files, pd.DataFrame(rows), real, images, method, float(false_alarm_rate), source,
                      time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def write_report(card: ReportCard, out_dir: Path) -> list[Path]:
    """Write ``card`` into ``out_dir`` (see the module docstring); returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / name for name in ("report.md", "report.json", "groups.csv", "images.csv",
                                           "precision_recall.png", "similarity.png")]
    written[0].write_text(card.markdown())
    written[1].write_text(json.dumps(card.as_json(), indent=2, allow_nan=False))
    spreadsheet_safe(card.groups).to_csv(written[2], index=False, float_format="%.6g")
    spreadsheet_safe(card.files).to_csv(written[3], index=False, float_format="%.6g")
    _plot_precision_recall(card, written[4])
    _plot_similarity(card, written[5])
    if card.copies():
        written.append(out_dir / "copies.png")
        _plot_copies(card, written[-1])
    return written


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_precision_recall(card: ReportCard, path: Path) -> None:
    """Precision against recall, one labelled point per group."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    colours = plt.get_cmap("tab10")
    for i, row in card.groups.dropna(subset=["precision", "recall"]).iterrows():
        ax.scatter(row["recall"], row["precision"], s=60, color=colours(i % 10), label=row["group"])
        ax.annotate(row["group"], (row["recall"], row["precision"]), textcoords="offset points", xytext=(5, 5),
                    fontsize=8)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("recall (coverage of the real images)")
    ax.set_ylabel("precision (fidelity)")
    ax.set_title("Improved precision / recall per group (k = 3)\non SAFEGEN features", fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_similarity(card: ReportCard, path: Path) -> None:
    """Nearest-training NCC of the generated images and of the real held-out images, with the threshold."""
    plt = _pyplot()
    cal = card.report.calibration
    generated = card.report.copy_check.pixel.similarity
    held = cal.heldout_pixel.similarity
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(min(held.min(), generated.min()), 1.0, 40)
    ax.hist(held, bins=bins, alpha=0.6, color="#7f8c8d", label=f"real held-out images ({len(held)})")
    ax.hist(generated, bins=bins, alpha=0.7, color="#1f5fbf", label=f"generated images ({len(generated)})")
    ax.axvline(cal.pixel_threshold, color="#c0392b", ls="--", label=f"copy threshold {cal.pixel_threshold:.4f}")
    ax.set_xlabel("NCC with the nearest training image")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    ax.set_title("Similarity to the training set (above the threshold: likely copy)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_copies(card: ReportCard, path: Path) -> None:
    """The likely copies (up to :data:`COPIES_SHOWN`), each beside its training twin."""
    plt = _pyplot()
    copies = card.copies()[:COPIES_SHOWN]
    fig, axes = plt.subplots(len(copies), 2, figsize=(5, 2.6 * len(copies)), squeeze=False)
    for (left, right), copy in zip(axes, copies, strict=True):
        left.imshow(copy["generated_image"], cmap="gray", vmin=0, vmax=1)
        left.set_title(f"{copy['file']} ({copy['group']})", fontsize=7)
        right.imshow(copy["training_image"], cmap="gray", vmin=0, vmax=1)
        right.set_title(f"training: {copy['training']}\nNCC {copy['ncc']:.4f}", fontsize=7)
        for ax in (left, right):
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def screening_table(scores_csv: Path) -> pd.DataFrame:
    """A ``scores.csv`` as the card reads a screening: ``file``, ``score`` (float, NaN when not scored),
    ``flag`` (bool), ``error``."""
    table = pd.read_csv(scores_csv, dtype=str, keep_default_na=False)
    return pd.DataFrame({"file": table["file"], "score": pd.to_numeric(table["score"], errors="coerce"),
                         "flag": table["flag"] == "1", "error": table["error"]})


def make_report(generated_dir: Path, out_dir: Path, *, real_dir: Path | None = None, profile: str = "mri_t1",
                models_dir: Path | None = None, pixel_mm: float | None = None, seed: int = 0,
                workers: int = 1, ray_address: str | None = None, resume: bool = False,
                progress: Progress | None = None, log: Callable[[str], None] | None = None) -> int:
    """The report card of the images in ``generated_dir``, written to ``out_dir``; returns the exit status.

    Args:
        generated_dir: a folder of generated 2-D images (optionally with ``manifest.csv``).
        out_dir: the report's folder (made if missing).
        real_dir: a folder of real images (see :func:`folder_real_set`); None: the profile's reference.
        profile: the profile whose detector scores the images and whose autoencoder gives the features.
        models_dir: the weights' folder (default the profile's).
        pixel_mm: the pixel size of 2-D images that state none (the artifact score; the report's measures
            work on the model grid and do not depend on it).
        workers, ray_address, resume: how the artifact screening runs (:func:`workflows.score_folder.score_folder`:
            local processes, a Ray cluster, keeping a cut run's rows); the report is the same either way.
        progress: called with ``(steps done, steps in all, what)`` while the card is made (the screening
            draws its own bar).
        log: where error lines (``error: ...``) and the closing summary go (default: standard error).
    """
    from core.head_scoring import load_detector

    log = log or (lambda line: print(line, file=sys.stderr))

    start = time.perf_counter()
    generated_dir = Path(generated_dir)
    if not generated_dir.is_dir():
        log(f"error: {generated_dir} is not a folder")
        return EXIT_BAD_INPUT
    if real_dir is not None and not Path(real_dir).is_dir():
        log(f"error: --real {real_dir} is not a folder")
        return EXIT_BAD_INPUT
    paths = find_inputs(generated_dir)
    if not paths:
        log(f"error: {generated_dir} holds no {', '.join(ACCEPTED_SUFFIXES)} files")
        return EXIT_BAD_INPUT
    total, done = len(paths) + REPORT_STAGES, 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, what)

    try:
        profile = get_profile(profile).name
        real, skipped = (reference_real_set(profile), []) if real_dir is None else folder_real_set(real_dir, profile)
        scorer = load_detector(models_dir, profile=profile)
        encoder = gr.load_feature_encoder(profile, models_dir)
    except (ValueError, FileNotFoundError) as error:
        log(f"error: {error}")
        return EXIT_BAD_INPUT
    for message in skipped:
        log(f"warning: real image skipped: {message}")
    encoder = encoder.standardised_on(real.images)
    screening = Path(out_dir) / SCREENING
    status = score_folder(generated_dir, screening, scorer=scorer, profile=profile, pixel_mm=pixel_mm,
                          workers=workers, ray_address=ray_address, resume=resume)
    if not (screening / "scores.csv").is_file():  # refused before any file was scored; it said why
        return status
    step("real images")
    manifest = read_manifest(generated_dir)
    items = in_manifest_order([(p.name, lambda p=p: load_volume(p)) for p in paths], manifest)
    files, images = read_generated(items, group_of([name for name, _ in items], manifest), profile=profile,
                                   scored=screening_table(screening / "scores.csv"), progress=step)
    if len(images) == 0:
        log(f"error: no file of {generated_dir} could be read as a 2-D image: "
            + "; ".join(f"{f}: {e}" for f, e in zip(files["file"], files["error"], strict=True))[:2000])
        return EXIT_BAD_INPUT
    step(f"calibrating the copy threshold on {len(real.heldout_images)} real images")
    card = report_card(files, images, real, profile=profile, encoder=encoder, method=scorer.name,
                       false_alarm_rate=scorer.false_alarm_rate, source=f"the folder {generated_dir}", seed=seed)
    card.seconds = time.perf_counter() - start
    written = write_report(card, out_dir)
    step("writing")
    copies = int(card.groups["likely copies"].sum())
    log(f"report card of {len(images)} of {len(files)} files in {len(card.groups)} group(s): {copies} likely "
        f"cop{'y' if copies == 1 else 'ies'}, {int(card.groups['flagged'].sum())} flagged for artifacts; wrote "
        f"{', '.join(p.name for p in written)} to {out_dir} in {card.seconds:.0f} s")
    return 0
