"""A two-case study made from real files (pydicom's CT_small.dcm and a small anisotropic NIfTI volume),
an admin and two readers: the setup the study-export tests share."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from pydicom.data import get_testdata_file
from sqlalchemy.orm import Session, sessionmaker

from db.migrate import upgrade
from db.models import Arm, Role
from db.repository import create_account
from db.session import make_engine, make_session_factory, session_scope
from workflows.studies import create_study_from_files


@dataclass
class TwoCaseStudy:
    engine: object
    factory: sessionmaker[Session]
    study_id: int
    cases: dict  # case name -> Case row (detached, loaded)
    ids: tuple[int, int, int]  # admin, ann, bob


def two_case_study(tmp_path: Path, title: str, arms: tuple[Arm, Arm]) -> TwoCaseStudy:
    """Case 1: CT_small.dcm (PHI inside); case 2: a 6 x 5 x 3 NIfTI with 1 x 2 x 3 mm voxels. Ann and
    Bob read in ``arms``."""
    data = np.random.default_rng(0).uniform(0, 100, size=(6, 5, 3)).astype(np.float32)
    nifti = tmp_path / "vol.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 2.0, 3.0, 1.0])), nifti)
    engine = make_engine(f"sqlite:///{tmp_path / 'study.db'}")
    upgrade(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        admin = create_account(s, "admin", "admin-pass-1", Role.ADMIN)
        ann, bob = create_account(s, "ann", "ann-password"), create_account(s, "bob", "bob-password")
        study = create_study_from_files(s, admin, title, [get_testdata_file("CT_small.dcm"), nifti],
                                        {ann.id: arms[0], bob.id: arms[1]}, studies_dir=tmp_path / "studies")
        return TwoCaseStudy(engine, factory, study.id, {c.name: c for c in study.cases}, (admin.id, ann.id, bob.id))
