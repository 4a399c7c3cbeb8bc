"""The command line: real files in, JSON or files out, exit status 2 and a readable message on bad input."""

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from core.demo import DEMO_CASES, available_cases
from core.io import load_volume
from workflows.cli import EXIT_BAD_INPUT, main


def test_info_prints_what_safegen_sees(tmp_path, capsys):
    path = tmp_path / "gradient.png"
    Image.fromarray((np.add.outer(np.arange(30), np.arange(20)) * 4).astype(np.uint8)).save(path)
    assert main(["info", str(path), "--modality", "XR"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["shape"] == [30, 20] and summary["modality"] == "XR"
    assert (summary["intensity_min"], summary["intensity_max"]) == (0.0, 192.0)


def test_info_on_bad_input_exits_2_with_the_reason(tmp_path, capsys):
    path = tmp_path / "scan.nii.gz"
    path.write_text("this is not a scan\n" * 10)
    assert main(["info", str(path)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.startswith("error: scan.nii.gz is not a NIfTI, DICOM, PNG or JPEG file")
    assert main(["info", str(tmp_path / "missing.nii")]) == EXIT_BAD_INPUT


def test_build_reference_then_make_benchmark(tmp_path, capsys):
    reference, benchmark = tmp_path / "reference", tmp_path / "benchmark"
    assert main(["build-reference", "--out", str(reference), "--augment", "0"]) == 0
    assert main(["make-benchmark", "--reference", str(reference), "--out", str(benchmark), "--n-per", "1"]) == 0
    labels = pd.read_csv(benchmark / "labels.csv")
    assert (labels.label == 1).sum() == 9 * 3  # 9 kinds x 3 severities x 1
    assert set(labels.kind) - {"clean"} == {
        "blur", "checkerboard", "lesion", "noise_patch", "duplication", "dropout", "ringing", "ghosting", "bias_spot",
    }
    assert all((benchmark / p).is_file() for p in labels["image"]) and all((benchmark / p).is_file() for p in labels["mask"])
    assert "27 with artifacts" in capsys.readouterr().out


def test_make_benchmark_without_a_reference_says_what_to_run(tmp_path, capsys):
    assert main(["make-benchmark", "--reference", str(tmp_path / "nothing")]) == EXIT_BAD_INPUT
    assert "build-reference" in capsys.readouterr().err


@pytest.mark.parametrize("case", DEMO_CASES, ids=[c.key for c in DEMO_CASES])
def test_every_present_demo_case_loads(case):
    if not case.available:
        pytest.skip(f"{case.path} is not installed ({case.provenance})")
    volume = load_volume(case.path, modality=case.modality)
    assert volume.modality is case.modality
    assert volume.array.ndim in (2, 3) and np.isfinite(volume.array).all()


def test_the_demo_always_has_the_pip_shipped_scans():
    keys = {c.key for c in available_cases()}
    assert {"mni152_t1", "pancreas_ct", "chest_cr", "ct_small"} <= keys


def test_train_autoencoder_writes_weights_and_a_training_record(tmp_path, capsys):
    reference, weights = tmp_path / "reference", tmp_path / "ae.pt"
    assert main(["build-reference", "--out", str(reference), "--augment", "0"]) == 0
    assert main(["train", "autoencoder", "--reference", str(reference), "--out", str(weights),
                 "--steps", "3", "--batch-size", "2"]) == 0
    record = json.loads(weights.with_suffix(".json").read_text())
    assert record["detector"] == "autoencoder" and record["steps"] == 3 and record["seed"] == 0
    assert record["history"]["steps"] == [3] and len(record["history"]["val_loss"]) == 1
    assert "mni152" in record["reference_subjects"]
    assert "val loss" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["evaluate", "--methods", "all", "--out", "OUT"], ["evaluate", "--methods", "all"]])
def test_evaluate_methods_takes_the_profiles_benchmark_and_reference_when_none_is_given(argv, tmp_path, monkeypatch):
    """`make evaluate` runs `evaluate --methods all --out out/evaluation`: with --out given, the profile's
    benchmark and reference were never filled in and the comparison read a benchmark path of None."""
    import workflows.cli as cli
    from core.profiles import get_profile

    seen = {}
    monkeypatch.setattr(cli, "_compare_methods", lambda args: seen.update(vars(args)) or 0)
    argv = [str(tmp_path / a) if a == "OUT" else a for a in argv]
    assert cli.main(argv) == 0
    profile = get_profile("mri_t1")
    assert seen["benchmark"] == profile.benchmark_dir and seen["reference"] == profile.reference_dir
    assert seen["out"] == (tmp_path / "OUT" if "--out" in argv else profile.evaluation_dir)
