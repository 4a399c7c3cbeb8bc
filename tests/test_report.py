"""The generator report card end to end (workflows/report.py): the ``report`` command on a small planted
folder (real training slices copied exactly, real held-out slices, noise), its bad input, and the report
card on the Batch screening page."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core.profiles import get_profile
from core.reference import load_split
from workflows.cli import main
from ui.state import Keys

GROUPS = ("copies", "held-out", "noise")


def _save(image: np.ndarray, path) -> None:
    Image.fromarray(np.round(np.clip(image, 0, 1) * 65535).astype(np.uint16)).save(path)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """4 un-augmented training slices copied exactly, 4 real test-split slices (never in the training or
    calibration splits), 4 images of uniform noise (seed 3), with a manifest; the expected twins."""
    from core.reference import ensure_reference

    directory = ensure_reference(get_profile("mri_t1").reference_dir, "mri_t1")  # as the report does
    root = tmp_path_factory.mktemp("generated")
    train, test = load_split(directory, "train"), load_split(directory, "test")
    copies = np.flatnonzero(train.augmentation == 0)[[3, 15, 27, 39]]
    held = np.flatnonzero(test.augmentation == 0)[[2, 11, 20, 29]]
    noise = np.random.default_rng(3).random((4, 128, 128))
    rows, twins = [], {}
    for n, i in enumerate(copies):
        name = f"copy-{n}.png"
        _save(train.images[i], root / name)
        twins[name] = f"{train.subject[i]} slice {int(train.slice_index[i])}"
        rows.append((name, "copies"))
    for n, i in enumerate(held):
        _save(test.images[i], root / f"held-{n}.png")
        rows.append((f"held-{n}.png", "held-out"))
    for n, image in enumerate(noise):
        _save(image, root / f"noise-{n}.png")
        rows.append((f"noise-{n}.png", "noise"))
    pd.DataFrame(rows, columns=["file", "group"]).to_csv(root / "manifest.csv", index=False)
    return root, twins


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def _report_on_one_thread(argv: list[str]) -> str:
    """``main(argv)`` with one torch thread, as each worker of ``--workers`` has (two threads may sum a
    convolution in another order: the last float32 bit of a score or a feature); its stderr."""
    import contextlib
    import io

    import torch

    threads, err = torch.get_num_threads(), io.StringIO()
    torch.set_num_threads(1)
    try:
        with contextlib.redirect_stderr(err):
            assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    return err.getvalue()


@pytest.fixture(scope="module")
def one_process(planted, tmp_path_factory):
    """``report`` screening in this process; its folder and stderr."""
    out = tmp_path_factory.mktemp("report") / "out"
    return out, _report_on_one_thread(["report", str(planted[0]), "--out", str(out)])


def test_report_command_flags_the_planted_copies_and_no_held_out_slice(planted, one_process):
    root, twins = planted
    out, err = one_process
    assert "4 likely copies" in err
    screened = pd.read_csv(out / "screening" / "scores.csv", keep_default_na=False)  # as `score` writes it
    assert sorted(screened["file"]) == sorted(f.name for f in root.glob("*.png"))
    assert len(list((out / "screening" / "masks").glob("*.nii.gz"))) == 12
    for name in ("report.md", "report.json", "groups.csv", "images.csv", "precision_recall.png", "similarity.png",
                 "copies.png"):
        assert (out / name).stat().st_size > 0, name
    images = pd.read_csv(out / "images.csv", keep_default_na=False)
    assert len(images) == 12 and (images["error"] == "").all()
    copies = images[images["likely_copy"].astype(str) == "True"]
    assert sorted(copies["file"]) == sorted(twins)  # every planted copy, nothing else
    assert dict(zip(copies["file"], copies["nearest_training"], strict=True)) == twins  # the slice it copies
    assert (copies["ncc"].astype(float) > 0.999).all()
    held = images[images["group"] == "held-out"]
    margins = held["copy_margin"].astype(float)
    print(f"\ncopy margins: planted {copies['copy_margin'].astype(float).round(4).tolist()}, held-out real "
          f"{margins.round(4).tolist()}")
    assert (margins < 0).all()
    assert images["artifact_score"].astype(float).notna().all()
    groups = pd.read_csv(out / "groups.csv")
    assert groups["group"].tolist() == list(GROUPS) and groups["images"].tolist() == [4, 4, 4]
    assert groups["likely copies"].tolist() == [4, 0, 0]
    by_group = groups.set_index("group")
    # the copies are real training images: nearer the real set than noise is, by far
    assert by_group.loc["copies", "KID"] < by_group.loc["noise", "KID"] / 10
    assert by_group.loc["copies", "precision"] == 1.0 and by_group.loc["noise", "precision"] == 0.0
    report = _strict((out / "report.json").read_text())
    assert report["copy_threshold"]["neighbour_slices"] == 2
    assert report["copy_threshold"]["calibration_images"] == 465  # val + calib
    assert [g["group"] for g in report["groups"]] == list(GROUPS)
    assert len(report["likely_copies"]) == 4
    markdown = (out / "report.md").read_text()
    assert "not comparable with published FIDs on Inception-v3 or RadImageNet" in markdown
    for section in ("## Fidelity and coverage", "## Diversity", "## Memorisation", "## Artifacts"):
        assert section in markdown


def test_report_with_two_workers_writes_what_one_process_writes(planted, one_process, tmp_path):
    """--workers 2 screens in a process pool (the engine of `score --workers`, also run on Ray in
    tests/test_distributed.py); the card takes the scores from the screening, so every table is the same."""
    out = tmp_path / "out"
    _report_on_one_thread(["report", str(planted[0]), "--out", str(out), "--workers", "2"])  # the card's thread
    for name in ("images.csv", "groups.csv", "screening/masks/copy-0.nii.gz", "screening/heatmaps/noise-3.nii.gz"):
        assert (out / name).read_bytes() == (one_process[0] / name).read_bytes(), name
    screened = [pd.read_csv(o / "screening" / "scores.csv").drop(columns="seconds") for o in (out, one_process[0])]
    pd.testing.assert_frame_equal(*screened)
    ours, theirs = (json.loads((o / "report.json").read_text()) for o in (out, one_process[0]))
    assert {k: v for k, v in ours.items() if k not in ("generated", "seconds")} == {
        k: v for k, v in theirs.items() if k not in ("generated", "seconds")}


def test_report_against_a_folder_of_real_images_finds_exact_copies(planted, tmp_path, capsys):
    """--real: the folder is the training set; the threshold is leave-one-out within it."""
    root, twins = planted
    real = tmp_path / "real"
    real.mkdir()
    directory = get_profile("mri_t1").reference_dir
    train = load_split(directory, "train")
    for n, i in enumerate(np.flatnonzero(train.augmentation == 0)[::3]):  # 16 slices, 3 apart: the copies' among them
        _save(train.images[i], real / f"real-{n:02d}.png")
    out = tmp_path / "report"
    assert main(["report", str(root), "--real", str(real), "--out", str(out)]) == 0
    images = pd.read_csv(out / "images.csv", keep_default_na=False)
    flagged = set(images.loc[images["likely_copy"].astype(str) == "True", "file"])
    assert flagged == set(twins)
    report = _strict((out / "report.json").read_text())
    assert report["copy_threshold"]["neighbour_slices"] is None
    assert "no volume or slice ids" in report["copy_threshold"]["rule"]


@pytest.mark.parametrize("case", ["missing", "empty", "no images", "too few real"])
def test_report_command_refuses_bad_input_with_an_error_line(case, tmp_path, capsys, planted):
    root, _ = planted
    argv = ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]
    if case == "empty":
        argv[1] = str(tmp_path)
    elif case == "no images":
        (tmp_path / "readme.txt").write_text("not an image")
        argv[1] = str(tmp_path)
    elif case == "too few real":
        real = tmp_path / "real"
        real.mkdir()
        for name in ("copy-0.png", "copy-1.png"):
            (real / name).write_bytes((root / name).read_bytes())
        argv = ["report", str(root), "--real", str(real), "--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: ")
    assert not (tmp_path / "out" / "report.md").exists()


def test_batch_page_makes_the_report_card_of_the_scored_folder(planted):
    from tests.test_screening import batch_page_on_folder

    root, _ = planted
    at = batch_page_on_folder(root, finish=True, timeout=300)
    at.button(key=Keys.BATCH_REPORT_RUN).click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    tables = [d.value for d in at.dataframe]
    fidelity = next(t for t in tables if "KID" in t.columns)
    assert fidelity["group"].tolist() == list(GROUPS)
    copies = next(t for t in tables if "likely copies" in t.columns)
    assert copies["likely copies"].tolist() == [4, 0, 0]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Likely copies"] == "4" and metrics["Images"] == "12"
    assert len(at.get("plotly_chart")) == 3  # the batch's histogram, precision / recall, similarity
    assert Keys.BATCH_REPORT in at.session_state
