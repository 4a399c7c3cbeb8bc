"""``python -m workflows.cli score INPUT_DIR --out OUT_DIR``: the fixed contract other tools rely on.

For every ``.nii``, ``.nii.gz``, ``.png``, ``.jpg``, ``.jpeg``, ``.dcm`` and ``.inv3`` (InVesalius) file in INPUT_DIR
(:data:`core.io.ACCEPTED_SUFFIXES`; sub-folders with ``--recursive``):

* a row of ``OUT_DIR/scores.csv``: ``file,score,flag`` then ``p_value, score_diffusion,
  score_autoencoder, worst_slice, flagged_slices, scored_slices, alpha, tau, method, profile, explainer,
  unsafe_area_mm2, unsafe_regions, unsafe_volume_ml, seconds, warnings, error``. ``score``: higher = more likely
  unsafe; ``flag``: 0/1 at tau. A file that cannot be scored gets an empty score and flag and its
  message in ``error``; the run goes on.
* ``--method NAME`` scores with a baseline instead of SAFEGEN (:mod:`core.baselines.scorer`: fitted
  on the reference slices first, a few seconds); its own map is the heatmap, its own tau the
  threshold, and the SAFEGEN-only columns (``score_diffusion``, ``score_autoencoder``, ``alpha``)
  stay empty.
* ``--profile`` (:mod:`core.profiles`): ``auto`` (default) scores each file with the models of the
  profile made for its modality (CT -> ``ct_head``, MR -> ``mri_t1``; the brain MRI profile, with a
  warning, when none fits, e.g. radiographs); a profile name scores every file with that profile.
  The ``profile`` column says which one scored the row. Baselines are fitted on the brain MRI
  reference only.
* ``OUT_DIR/masks/<stem>.nii.gz`` (uint8 0/1) and ``OUT_DIR/heatmaps/<stem>.nii.gz`` (float32,
  calibrated units) from the chosen explainer (``--explainer``, :mod:`core.explain`), ``<stem>`` = the file name
  without its suffix (one of :data:`core.io.ACCEPTED_SUFFIXES`, e.g. ``.nii.gz``).
  Their arrays have the input's array shape and index order (see :func:`core.io.to_file_layout`);
  for a NIfTI input they also carry its affine, so they overlay it in any viewer.

Every entry named like these, or ``.zip``, gets a row, whatever it is: a folder, a named pipe, a
device, a symbolic link loop, a broken link or a zip archive gets an error row saying so (none of
them is opened), as do images too small to score (:data:`core.io.MIN_SCORABLE_SIDE`) and files over
the size limits (:class:`core.io.SizeLimits`). With ``--recursive`` a folder is walked into instead.
Other names (``readme.txt``, ``manifest.csv``) get no row.

When INPUT_DIR holds a ``manifest.csv`` with ``file`` and ``group`` columns (the demo's generated
set, :mod:`core.benchmark.generated_set`, or a user's own), ``OUT_DIR/groups.csv`` adds scores and flags per group.

Exit status: 0 when at least one file was scored, 2 when none could be.
"""

from __future__ import annotations

import csv
import stat
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from core.errors import NotAFileError, UnsupportedFormatError
from core.export import spreadsheet_safe_text
from core.io import (
    ACCEPTED_SUFFIXES, DEFAULT_LIMITS, SizeLimits, detect_format, load_volume, output_stem, stat_input,
    to_file_layout,
)
from core.types import SAFEGEN_METHOD, check_pixel_size
from workflows.score_files import score_files

ROW_SUFFIXES = (*ACCEPTED_SUFFIXES, ".zip")  # names that get a row; a zip's row says to unpack it
COLUMNS = (
    "file", "score", "flag", "p_value", "score_diffusion", "score_autoencoder", "worst_slice",
    "flagged_slices", "scored_slices", "alpha", "tau", "method", "profile", "explainer", "unsafe_area_mm2",
    "unsafe_regions", "unsafe_volume_ml",
    "seconds", "warnings", "error",
)
EXIT_NOTHING_SCORED = 2


def find_entries(input_dir: Path, *, recursive: bool = False) -> list[Path]:
    """Every entry named like an image of the contract's types or a zip, sorted; hidden names are skipped.

    Entries of any kind: files, folders, links (broken or looping), named pipes and devices alike;
    nothing is opened. With ``recursive``, the sub-folders it walks into are not entries themselves.
    """
    pattern = "**/*" if recursive else "*"
    return sorted(
        p for p in Path(input_dir).glob(pattern)
        if not p.name.startswith(".") and p.name.lower().endswith(ROW_SUFFIXES)
        and not (recursive and p.is_dir() and not p.is_symlink())
    )


def find_inputs(input_dir: Path, *, recursive: bool = False) -> list[Path]:
    """Image files of the contract's types (regular files, or links to them), sorted; hidden files are skipped."""
    return [p for p in find_entries(input_dir, recursive=recursive)
            if p.name.lower().endswith(ACCEPTED_SUFFIXES) and p.is_file()]


def _check_entry(path: Path, recursive: bool) -> None:
    """Refuse, without opening it, an entry that is not an image file to score (see the module docstring)."""
    if stat.S_ISDIR(stat_input(path).st_mode):  # stat_input refuses pipes, devices, loops and broken links
        if path.is_symlink():
            raise NotAFileError(f"{path.name} is a link to a folder, not an image file; score does not follow "
                                "linked folders")
        hint = "" if recursive else "; --recursive scores the image files inside it"
        raise NotAFileError(f"{path.name} is a folder, not an image file{hint}")
    if detect_format(path) == "zip":
        raise UnsupportedFormatError(f"{path.name} is a zip archive; score reads single image files: unpack it "
                                     "into the folder first")


def _affine_for(path: Path, volume) -> np.ndarray:
    """The output maps' affine: a NIfTI input's own; a picture's pixel size (1 mm unless ``--pixel-mm``);
    else the identity (a DICOM's geometry lives in the scan, not in the maps' headers)."""
    kind = detect_format(path)
    if kind in ("nifti", "nifti-gz"):
        return np.asarray(nib.load(str(path)).affine, dtype=float)
    if kind in ("png", "jpeg"):
        return np.asarray(volume.affine, dtype=float)
    return np.eye(4)


def _fmt(value: float, digits: int = 4) -> str:
    return "" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


class _ScorerPerVolume:
    """A scorer for :func:`workflows.score_files.score_files` that scores each volume with the scorer and
    explainer ``scorer_for(volume)`` picks (its profile's, with ``--profile auto``)."""

    def __init__(self, scorer_for):
        self.scorer_for = scorer_for

    def score_volume(self, volume):
        scorer, explainer = self.scorer_for(volume)
        return scorer.score_volume(volume, explainer=explainer)


def score_folder(
    input_dir: Path,
    out_dir: Path,
    *,
    alpha: float | None = None,
    tau: float | None = None,
    false_alarm_rate: float | None = None,
    batch_size: int = 16,
    device: str = "cpu",
    recursive: bool = False,
    models_dir: Path | None = None,
    explainer: str | None = None,
    shap_samples: int | None = None,
    method: str = SAFEGEN_METHOD,
    reference_dir: Path | None = None,
    scorer=None,
    profile: str = "auto",
    limits: SizeLimits = DEFAULT_LIMITS,
    pixel_mm: float | None = None,
) -> int:
    """Score a folder as the module docstring says; returns the exit status.

    ``scorer``: score every file with it (``profile`` is then ignored). ``limits``: what the loader refuses.
    ``pixel_mm``: the pixel size of 2-D images that state none (:meth:`core.types.Volume.with_pixel_size`).
    """
    from core.baselines import method_choices
    from core.profiles import DEFAULT_PROFILE, auto_profile, get_profile
    from core.head_scoring import HeadScorer, load_detector

    input_dir, out_dir = Path(input_dir), Path(out_dir)
    if not input_dir.is_dir():
        print(f"error: {input_dir} is not a folder", file=sys.stderr)
        return EXIT_NOTHING_SCORED
    if pixel_mm is not None:
        try:
            check_pixel_size(pixel_mm)
        except ValueError as error:
            print(f"error: --pixel-mm: {error}", file=sys.stderr)
            return EXIT_NOTHING_SCORED
    files = find_entries(input_dir, recursive=recursive)
    if not files:
        print(f"error: {input_dir} holds no {', '.join(ACCEPTED_SUFFIXES)} files", file=sys.stderr)
        return EXIT_NOTHING_SCORED
    if method not in method_choices():
        print(f"error: unknown method {method!r}; choose from {', '.join(method_choices())}", file=sys.stderr)
        return EXIT_NOTHING_SCORED
    named = None  # the named profile; None: each file's modality picks one ("auto")
    if profile != "auto":
        try:
            named = get_profile(profile)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_NOTHING_SCORED
    fixed = scorer  # one scorer for every file
    if method != SAFEGEN_METHOD:
        if named not in (None, DEFAULT_PROFILE):
            print(f"error: the baselines are fitted on the {DEFAULT_PROFILE.title} reference only; "
                  f"--profile {named.name} applies to SAFEGEN's score", file=sys.stderr)
            return EXIT_NOTHING_SCORED
        if (explainer not in (None, "residual")) or alpha is not None or shap_samples is not None:
            print(f"error: --explainer, --alpha and --shap-samples apply to SAFEGEN's score; the {method} "
                  "baseline shows its own map", file=sys.stderr)
            return EXIT_NOTHING_SCORED
        if scorer is None:
            from core.baselines.scorer import REFERENCE_DIR, BaselineScorer

            print(f"fitting the {method} baseline on the reference slices ...", file=sys.stderr)
            fixed = BaselineScorer.fit(method, reference_dir or REFERENCE_DIR, tau=tau,
                                       false_alarm_rate=false_alarm_rate, batch_size=batch_size)
    loaded: dict[str, tuple] = {}  # profile name -> (scorer, explainer), loaded on first use

    def scorer_for(volume):
        """The scorer and explainer for ``volume`` (its profile's when ``--profile auto``)."""
        if method != SAFEGEN_METHOD:
            return fixed, None
        if fixed is not None:
            target = fixed.profile
        elif named is None:
            target = DEFAULT_PROFILE if volume is None else auto_profile(volume.modality, models_dir)
        else:
            target = named
        name = target.name
        if name not in loaded:
            from core.explain import DEFAULT_EXPLAINER
            from core.head_explain import load_explainer

            model = fixed or load_detector(models_dir, profile=target, device=device, alpha=alpha, tau=tau,
                                           false_alarm_rate=false_alarm_rate, batch_size=batch_size)
            overrides = {} if shap_samples is None else {"shap_samples": shap_samples}
            if isinstance(model, HeadScorer) and alpha is not None:
                raise ValueError("--alpha weighs the reconstruction scores of the seed detector; the segmentation "
                                 "head weighs E_AE and S_diffusion itself, pixel by pixel")
            loaded[name] = model, load_explainer(model, explainer or DEFAULT_EXPLAINER, **overrides)
        return loaded[name]

    if method == SAFEGEN_METHOD and fixed is None:
        # the named (or, for auto, the default) profile's models load here: missing files fail
        # before any output is written
        try:
            scorer_for(None)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_NOTHING_SCORED
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    (out_dir / "heatmaps").mkdir(parents=True, exist_ok=True)

    row_of = {path: {**dict.fromkeys(COLUMNS, ""), "file": str(path.relative_to(input_dir)) if recursive else path.name}
            for path in files}
    used_stems: dict[str, str] = {}  # output stem -> the row that wrote it

    def stem_of(path: Path) -> str:
        return output_stem(str(path.relative_to(input_dir).with_name(path.name)) if recursive else path.name)

    def load_entry(path: Path):
        """Refuse a taken output name and what score does not open (see the module docstring), then load."""
        stem = stem_of(path)
        if stem in used_stems:
            raise ValueError(f"its output name {stem}.nii.gz is already taken by {used_stems[stem]}")
        _check_entry(path, recursive)
        return load_volume(path, limits=limits)

    def write_outputs(path: Path, volume, result) -> None:
        """The file's heatmap and mask, then its row's score columns (last: a row with scores wrote both files)."""
        stem, row = stem_of(path), row_of[path]
        heatmap = to_file_layout(result.heatmap, path).astype(np.float32)
        mask = to_file_layout(result.mask, path).astype(np.uint8)
        affine = _affine_for(path, volume)
        for folder, array in (("heatmaps", heatmap), ("masks", mask)):
            target = out_dir / folder / f"{stem}.nii.gz"
            target.parent.mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(array, affine), str(target))
        used_stems[stem] = row["file"]
        scored = np.isfinite(result.slice_scores)
        summary = result.summary_at()
        row.update(
            score=_fmt(result.score), flag=str(int(result.flag)), p_value=_fmt(result.p_value),
            score_diffusion=_fmt(result.score_diffusion), score_autoencoder=_fmt(result.score_autoencoder),
            worst_slice=str(result.worst_slice), flagged_slices=str(len(result.flagged_slices)),
            scored_slices=str(int(scored.sum())), alpha=_fmt(result.alpha, 2), tau=_fmt(result.tau),
            method=result.method, profile=result.profile if result.method == SAFEGEN_METHOD else "",
            explainer=result.explainer, unsafe_area_mm2=_fmt(summary.total_mm2, 1),
            unsafe_regions=str(summary.n_regions),
            unsafe_volume_ml=_fmt(summary.volume_ml, 3) if volume.n_slices > 1 else "",
            warnings=" | ".join(result.warnings),
        )

    n_scored = 0
    for file in score_files(tqdm(files, desc="score", unit="file", file=sys.stderr), _ScorerPerVolume(scorer_for),
                            load=load_entry, after_scoring=write_outputs, pixel_mm=pixel_mm):
        row = row_of[file.path]
        if file.error is None:
            n_scored += 1
        else:  # the row says why; its score columns stay empty
            row["error"] = file.error
        row["seconds"] = f"{file.seconds:.2f}"
    rows = list(row_of.values())

    with (out_dir / "scores.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: spreadsheet_safe_text(v) for k, v in row.items()} for row in rows)  # "=x.png" stays text
    flagged = sum(r["flag"] == "1" for r in rows)
    print(f"scored {n_scored} of {len(files)} files ({flagged} flagged, {len(files) - n_scored} errors); "
          f"wrote {out_dir / 'scores.csv'}", file=sys.stderr)
    _write_group_summary(input_dir, out_dir, rows)
    return 0 if n_scored else EXIT_NOTHING_SCORED


def _write_group_summary(input_dir: Path, out_dir: Path, rows: list[dict]) -> None:
    """When INPUT_DIR has a ``manifest.csv`` with ``file`` and ``group`` columns (a generated set,
    :mod:`core.benchmark.generated_set`), write ``OUT_DIR/groups.csv`` and print it: scores and flags per group."""
    import pandas as pd

    from core.benchmark.generated_set import group_summary, read_manifest

    manifest = read_manifest(input_dir)
    if manifest is None:
        return
    table = pd.DataFrame(rows)
    table["score"] = pd.to_numeric(table["score"], errors="coerce")
    table["flag"] = table["flag"] == "1"
    summary = group_summary(table, manifest)
    summary.to_csv(out_dir / "groups.csv", index=False, float_format="%.4f")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
