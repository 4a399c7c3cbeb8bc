"""Studies from files, and their export: the steps that touch both the scans and the database.

* :func:`create_study_from_files`: de-identify every scan into the study's folder
  (:mod:`core.deidentify`), read its display geometry, optionally score it with SAFEGEN and keep
  the heatmap for the AI arm, then :func:`db.repository.create_study`.
* :func:`export_study`: ``answers.csv`` (tidy, one row per answer), one NIfTI mask per case and
  reader on the scan's own voxel grid and affine (drawn display slices put back with
  :meth:`core.types.Volume.stack_display_slices`), the same masks as DICOM-SEG objects with the images
  they reference (:mod:`core.dicom_seg`), and ``summary.json`` (per-question statistics, agreement,
  the mean heatmap usefulness with its confidence interval, reading time).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from core.deidentify import deidentify_file
from core.export import safe_file_stem, spreadsheet_safe
from core.io import detect_format, load_volume, to_file_layout
from core.jsonable import json_safe, records
from core.resources import PROJECT_ROOT
from core.study_stats import (
    agreement,
    answers_frame,
    arm_summary,
    checklist_counts,
    mask_accuracy,
    mask_dice_against,
    mask_dice_between_readers,
    mean_with_ci,
    likert_levels,
    question_summary,
    reader_aucs,
    readings_frame,
    reading_time,
    roc_frame,
    turing_frame,
    visual_turing,
)
from db.models import Arm, Case, Reader, Role, Study, StudyKind
from db.repository import (
    TRUTHS,
    CaseSpec,
    ReaderCase,
    StudyError,
    answers_table,
    create_study,
    require_admin,
    study_masks,
)
from workflows.score_files import score_files

def default_studies_dir() -> Path:
    """Where study folders go: ``$SAFEGEN_STUDIES_DIR`` or ``data/studies`` (read at call time)."""
    return Path(os.environ.get("SAFEGEN_STUDIES_DIR", PROJECT_ROOT / "data" / "studies"))


def create_study_from_files(
    session: Session,
    admin: Reader,
    title: str,
    files: list[Path],
    readers: dict[int, Arm],
    *,
    instructions: str = "",
    questions: list[dict] | None = None,
    seed: int = 0,
    scorer=None,
    studies_dir: Path | None = None,
    progress=None,
    truths: list[str | None] | None = None,
    truth_masks: list[Path | None] | None = None,
    kind: StudyKind = StudyKind.RATING,
    settings: dict | None = None,
) -> Study:
    """A study whose cases are de-identified copies of ``files`` (see the module docstring).

    Args:
        session, admin, title, readers, instructions, questions, seed, kind, settings: as
            :func:`db.repository.create_study`.
        files: scans (NIfTI, DICOM, PNG, JPEG); each becomes ``case-NNN`` in a new study folder.
            Pseudonyms follow the order of ``files``; when truths are given they are shuffled
            (seeded by ``seed``), so a case's number never tells its truth.
        scorer: a :class:`core.scoring.Scorer` to make the AI arm's heatmaps (None: no AI output).
        studies_dir: parent of the study folders (default :func:`default_studies_dir`).
        progress: called with the number of files done.
        truths: per file, what it is (``real`` / ``synthetic`` / ``artifact`` / ``clean``) or None.
        truth_masks: per file, a mask file on the scan's own grid (NIfTI, PNG, ``.npy``) or None;
            stored as display slices for scoring the readers' masks.
    """
    require_admin(admin)  # before anything is written
    folder = Path(studies_dir or default_studies_dir()) / uuid.uuid4().hex[:12]
    try:
        return _create_study_from_files(session, admin, title, files, readers, folder, instructions=instructions,
                                        questions=questions, seed=seed, scorer=scorer, progress=progress,
                                        truths=truths, truth_masks=truth_masks, kind=kind, settings=settings)
    except BaseException:  # a refused file, a refused study, an interrupt: no case file is left behind
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _create_study_from_files(session, admin, title, files, readers, folder, *, instructions, questions, seed,
                             scorer, progress, truths, truth_masks, kind, settings) -> Study:
    truths = list(truths or [None] * len(files))
    truth_masks = list(truth_masks or [None] * len(files))
    if len(truths) != len(files) or len(truth_masks) != len(files):
        raise StudyError("give one truth and one truth mask (or None) per file")
    numbers = list(range(1, len(files) + 1))
    if any(t is not None for t in truths):
        numbers = [int(n) + 1 for n in np.random.default_rng([seed, 1]).permutation(len(files))]
    pseudonyms = [f"case-{number:03d}" for number in numbers]
    # one file at a time: de-identified, loaded and scored before the next is read; the first refused
    # file refuses the study
    stored_files = (deidentify_file(Path(path), folder, pseudonym) for path, pseudonym in zip(files, pseudonyms))
    cases = score_files(stored_files, scorer, require_scorable=False, raise_errors=True)
    specs = []
    for pseudonym, truth, truth_mask, case in zip(pseudonyms, truths, truth_masks, cases, strict=True):
        stored, volume, result = case.path, case.volume, case.result
        rows, cols = volume.display_slice(0).shape
        heatmap_path, score, ai = None, None, {}
        if result is not None:
            heatmap_path = folder / f"{pseudonym}_heatmap.npy"
            np.save(heatmap_path, result.heatmap.astype(np.float32))
            score = float(result.score)
            ai = {"ai_tau": float(result.tau), "ai_profile": result.profile,
                  "ai_flags": [bool(f) for f in result.flags_at(result.tau)]}
        mask_path = None
        if truth_mask is not None:
            mask_path = folder / f"{pseudonym}_truth_mask.npy"
            np.save(mask_path, display_mask(volume, load_mask(Path(truth_mask), volume)))
        specs.append(CaseSpec(pseudonym, str(stored), (rows, cols, volume.n_slices),
                              None if heatmap_path is None else str(heatmap_path), score, truth=truth,
                              truth_mask_path=None if mask_path is None else str(mask_path), **ai))
        if progress is not None:
            progress(1)
    return create_study(session, admin, title, specs, readers, instructions=instructions, questions=questions,
                        seed=seed, kind=kind, settings=settings)


def load_mask(path: Path, volume) -> np.ndarray:
    """A ground-truth mask file (``.npy``, NIfTI, PNG) as a boolean array of ``volume``'s shape."""
    if path.suffix == ".npy":
        mask = np.load(path)
    else:
        mask = load_volume(path).array
    mask = np.asarray(mask) > 0
    if mask.shape != volume.array.shape and np.squeeze(mask).shape == np.squeeze(volume.array).shape:
        mask = np.squeeze(mask).reshape(volume.array.shape)  # only singleton axes differ (e.g. NIfTI's 4th)
    if mask.shape != volume.array.shape:
        raise StudyError(f"the truth mask {path.name} does not match its scan's shape {volume.array.shape}")
    return mask


def display_mask(volume, mask: np.ndarray) -> np.ndarray:
    """A mask on the scan's array grid as its ``(slices, rows, columns)`` display slices (what readers draw on)."""
    return volume.display_slices_of(np.asarray(mask, bool))


def drawn_mask(volume, slices: dict[int, np.ndarray]) -> np.ndarray:
    """A reader's drawn display-slice masks as one uint8 array on ``volume``'s grid (empty where not drawn)."""
    rows, cols = volume.display_slice(0).shape
    display = [slices.get(i, np.zeros((rows, cols), bool)) for i in range(volume.n_slices)]
    return volume.stack_display_slices(display).astype(np.uint8)


def mask_volume(case_scan: Path, slices: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A reader's drawn display-slice masks as one uint8 array in the scan file's own index order, and
    the file's affine (as ``score`` writes its masks), so the mask overlays the scan in any viewer."""
    mask = to_file_layout(drawn_mask(load_volume(case_scan), slices), Path(case_scan))
    affine = nib.load(str(case_scan)).affine if detect_format(Path(case_scan)).startswith("nifti") else np.eye(4)
    return mask, affine


@dataclass
class StudyReport:
    """Everything the Results page shows and the export writes, computed once from the database.

    Tables are DataFrames; a section that does not apply to the study (no truth, one arm, no masks)
    is None or empty, with ``notes`` saying why.
    """

    title: str
    kind: str
    settings: dict
    questions: list
    cases: int
    answers: pd.DataFrame  # one row per answer (the long table)
    readings: pd.DataFrame  # one row per reading, one column per question (the tidy table)
    question_summary: pd.DataFrame
    agreement: pd.DataFrame | None = None  # per Likert question and arm (admins)
    usefulness: dict | None = None  # mean heatmap usefulness with its bootstrap CI
    turing_table: pd.DataFrame | None = None
    turing_line: str | None = None
    reader_aucs: pd.DataFrame | None = None
    mrmc: object | None = None  # core.mrmc.ORAnalysis of the two arms
    checklists: dict = field(default_factory=dict)  # question key -> item counts
    arms: pd.DataFrame | None = None
    masks_between: pd.DataFrame | None = None
    masks_vs_safegen: pd.DataFrame | None = None
    masks_vs_truth: pd.DataFrame | None = None  # per reading
    masks_vs_truth_per_reader: pd.DataFrame | None = None
    reading_time: pd.DataFrame | None = None
    notes: list = field(default_factory=list)

    def to_json(self) -> dict:
        """The report as plain JSON values (tables as records)."""
        tables = {name: records(getattr(self, name)) for name in (
            "reader_aucs", "masks_between", "masks_vs_safegen", "masks_vs_truth_per_reader")}
        agreement_ = {}
        if self.agreement is not None:
            for (question, arm), row in self.agreement.iterrows():
                agreement_.setdefault(question, {})[arm] = dict(row)
        return json_safe({
            "study": self.title, "kind": self.kind, "settings": self.settings, "cases": self.cases,
            "question_set": self.questions, "questions": _by_index(self.question_summary),
            "agreement": agreement_, "reading_time": _by_index(self.reading_time) or {},
            "turing": _by_index(self.turing_table), "arms": _by_index(self.arms), **tables,
            "heatmap_useful_mean_ci": self.usefulness, "turing_summary": self.turing_line,
            "checklists": {k: records(v) for k, v in self.checklists.items()},
            "mrmc": None if self.mrmc is None else self.mrmc.to_dict(),
            "mrmc_summary": None if self.mrmc is None else {a: self.mrmc.summary_line(a) for a in ("RRRC", "FRRC")},
            "notes": self.notes,
        })


def analyse_study(session: Session, requester: Reader, study_id: int, *, tau: float | None = None,
                  covariance: str = "jackknife", load_scan=load_volume, load_array=np.load) -> StudyReport:
    """The study's results (see :class:`StudyReport`). An admin gets every reader and the case truth;
    a reader gets their own answers only (no truth: no accuracy, ROC or agreement).

    Args:
        tau: SAFEGEN's tolerance for the masks of cases made before each case stored its own (the
            committed calibration's; None: no comparison with SAFEGEN's mask for such cases). A case
            that stored its tau and slice flags is compared at those.
        covariance: the MRMC covariance estimator, ``jackknife`` or ``delong``.
        load_scan, load_array: read a case's scan, and its stored heatmap or truth mask (``.npy``),
            from their paths (the dashboard passes its cached loaders, so a rerun of the Results page
            reads no file again).
    """
    from core.mrmc import MRMCError, obuchowski_rockette

    study = session.get(Study, study_id)
    if study is None:
        raise StudyError(f"there is no study {study_id}")
    frame = answers_frame(answers_table(session, requester, study_id))
    questions = list(study.questions)
    settings = dict(study.settings or {})
    report = StudyReport(study.title, study.kind.value, settings, questions, len(study.cases), frame,
                         readings_frame(frame), question_summary(frame, questions))
    if frame.empty:
        report.notes.append("No answers yet.")
        return report
    admin = requester.role is Role.ADMIN
    likert = {q["key"]: likert_levels(q) for q in questions if q["kind"] == "likert"}
    report.reading_time = reading_time(frame)
    if "heatmap_useful" in likert and (frame["question"] == "heatmap_useful").any():
        report.usefulness = mean_with_ci(frame, "heatmap_useful")
    for q in questions:
        if q["kind"] == "checklist":
            report.checklists[q["key"]] = checklist_counts(frame, q["key"], q["options"])
    arms = sorted(frame["arm"].unique())
    if len(arms) > 1:
        report.arms = arm_summary(frame, [k for k in likert if k != "heatmap_useful"])
    crossed = bool(settings.get("crossed"))
    if admin:  # agreement among the readers of one arm in a crossed study, among all readers otherwise
        groups = {arm: frame[frame["arm"] == arm] for arm in arms} if crossed else {"all": frame}
        rows = [{"question": key, "arm": arm, **agreement(group, key, levels)}
                for key, levels in likert.items() for arm, group in groups.items() if (frame["question"] == key).any()]
        report.agreement = pd.DataFrame(rows).set_index(["question", "arm"]) if rows else None
    roc_question = settings.get("roc_question")
    has_truth = admin and frame["truth"].notna().any()
    if has_truth and study.kind is StudyKind.VISUAL_TURING and (frame["question"] == "origin").any():
        turing = turing_frame(frame, "origin", "confidence" if "confidence" in likert else None)
        if len(turing):
            report.turing_table, report.turing_line = visual_turing(turing)
    if has_truth and roc_question and (frame["question"] == roc_question).any():
        roc = roc_frame(frame, roc_question)
        report.reader_aucs = reader_aucs(roc)
        if roc["treatment"].nunique() >= 2:
            try:
                report.mrmc = obuchowski_rockette(roc, covariance=covariance, complete_cases_only=True)
            except MRMCError as error:
                report.notes.append(f"MRMC analysis not possible yet: {error}")
        elif study.kind is StudyKind.TWO_ARM:
            report.notes.append("The MRMC comparison of the arms needs readings in both arms.")
    if admin:
        _mask_sections(session, requester, study, report, tau, load_scan, load_array)
    return report


def _mask_sections(session: Session, admin: Reader, study: Study, report: StudyReport, tau: float | None,
                   load_scan, load_array) -> None:
    drawn = study_masks(session, admin, study.id, include_empty=True)
    cases = {c.id: c for c in study.cases}
    masks = {(case.id, name, arm): stack_masks(slices, case.display_shape) for case, name, arm, slices in drawn}
    if not masks:
        return
    if any(m.any() for m in masks.values()):
        crossed = bool((study.settings or {}).get("crossed"))
        per_arm = []
        for arm in sorted({arm for _, _, arm in masks}) if crossed else ["all"]:
            table = mask_dice_between_readers({(c, r): m for (c, r, a), m in masks.items() if arm in ("all", a)})
            per_arm.append(table.assign(arm=arm))
        report.masks_between = pd.concat(per_arm, ignore_index=True)
        reference = {cid: safegen_mask(load_scan(case.scan_path), load_array(case.ai_heatmap_path),
                                       *case_ai_settings(case, tau))
                     for cid, case in cases.items()
                     if case.ai_heatmap_path and case_ai_settings(case, tau)[0] is not None}
        if reference:
            flat = {(c, f"{r} ({a})" if crossed else r): m for (c, r, a), m in masks.items()}
            report.masks_vs_safegen = mask_dice_against(flat, reference)
    truth_masks = {cid: load_array(case.truth_mask_path) for cid, case in cases.items() if case.truth_mask_path}
    if truth_masks or any(case.truth == "clean" for case in cases.values()):
        report.masks_vs_truth, report.masks_vs_truth_per_reader = mask_accuracy(
            masks, truth_masks, {cid: case.truth for cid, case in cases.items()})


def stack_masks(slices: dict[int, np.ndarray], display_shape: list[int]) -> np.ndarray:
    """``(slices, rows, columns)`` boolean stack of a reader's display-slice masks (empty where not drawn)."""
    rows, cols, n = display_shape
    out = np.zeros((n, rows, cols), bool)
    for index, mask in slices.items():
        out[index] = mask
    return out


def case_ai_settings(case: Case | ReaderCase, tau: float | None = None) -> tuple[float | None, np.ndarray | None]:
    """The tolerance and slice flags a case's AI heatmap was scored with; a case made before they were
    stored gets ``tau`` (the committed calibration's, from the caller) and no flags. A blinded
    reader's :class:`~db.repository.ReaderCase` has neither."""
    if case.ai_tau is not None:
        return float(case.ai_tau), None if case.ai_flags is None else np.asarray(case.ai_flags, dtype=bool)
    return tau, None


def safegen_mask(volume, heatmap: np.ndarray, tau: float, flags: np.ndarray | None = None) -> np.ndarray:
    """SAFEGEN's mask of a case's scan and stored heatmap at ``tau`` on the flagged slices
    (:func:`core.masks.unsafe_mask`, the one mask rule), as display slices like the readers'."""
    from core.masks import unsafe_mask

    return volume.display_slices_of(unsafe_mask(heatmap, tau, flags)).astype(bool)


def export_study(session: Session, admin: Reader, study_id: int, out_dir: Path, *,
                 tau: float | None = None) -> dict[str, Path]:
    """Write the study's answers, readings, masks and report to ``out_dir`` (admin only); returns the paths.

    ``answers.csv``: one row per answer; ``readings.csv``: one row per reading (case x reader x arm)
    with one column per question, the case truth, session and seconds (the analysis-ready table);
    ``summary.json``: :meth:`StudyReport.to_json`; ``masks/``: one NIfTI per drawn reading; ``dicom_seg/``:
    one DICOM-SEG per drawn reading (``<stem>.seg.dcm``, keys ``dicom_seg:...``) and the images they
    reference (``<case>_images/``, keys ``dicom_seg_image:...``).
    """
    study = session.get(Study, study_id)
    if study is None:
        raise StudyError(f"there is no study {study_id}")
    exported = study_masks(session, admin, study_id)  # admin check
    report = analyse_study(session, admin, study_id, tau=tau)
    out_dir = Path(out_dir)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    paths = {"answers": out_dir / "answers.csv", "readings": out_dir / "readings.csv",
             "summary": out_dir / "summary.json"}
    spreadsheet_safe(report.answers).to_csv(paths["answers"], index=False)  # a comment "=HYPERLINK(...)" stays text
    spreadsheet_safe(report.readings).to_csv(paths["readings"], index=False)
    crossed = bool((study.settings or {}).get("crossed"))
    for case, reader_name, arm, slices in exported:
        mask, affine = mask_volume(Path(case.scan_path), slices)
        target = out_dir / "masks" / f"{_reading_stem(case, reader_name, arm, crossed)}.nii.gz"
        image = nib.Nifti1Image(mask, affine)
        image.set_data_dtype(np.uint8)
        nib.save(image, str(target))
        paths[f"mask:{case.name}:{reader_name}" + (f":{arm}" if crossed else "")] = target
    paths.update(_dicom_segs(exported, out_dir / "dicom_seg", crossed))
    paths["summary"].write_text(json.dumps(report.to_json(), indent=1, allow_nan=False))
    return paths


def _reading_stem(case: Case, reader_name: str, arm: str, crossed: bool) -> str:
    """The file stem of a reading's exported masks: case and reader (and arm, in a crossed study)."""
    return safe_file_stem(f"{case.name}_{reader_name}" + (f"_{arm}" if crossed else ""))


def _dicom_segs(exported: list, folder: Path, crossed: bool) -> dict[str, Path]:
    """One DICOM-SEG per drawn reading (MANUAL, the reader named as in the NIfTI file names), each case's
    SEGs referencing one image series of the case written once beside them (:func:`core.dicom_seg.write_case_segs`):
    a copy of its de-identified DICOM file, or a derived DICOM series of a NIfTI / PNG case."""
    from core.dicom_seg import reader_author, write_case_segs

    paths: dict[str, Path] = {}
    for _, readings in itertools.groupby(exported, key=lambda reading: reading[0].id):
        readings = list(readings)
        case = readings[0][0]
        volume = load_volume(case.scan_path)
        masks = [(_reading_stem(case, name, arm, crossed), drawn_mask(volume, slices),
                  reader_author(name, arm if crossed else None)) for _, name, arm, slices in readings]
        segs, images = write_case_segs(volume, Path(case.scan_path), masks, folder, patient_id=case.name,
                                       images_name=safe_file_stem(f"{case.name}_images"))
        paths.update({f"dicom_seg_image:{case.name}:{path.name}": path for path in images})
        for (_, name, arm, _), seg in zip(readings, segs, strict=True):
            paths[f"dicom_seg:{case.name}:{name}" + (f":{arm}" if crossed else "")] = seg
    return paths


def _by_index(frame: pd.DataFrame | None) -> dict | None:
    """``{row label: {column: value}}`` of a table (None stays None)."""
    return None if frame is None else {str(k): dict(row) for k, row in frame.iterrows()}


def read_case_list(path: Path, *, limit: int | None = None, seed: int = 0) -> tuple[list[Path], list, list]:
    """Cases from a CSV: ``image`` (or ``file`` / ``path``), optional ``truth`` (real, synthetic,
    artifact, clean) or ``label`` (1 = artifact, 0 = clean: a SAFEGEN benchmark's ``labels.csv``
    works as it is), optional ``mask`` (a ground-truth mask file; ignored for clean and real cases).
    Relative paths are relative to the CSV's folder.

    Args:
        limit: keep this many cases, drawn with ``seed`` and balanced between the truths (None: all).

    Returns:
        files, truths and truth masks, one each per case.

    Raises:
        StudyError: a missing column or file, or an unknown truth.
    """
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise StudyError(f"cannot read the case list {path}: {error}") from error
    column = next((c for c in ("image", "file", "path") if c in table), None)
    if column is None:
        raise StudyError("a case list needs an 'image' column (the scan files)")
    if "truth" in table:
        truths = table["truth"].where(table["truth"].notna(), None).tolist()
    elif "label" in table:
        truths = ["artifact" if int(v) else "clean" for v in table["label"]]
    else:
        truths = [None] * len(table)
    if bad := sorted({t for t in truths if t is not None} - set(TRUTHS)):
        raise StudyError(f"unknown truth value(s) {bad}; use {', '.join(TRUTHS)}")
    rows = list(range(len(table)))
    if limit is not None and 0 < limit < len(rows):
        rng = np.random.default_rng(seed)
        groups = {t: [i for i in rows if truths[i] == t] for t in dict.fromkeys(truths)}
        per = [rng.permutation(g).tolist() for g in groups.values()]
        interleaved = [i for round_ in itertools.zip_longest(*per) for i in round_ if i is not None]
        rows = sorted(interleaved[:limit])
    base = path.parent
    files, kept_truths, masks = [], [], []
    for i in rows:
        image = base / str(table[column].iloc[i])
        if not image.is_file():
            raise StudyError(f"the case list names {image}, which does not exist")
        files.append(image)
        kept_truths.append(truths[i])
        mask = table["mask"].iloc[i] if "mask" in table else None
        positive = truths[i] in ("artifact", "synthetic")
        masks.append(base / str(mask) if positive and isinstance(mask, str) and mask else None)
    return files, kept_truths, masks
