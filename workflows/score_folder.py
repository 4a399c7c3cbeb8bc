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

``--workers N`` scores in N local processes and ``--ray-address`` on Ray (:mod:`workflows.distributed`): the same
rows (``seconds`` aside), heatmaps and masks, in the same order. ``scores.csv`` is written row by row in order, so a
cut run leaves its finished rows; ``--resume`` keeps those (and any scored row whose maps are there) and scores the rest.

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


class FolderRun:
    """How one ``score`` run turns its files into rows, heatmaps and masks: what :func:`score_folder` decided
    (profile, method, limits ...), picklable so that worker processes (:mod:`workflows.distributed`) score
    exactly as the one-process run does. The models load on first use in each process and stay loaded there.
    """

    def __init__(self, *, input_dir: Path, out_dir: Path, recursive: bool, limits: SizeLimits,
                 pixel_mm: float | None, method: str, fixed, named, models_dir: Path | None, device: str,
                 alpha: float | None, tau: float | None, false_alarm_rate: float | None, batch_size: int,
                 explainer: str | None, shap_samples: int | None):
        self.input_dir, self.out_dir, self.recursive, self.limits = input_dir, out_dir, recursive, limits
        self.pixel_mm, self.method, self.fixed, self.named = pixel_mm, method, fixed, named
        self.models_dir, self.device, self.alpha, self.tau = models_dir, device, alpha, tau
        self.false_alarm_rate, self.batch_size = false_alarm_rate, batch_size
        self.explainer, self.shap_samples = explainer, shap_samples
        self.loaded: dict[str, tuple] = {}  # profile name -> (scorer, explainer), loaded on first use
        self.used_stems: dict[str, str] = {}  # output stem -> the row that wrote it
        self.kept_stems: dict[str, str] = {}  # the same for rows kept from an earlier run (--resume)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "loaded": {}, "used_stems": {}}  # a worker loads its own models

    def scorer_for(self, volume):
        """The scorer and explainer for ``volume`` (its profile's when ``--profile auto``)."""
        from core.head_scoring import HeadScorer, load_detector
        from core.profiles import DEFAULT_PROFILE, auto_profile

        if self.method != SAFEGEN_METHOD:
            return self.fixed, None
        if self.fixed is not None:
            target = self.fixed.profile
        elif self.named is None:
            target = DEFAULT_PROFILE if volume is None else auto_profile(volume.modality, self.models_dir)
        else:
            target = self.named
        name = target.name
        if name not in self.loaded:
            from core.explain import DEFAULT_EXPLAINER
            from core.head_explain import load_explainer

            model = self.fixed or load_detector(
                self.models_dir, profile=target, device=self.device, alpha=self.alpha, tau=self.tau,
                false_alarm_rate=self.false_alarm_rate, batch_size=self.batch_size)
            overrides = {} if self.shap_samples is None else {"shap_samples": self.shap_samples}
            if isinstance(model, HeadScorer) and self.alpha is not None:
                raise ValueError("--alpha weighs the reconstruction scores of the seed detector; the segmentation "
                                 "head weighs E_AE and S_diffusion itself, pixel by pixel")
            self.loaded[name] = model, load_explainer(model, self.explainer or DEFAULT_EXPLAINER, **overrides)
        return self.loaded[name]

    def file_name(self, path: Path) -> str:
        """The row's ``file``: the name, or the path under INPUT_DIR with ``--recursive``."""
        return str(path.relative_to(self.input_dir)) if self.recursive else path.name

    def empty_row(self, path: Path) -> dict:
        """The file's row before anything is known of it: its name, every other column empty."""
        return {**dict.fromkeys(COLUMNS, ""), "file": self.file_name(path)}

    def stem_of(self, path: Path) -> str:
        return output_stem(str(path.relative_to(self.input_dir).with_name(path.name)) if self.recursive else path.name)

    def _load_entry(self, path: Path):
        """Refuse a taken output name and what score does not open (see the module docstring), then load."""
        stem = self.stem_of(path)
        taken = self.used_stems.get(stem) or self.kept_stems.get(stem)
        if taken:
            raise ValueError(f"its output name {stem}.nii.gz is already taken by {taken}")
        _check_entry(path, self.recursive)
        return load_volume(path, limits=self.limits)

    def rows(self, paths):
        """One row of scores.csv per path, in order, lazily; each scored file's heatmap and mask are written."""
        row_of: dict[Path, dict] = {}

        def write_outputs(path: Path, volume, result) -> None:
            """The file's heatmap and mask, then its row's score columns (last: a row with scores wrote both)."""
            stem, row = self.stem_of(path), row_of[path]
            heatmap = to_file_layout(result.heatmap, path).astype(np.float32)
            mask = to_file_layout(result.mask, path).astype(np.uint8)
            affine = _affine_for(path, volume)
            for folder, array in (("heatmaps", heatmap), ("masks", mask)):
                target = self.out_dir / folder / f"{stem}.nii.gz"
                target.parent.mkdir(parents=True, exist_ok=True)
                nib.save(nib.Nifti1Image(array, affine), str(target))
            self.used_stems[stem] = row["file"]
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

        def named(paths):
            for path in paths:
                row_of[path] = self.empty_row(path)
                yield path

        for file in score_files(named(paths), _ScorerPerVolume(self.scorer_for), load=self._load_entry,
                                after_scoring=write_outputs, pixel_mm=self.pixel_mm):
            row = row_of.pop(file.path)
            if file.error is not None:  # the row says why; its score columns stay empty
                row["error"] = file.error
            row["seconds"] = f"{file.seconds:.2f}"
            yield row


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
    workers: int = 1,
    ray_address: str | None = None,
    resume: bool = False,
) -> int:
    """Score a folder as the module docstring says; returns the exit status.

    ``workers``: score in this many local processes (1: in this one); ``ray_address``: shard the files over a
    Ray cluster instead (``auto``, an address, or ``local`` for a Ray started here with ``workers`` CPUs).
    Either way the rows, heatmaps and masks are those of the one-process run (:mod:`workflows.distributed`).
    ``resume``: keep the rows of OUT_DIR/scores.csv (a cut run's prefix, or a whole run) whose file was scored and
    whose heatmap and mask are there; score the others.

    ``scorer``: score every file with it (``profile`` is then ignored). ``limits``: what the loader refuses.
    ``pixel_mm``: the pixel size of 2-D images that state none (:meth:`core.types.Volume.with_pixel_size`).
    """
    from core.baselines import method_choices
    from core.profiles import DEFAULT_PROFILE, get_profile

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
    if workers < 1:
        print(f"error: --workers must be 1 or more, not {workers}", file=sys.stderr)
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
    run = FolderRun(
        input_dir=input_dir, out_dir=out_dir, recursive=recursive, limits=limits, pixel_mm=pixel_mm, method=method,
        fixed=fixed, named=named, models_dir=models_dir, device=device, alpha=alpha, tau=tau,
        false_alarm_rate=false_alarm_rate, batch_size=batch_size, explainer=explainer, shap_samples=shap_samples,
    )
    if method == SAFEGEN_METHOD and fixed is None:
        # the named (or, for auto, the default) profile's models load here: missing files fail
        # before any output is written
        try:
            run.scorer_for(None)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_NOTHING_SCORED
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    (out_dir / "heatmaps").mkdir(parents=True, exist_ok=True)

    kept = _finished_rows(run, files) if resume else {}
    run.kept_stems = {run.stem_of(path): row["file"] for path, row in kept.items()}
    to_score = [path for path in files if path not in kept]
    if resume:
        print(f"resume: {len(kept)} of {len(files)} files already scored in {out_dir / 'scores.csv'}; "
              f"scoring {len(to_score)}", file=sys.stderr)
    if workers == 1 and ray_address is None:
        scored = run.rows(tqdm(to_score, desc="score", unit="file", file=sys.stderr))
    else:
        from workflows.distributed import score_distributed

        scored = score_distributed(run, to_score, workers=workers, ray_address=ray_address)
    rows = []
    with (out_dir / "scores.csv").open("w", newline="") as stream:  # row by row: a cut run leaves a prefix
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        for path in files:
            row = kept[path] if path in kept else next(scored)
            writer.writerow({k: spreadsheet_safe_text(v) for k, v in row.items()})  # "=x.png" stays text
            stream.flush()
            rows.append(row)
    assert next(scored, None) is None  # ends the engine: its progress bar, pool or Ray close here
    n_scored = sum(not row["error"] for row in rows)
    flagged = sum(r["flag"] == "1" for r in rows)
    print(f"scored {n_scored} of {len(files)} files ({flagged} flagged, {len(files) - n_scored} errors); "
          f"wrote {out_dir / 'scores.csv'}", file=sys.stderr)
    _write_group_summary(input_dir, out_dir, rows)
    return 0 if n_scored else EXIT_NOTHING_SCORED


def _finished_rows(run: FolderRun, files: list[Path]) -> dict[Path, dict]:
    """``--resume``: the rows of OUT_DIR/scores.csv, as they were written, for files of this run that were scored
    and whose heatmap and mask exist; a row with an error, cut short, or without its maps is scored again."""
    table = run.out_dir / "scores.csv"
    if not table.is_file():
        return {}
    with table.open(newline="") as stream:
        written = {row["file"]: row for row in csv.DictReader(stream) if list(row) == list(COLUMNS)}
    kept = {}
    for path in files:
        row = written.get(spreadsheet_safe_text(run.file_name(path)))
        stem = run.stem_of(path)
        if (row is not None and None not in row.values() and row["score"] and not row["error"]
                and all((run.out_dir / folder / f"{stem}.nii.gz").is_file() for folder in ("heatmaps", "masks"))):
            kept[path] = {**row, "file": run.file_name(path)}
    return kept


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
