"""Studies from files, and their export: the steps that touch both the scans and the database.

* :func:`create_study_from_files`: de-identify every scan into the study's folder
  (:mod:`core.deidentify`), read its display geometry, optionally score it with SAFEGEN and keep
  the heatmap for the AI arm, then :func:`db.repository.create_study`.
* :func:`export_study`: ``answers.csv`` (tidy, one row per answer), one NIfTI mask per case and
  reader on the scan's own voxel grid and affine (drawn display slices put back with
  :meth:`core.types.Volume.stack_display_slices`), and ``summary.json`` (per-question statistics,
  agreement, the mean heatmap usefulness with its confidence interval, reading time).
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from sqlalchemy.orm import Session

from core.deidentify import deidentify_file
from core.io import detect_format, load_volume, to_file_layout
from core.resources import PROJECT_ROOT
from core.study_stats import agreement, answers_frame, mean_with_ci, question_summary, reading_time
from db.models import Arm, Reader, Study
from db.repository import CaseSpec, StudyError, answers_table, create_study, study_masks

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
) -> Study:
    """A study whose cases are de-identified copies of ``files`` (see the module docstring).

    Args:
        session, admin, title, readers, instructions, questions, seed: as :func:`db.repository.create_study`.
        files: scans (NIfTI, DICOM, PNG, JPEG); each becomes ``case-NNN`` in a new study folder.
        scorer: a :class:`core.scoring.Scorer` to make the AI arm's heatmaps (None: no AI output).
        studies_dir: parent of the study folders (default :func:`default_studies_dir`).
        progress: called with the number of files done.
    """
    folder = Path(studies_dir or default_studies_dir()) / uuid.uuid4().hex[:12]
    specs = []
    for number, path in enumerate(files, start=1):
        pseudonym = f"case-{number:03d}"
        stored = deidentify_file(Path(path), folder, pseudonym)
        volume = load_volume(stored)
        rows, cols = volume.display_slice(0).shape
        heatmap_path, score = None, None
        if scorer is not None:
            result = scorer.score_volume(volume)
            heatmap_path = folder / f"{pseudonym}_heatmap.npy"
            np.save(heatmap_path, result.heatmap.astype(np.float32))
            score = float(result.score)
        specs.append(CaseSpec(pseudonym, str(stored), (rows, cols, volume.n_slices),
                              None if heatmap_path is None else str(heatmap_path), score))
        if progress is not None:
            progress(1)
    return create_study(session, admin, title, specs, readers, instructions=instructions, questions=questions,
                        seed=seed)


def mask_volume(case_scan: Path, slices: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A reader's drawn display-slice masks as one uint8 array in the scan file's own index order, and
    the file's affine (as ``score`` writes its masks), so the mask overlays the scan in any viewer."""
    volume = load_volume(case_scan)
    rows, cols = volume.display_slice(0).shape
    display = [slices.get(i, np.zeros((rows, cols), bool)) for i in range(volume.n_slices)]
    mask = to_file_layout(volume.stack_display_slices(display).astype(np.uint8), Path(case_scan))
    affine = nib.load(str(case_scan)).affine if detect_format(Path(case_scan)).startswith("nifti") else np.eye(4)
    return mask, affine


def export_study(session: Session, admin: Reader, study_id: int, out_dir: Path) -> dict[str, Path]:
    """Write the study's answers, masks and summary to ``out_dir`` (admin only); returns the paths."""
    study = session.get(Study, study_id)
    if study is None:
        raise StudyError(f"there is no study {study_id}")
    rows = answers_table(session, admin, study_id)  # admin check inside study_masks below
    exported = study_masks(session, admin, study_id)
    out_dir = Path(out_dir)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    frame = answers_frame(rows)
    paths = {"answers": out_dir / "answers.csv", "summary": out_dir / "summary.json"}
    frame.to_csv(paths["answers"], index=False)
    for case, reader_name, slices in exported:
        mask, affine = mask_volume(Path(case.scan_path), slices)
        target = out_dir / "masks" / f"{case.name}_{reader_name}.nii.gz"
        image = nib.Nifti1Image(mask, affine)
        image.set_data_dtype(np.uint8)
        nib.save(image, str(target))
        paths[f"mask:{case.name}:{reader_name}"] = target
    likert = [q["key"] for q in study.questions if q["kind"] == "likert"]
    summary = {
        "study": study.title,
        "cases": len(study.cases),
        "questions": _records(question_summary(frame, study.questions)),
        "agreement": {key: agreement(frame, key) for key in likert},
        "heatmap_useful_mean_ci": mean_with_ci(frame, "heatmap_useful") if "heatmap_useful" in likert else None,
        "reading_time": _records(reading_time(frame)) if len(frame) else {},
    }
    paths["summary"].write_text(json.dumps(summary, indent=1, default=_plain))
    return paths


def _records(frame: pd.DataFrame) -> dict:
    return {str(k): {c: _plain(v) for c, v in row.items()} for k, row in frame.iterrows()} if len(frame) else {}


def _plain(value):
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
