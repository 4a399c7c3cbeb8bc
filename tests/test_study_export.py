"""A study made from real files, read by two readers, exported: de-identified cases, masks in place."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
from pydicom.data import get_testdata_file

from core.io import load_volume
from core.types import to_display
from db.migrate import upgrade
from db.models import Arm, Role
from db.repository import create_reader, next_case, reading_list, save_read
from db.session import make_engine, make_session_factory, session_scope
from db.studies import create_study_from_files, export_study


def test_a_study_from_files_exports_answers_summary_and_masks_on_the_scans_grid(tmp_path):
    # Two cases: a real DICOM (PHI inside) and a small anisotropic NIfTI volume.
    data = np.random.default_rng(0).uniform(0, 100, size=(6, 5, 3)).astype(np.float32)
    nifti = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 2.0, 3.0, 1.0])), nifti)
    dicom = get_testdata_file("CT_small.dcm")
    engine = make_engine(f"sqlite:///{tmp_path / 'study.db'}")
    upgrade(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        admin = create_reader(s, "admin", "admin-pass-1", Role.ADMIN)
        ann, bob = create_reader(s, "ann", "ann-password"), create_reader(s, "bob", "bob-password")
        study = create_study_from_files(s, admin, "Export check", [dicom, nifti], {ann.id: Arm.AI, bob.id: Arm.UNAIDED},
                                        studies_dir=tmp_path / "studies")
        study_id, cases = study.id, {c.name: c for c in study.cases}
        ids = (admin.id, ann.id, bob.id)
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
                      answers={"realism": 4, "heatmap_useful": 5, "artifact_present": True, "actionable": 4})
        while (case := next_case(s, bob, study_id)) is not None:
            save_read(s, bob, case.id, expected_version=0, seconds=10.0,
                      answers={"realism": 4, "artifact_present": False, "actionable": 3})
    with session_scope(factory) as s:
        paths = export_study(s, s.get(Reader, ids[0]), study_id, tmp_path / "export")

    answers = pd.read_csv(paths["answers"])
    assert len(answers) == 2 * 4 + 2 * 3 and set(answers["reader"]) == {"ann", "bob"}
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
    assert mask.shape == data.shape and np.allclose(mask.affine, volume.affine)
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
    from db.studies import case_ai_settings, safegen_mask

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
        admin = create_reader(s, "admin", "admin-pass-1", Role.ADMIN)
        ann = create_reader(s, "ann", "ann-password")
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
