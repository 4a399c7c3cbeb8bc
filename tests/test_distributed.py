"""``score --workers N`` and ``score --ray-address``: the same rows, heatmaps and masks as the one-process run.

A folder of six of the demo's generated PNGs and one corrupt file is scored once in this process (the
reference), then by a pool of two workers, by a pool whose worker dies on one file the first time, and by a
local Ray of two CPUs whose worker dies the same way (Ray retries the task). Every row must equal the
reference's in every column but ``seconds``, the corrupt file must be an error row, and every heatmap and
mask must be byte-identical. A run cut short is resumed from its partial scores.csv.
"""

import csv
import shutil

import pytest
import torch

from core.resources import PROJECT_ROOT
from workflows.distributed import DIE_ONCE_ENV, shards
from workflows.score_folder import COLUMNS, score_folder

DEMO = PROJECT_ROOT / "demo" / "generated_mri_t1"
TIMING = "seconds"
BAD = "zz-corrupt.png"
VICTIM = "ddim-10-03.png"  # the file whose worker is killed the first time it is met


def read_rows(out):
    with open(out / "scores.csv", newline="") as stream:
        return [{k: v for k, v in row.items() if k != TIMING} for row in csv.DictReader(stream)]


def map_bytes(out):
    return {p.relative_to(out): p.read_bytes() for folder in ("heatmaps", "masks") for p in sorted((out / folder).iterdir())}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    inputs = tmp_path_factory.mktemp("distributed") / "in"
    inputs.mkdir()
    for name in sorted(p.name for p in DEMO.glob("*.png"))[:6]:
        shutil.copy(DEMO / name, inputs / name)
    (inputs / BAD).write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a picture" * 4)
    return inputs


@pytest.fixture(scope="module")
def reference(folder, tmp_path_factory):
    """The one-process run, with one torch thread as each worker has: a convolution summed by two threads can
    differ in the last float32 bit (heatmaps within 2e-6 on 200 slices; no score digit, no mask pixel)."""
    out = tmp_path_factory.mktemp("one_process")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert score_folder(folder, out) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def check_same(reference, out):
    rows = read_rows(out)
    assert list(rows[0]) == [c for c in COLUMNS if c != TIMING]
    assert rows == read_rows(reference)
    assert [r["file"] for r in rows][-1] == BAD and rows[-1]["error"] and not rows[-1]["score"]
    assert sum(bool(r["score"]) for r in rows) == 6
    assert map_bytes(out) == map_bytes(reference)
    assert len(map_bytes(out)) == 12


def test_shards_keep_order_and_put_files_of_one_stem_together():
    assert shards(["a", "b", "c", "d", "e"], 2) == [[0], [1], [2], [3], [4]]
    assert shards(["a", "b", "a", "c"], 1) == [[0, 2], [1], [3]]
    assert shards([f"s{i}" for i in range(80)], 2) == [list(range(i, i + 8)) for i in range(0, 80, 8)]


def test_two_local_workers_write_what_one_process_writes_even_when_one_dies(folder, reference, tmp_path,
                                                                           monkeypatch):
    """One pool run checks both: two workers give the single process's rows and maps, and the files of
    a worker that died are scored again (a separate run without a death took 11 s more of the suite)."""
    marker = tmp_path / "died"
    monkeypatch.setenv(DIE_ONCE_ENV, f"{VICTIM}:{marker}")
    out = tmp_path / "out"
    assert score_folder(folder, out, workers=2) == 0
    assert marker.exists()  # a worker did die on the file
    check_same(reference, out)


def test_a_local_ray_writes_what_one_process_writes_even_when_a_worker_dies(folder, reference, tmp_path,
                                                                            monkeypatch):
    ray = pytest.importorskip("ray")
    marker = tmp_path / "died"
    monkeypatch.setenv(DIE_ONCE_ENV, f"{VICTIM}:{marker}")  # before ray.init: its workers inherit it
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "out"
        assert score_folder(folder, out, ray_address="auto") == 0
    finally:
        ray.shutdown()
    assert marker.exists()  # a Ray worker did die on the file, and Ray ran its task again
    check_same(reference, out)


def test_resume_keeps_the_finished_rows_of_a_cut_run_and_scores_the_rest(folder, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    lines = (out / "scores.csv").read_text().splitlines(keepends=True)
    (out / "scores.csv").write_text("".join(lines[:4]) + lines[4][:20])  # header, 3 rows, a row cut mid-line
    (out / "heatmaps" / "ddim-10-01.nii.gz").unlink()  # a finished row whose map is gone is scored again
    with open(reference / "scores.csv", newline="") as stream:
        before = {row["file"]: row["seconds"] for row in csv.DictReader(stream)}
    assert score_folder(folder, out, resume=True, workers=2) == 0
    check_same(reference, out)
    with open(out / "scores.csv", newline="") as stream:
        after = {row["file"]: row["seconds"] for row in csv.DictReader(stream)}
    kept = [name for name in after if after[name] == before[name]]
    assert {"ddim-10-00.png", "ddim-10-02.png"} <= set(kept)  # kept as written, not scored again
