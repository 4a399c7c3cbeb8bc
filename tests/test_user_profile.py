"""Bring your own data: subjects of a user's folder, the saved profile, its normalisation, the
train-profile command's refusals, and one whole tiny run of it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from core.io import load_volume
from core.preprocess import normalise_for_models
from core.profiles import MRI_T1, Profile, all_profiles, get_profile
from core.reference import build_reference, folder_slices
from core.types import Modality, Window
from workflows.user_profile import check_name, folder_subjects, make_user_profile, training_steps

def write_png(path: Path, image: np.ndarray) -> None:
    Image.fromarray(image.astype(np.uint8)).save(path)


def disc(size: int = 40, radius: int = 14, value: int = 200) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < radius**2, value, 0)


@pytest.fixture()
def folder(tmp_path):
    """Two PNG slices and one small 3-D NIfTI volume."""
    root = tmp_path / "mine"
    root.mkdir()
    write_png(root / "a.png", disc(value=200))
    write_png(root / "b.png", disc(value=100))
    volume = np.zeros((20, 20, 12), np.float32)
    volume[5:15, 5:15, :] = 300.0 + 10.0 * np.arange(10)[:, None, None]
    nib.save(nib.Nifti1Image(volume, np.diag([1.0, 1.0, 2.0, 1.0])), str(root / "vol.nii.gz"))
    return root


def test_a_folder_gives_one_subject_per_volume_and_one_for_the_slices(folder):
    subjects, modality = folder_subjects(folder)
    assert [s.name for s in subjects] == ["slices", "vol"]
    assert subjects[0].path == folder.resolve() and subjects[0].description == "the 2 2-D images of the folder"
    assert subjects[1].path == (folder / "vol.nii.gz").resolve()
    assert modality == {Modality.OTHER, Modality.MR}  # the PNGs carry none; the NIfTI reads as MR
    with pytest.raises(ValueError, match=r"mixes modalities \(MR, OT; .*give --modality"):
        make_user_profile("mixed", folder)


def test_unreadable_files_are_named_together(folder):
    (folder / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "d.dcm").write_bytes(b"nonsense")
    with pytest.raises(ValueError, match=r"cannot read c\.png: .*; d\.dcm: "):
        folder_subjects(folder)
    (folder.parent / "empty").mkdir()
    with pytest.raises(ValueError, match="no .nii"):
        folder_subjects(folder.parent / "empty")


@pytest.mark.parametrize("name", ["MRI", "1abc", "my-t1", "", "mri_t1", "ct_head"])
def test_bad_or_taken_names_are_refused(name):
    with pytest.raises(ValueError):
        check_name(name)


def test_the_saved_profile_is_found_by_folder_and_round_trips(folder, tmp_path, monkeypatch):
    home = tmp_path / "profiles" / "mine_mr"
    profile = make_user_profile("mine_mr", folder, home=home, modality=Modality.MR)
    assert (home / "profile.json").is_file()
    assert get_profile(str(home)) == profile  # every field, the subjects' paths included
    assert profile.modality is Modality.MR and profile.window is None
    assert profile.reference_dir == home / "data" / "reference"
    assert profile.model_file("diffusion") == home / "diffusion_mine_mr.pt"
    assert not profile.is_trained()
    assert MRI_T1.reference_dir == Path("data/reference")  # the built-in profiles keep their paths
    assert MRI_T1.model_file("autoencoder").parent.name == "models"
    assert "mine_mr" in all_profiles(tmp_path / "profiles") and "mine_mr" not in all_profiles(tmp_path / "none")
    import core.profiles

    renamed = make_user_profile("other_name", folder, home=tmp_path / "profiles" / "folder_x", modality=Modality.MR)
    monkeypatch.setattr(core.profiles, "USER_PROFILES_DIR", tmp_path / "profiles")
    assert get_profile("other_name") == renamed and get_profile("mine_mr") == profile  # by name, any folder
    ct = make_user_profile("mine_ct", folder, home=tmp_path / "ct", modality=Modality.CT,
                           window=Window(50.0, 400.0, "user"))
    assert get_profile(str(tmp_path / "ct")).window == Window(50.0, 400.0, "user")
    with pytest.raises(ValueError, match="CT profiles only"):
        make_user_profile("mine_win", folder, home=tmp_path / "w", modality=Modality.MR, window=Window(40.0, 80.0))
    with pytest.raises(ValueError, match="not a profile folder"):
        Profile.load(tmp_path / "nothing")
    assert ct.augment.noise == "gaussian"


def test_slices_are_normalised_as_they_will_be_scored(folder, tmp_path):
    """A PNG is scored on its own scale (0 -> 0, its peak -> 1): the reference slices must be too."""
    profile = make_user_profile("mine", folder, home=tmp_path / "p", modality=Modality.MR)
    slices = folder_slices(profile.subjects[0], modality=profile.modality, window=profile.window)
    assert slices.images.shape == (2, 128, 128)
    for image, name in zip(slices.images, ["a.png", "b.png"], strict=True):
        expected = normalise_for_models(load_volume(folder / name), profile.modality, profile.window).array
        assert expected.max() == pytest.approx(1.0)  # each disc at its own peak
        assert image.max() == pytest.approx(1.0, abs=1e-3) and image.min() == pytest.approx(0.0)


def test_too_few_slices_for_four_splits_is_said_plainly(folder, tmp_path):
    profile = make_user_profile("tiny", folder, home=tmp_path / "p", modality=Modality.MR)
    with pytest.raises(ValueError, match="split is empty"):
        build_reference(tmp_path / "ref", profile=profile)


def test_train_profile_runs_the_same_commands_as_the_built_in_profiles(folder, tmp_path):
    profile = make_user_profile("mine", folder, home=tmp_path / "p", modality=Modality.MR)
    steps = training_steps(profile, seed=3, steps=10)
    assert [s[0] for s in steps] == ["build-reference", "make-benchmark", "make-benchmark", "train", "train", "train",
                                     "calibrate", "calibrate-explainers"]
    assert [s[1] for s in steps if s[0] == "train"] == ["autoencoder", "diffusion", "vae"]
    assert all(["--seed", "3", "--steps", "10"] == s[-4:] for s in steps if s[0] == "train")
    assert ["--seed", "101"] == steps[1][-4:-2] and ["--seed", "202"] == steps[2][-4:-2]  # as make benchmark


def test_the_command_refuses_bad_input_with_a_clear_message(folder, tmp_path, capsys):
    from workflows.cli import main

    def run_cli(*args: str) -> SimpleNamespace:
        status = main(list(args))
        return SimpleNamespace(returncode=status, stderr=capsys.readouterr().err)

    missing = run_cli("train-profile", "mine", "--images", str(tmp_path / "nope"), "--out", str(tmp_path / "p"))
    assert missing.returncode == 2 and "is not a folder" in missing.stderr
    window = run_cli("train-profile", "mine", "--images", str(folder), "--out", str(tmp_path / "p"),
                     "--window", "40")
    assert window.returncode == 2 and "LEVEL,WIDTH" in window.stderr
    taken = run_cli("train-profile", "ct_head", "--images", str(folder), "--out", str(tmp_path / "p"))
    assert taken.returncode == 2 and "built-in profile" in taken.stderr
    short = run_cli("train-profile", "mine", "--images", str(folder), "--out", str(tmp_path / "p"), "--steps", "1",
                    "--modality", "MR")
    assert short.returncode == 2 and "stopped at `build-reference`" in short.stderr and "split is empty" in short.stderr
    unknown = run_cli("score", str(folder), "--out", str(tmp_path / "o"), "--profile", "nobody")
    assert unknown.returncode != 0 and "unknown profile 'nobody'" in unknown.stderr


def test_train_profile_end_to_end_on_a_folder_of_png_slices(tmp_path, monkeypatch, capsys):
    """36 real MNI152 slices as 16-bit PNGs -> a trained (3 steps: a run of the pipeline, not a useful
    model), calibrated profile that ``score`` and the profile list find by name."""
    import pandas as pd

    import core.profiles
    from workflows.cli import main
    from core.profiles import KNOWN_SUBJECTS
    from core.reference import subject_slices

    monkeypatch.setattr(core.profiles, "USER_PROFILES_DIR", tmp_path / "profiles")
    images = tmp_path / "slices"
    images.mkdir()
    slices = subject_slices(KNOWN_SUBJECTS[0]).images
    for i, image in enumerate(slices[::3][:36]):
        Image.fromarray(np.round(image * 65535).astype(np.uint16)).save(images / f"mni_{i:03d}.png")
    status = main(["train-profile", "byod_e2e", "--images", str(images), "--modality", "MR", "--steps", "3",
                   "--augment", "0", "--n-per", "1", "--shap-samples", "8"])
    out = capsys.readouterr()
    assert status == 0, out.err[-2000:]
    assert "trained profile byod_e2e" in out.out
    profile = get_profile("byod_e2e")
    assert profile.home == tmp_path / "profiles" / "byod_e2e" and profile.is_trained()
    assert profile.explainer_file().is_file() and profile.model_file("vae").is_file()
    assert "byod_e2e" in all_profiles()
    manifest = (profile.reference_dir / "manifest.json").read_text()
    assert '"profile": "byod_e2e"' in manifest and '"name": "slices"' in manifest
    import json

    sidecar = json.loads(profile.model_file("diffusion").with_suffix(".json").read_text())
    assert sidecar["profile"] == "byod_e2e" and sidecar["steps"] == 3 and sidecar["reference_subjects"] == ["slices"]
    few = tmp_path / "few"
    few.mkdir()
    for name in ("mni_000.png", "mni_017.png", "mni_035.png"):
        (few / name).write_bytes((images / name).read_bytes())
    assert main(["score", str(few), "--out", str(tmp_path / "scored"), "--profile", "byod_e2e"]) == 0
    scores = pd.read_csv(tmp_path / "scored" / "scores.csv")
    assert len(scores) == 3 and set(scores["profile"]) == {"byod_e2e"} and scores["error"].isna().all()
    assert scores["tau"].nunique() == 1  # the profile's own calibrated tau

    # The dashboard lists it and screens with it.
    from streamlit.testing.v1 import AppTest

    from tests.test_screening import finish_batch
    from ui.state import BATCH_FOLDER, Keys

    at = AppTest.from_file(str(Path(__file__).resolve().parent.parent / "app.py"), default_timeout=120)
    at.session_state[Keys.BATCH_SOURCE] = BATCH_FOLDER
    at.session_state[Keys.BATCH_FOLDER] = str(few)
    at.run()
    at.switch_page("pages/batch_screening.py")
    at.run()
    choice = at.selectbox(key=Keys.BATCH_PROFILE)
    assert choice.options == ["Brain MRI T1", "Head CT (brain window)", "byod_e2e (user profile)"]
    choice.set_value("byod_e2e")
    at.run()
    at.button(key=Keys.BATCH_RUN).click()
    at.run()
    finish_batch(at)
    ranked = at.dataframe[0].value.set_index("file")
    for name in ("mni_000.png", "mni_017.png", "mni_035.png"):  # the same models and calibration as score's
        assert ranked.loc[name, "score"] == pytest.approx(scores.set_index("file").loc[name, "score"], abs=1e-3)
