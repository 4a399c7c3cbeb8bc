"""``score --workers N`` and ``score --ray-address ADDRESS``: one run's files sharded over processes, merged back in order.

The shard and merge logic lives here once, for both engines:

* :func:`shards` cuts the files into small tasks (a few files each, so that a lost worker costs little and the
  progress bar moves); files that share an output stem go to the same task in their order, so the rule "the
  first scored file keeps the name" (:class:`workflows.score_folder.FolderRun`) holds exactly as in one process.
* :func:`score_chunk` is what a worker runs: the run's own :meth:`~workflows.score_folder.FolderRun.rows`,
  with the models loaded once per worker process (kept in :data:`_RUNS` across its tasks) and one torch thread.
* :func:`score_distributed` hands the tasks to a local process pool or to Ray tasks, puts each task's rows back
  at their files' places and returns the rows in the files' order: the rows of the one-process run (timing
  aside), streamed in order as they come, and the same heatmaps and masks (each worker writes its files' maps to OUT_DIR, which on a cluster
  must be a folder every node shares).

A lost worker (killed, out of memory) loses its task, not the run: the pool restarts and resubmits what had not
come back, Ray retries the task (``max_retries``); after :data:`MAX_RETRIES` losses the task's files get error
rows saying so.
"""

from __future__ import annotations

import math
import os
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

from tqdm.auto import tqdm

MAX_RETRIES = 3  # losses of a worker a task survives
FILES_PER_TASK = 8  # at most; fewer when there are few files per worker
DIE_ONCE_ENV = "SAFEGEN_TEST_DIE_ONCE"  # tests only: "FILE_NAME:MARKER" kills the worker that meets FILE_NAME once
LOST = "the worker scoring this file was lost {tries} times (killed or out of memory); the file was not scored"

_RUNS: dict[str, object] = {}  # run token -> that run, with its models loaded, in this worker process


def shards(stems: Sequence[str], workers: int) -> list[list[int]]:
    """The files' indices in tasks: a few files each, in order; indices sharing a stem stay in one task.

    Args:
        stems: each file's output stem, in the run's order.
        workers: the processes that will take the tasks (about four tasks each, at most
            :data:`FILES_PER_TASK` files a task).
    """
    size = max(1, min(FILES_PER_TASK, math.ceil(len(stems) / (4 * workers))))
    by_stem: dict[str, list[int]] = {}
    for index, stem in enumerate(stems):
        by_stem.setdefault(stem, []).append(index)
    tasks, current = [], []
    for unit in by_stem.values():  # in order of each stem's first file
        current.extend(unit)
        if len(current) >= size:
            tasks.append(current)
            current = []
    if current:
        tasks.append(current)
    return tasks


def score_chunk(token: str, run, paths: list[Path]) -> list[dict]:
    """A worker's task: the rows of ``paths`` (and their maps written), with the run's models loaded once here."""
    import torch

    torch.set_num_threads(1)  # one process per core
    run = _RUNS.setdefault(token, run)
    run.used_stems.clear()  # a task holds every file of its stems (shards)
    _die_once_if_asked(paths)
    return list(run.rows(paths))


def _die_once_if_asked(paths: list[Path]) -> None:
    """Tests: end this process abruptly, the first time only, when the task holds the file the environment names."""
    asked = os.environ.get(DIE_ONCE_ENV)
    if not asked:
        return
    name, marker = asked.split(":", 1)
    if any(Path(p).name == name for p in paths) and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os._exit(1)


def score_distributed(run, files: list[Path], *, workers: int = 1, ray_address: str | None = None) -> Iterator[dict]:
    """The rows of ``files`` in their order, as soon as each is known with all before it, scored by ``workers``
    local processes or on Ray at ``ray_address``.

    Args:
        run: a :class:`workflows.score_folder.FolderRun` (picklable; each worker loads its models once).
        files: the entries to score, in the run's order.
        workers: local processes (the pool), or the CPUs of a Ray started here (``ray_address="local"``).
        ray_address: None: the local pool; ``auto``, ``HOST:PORT`` or ``ray://...``: that Ray cluster; ``local``:
            a Ray started in this process with ``workers`` CPUs and stopped at the end.
    """
    token = uuid.uuid4().hex
    tasks = shards([run.stem_of(path) for path in files], workers)
    rows: list[dict | None] = [None] * len(files)
    next_row = 0
    engine = (_run_pool(token, run, files, tasks, workers) if ray_address is None
              else _run_ray(token, run, files, tasks, workers, ray_address))
    with tqdm(total=len(files), desc="score", unit="file", file=sys.stderr) as bar:
        for indices, task_rows in engine:
            if task_rows is None:  # lost MAX_RETRIES + 1 times
                task_rows = [{**run.empty_row(files[i]), "error": LOST.format(tries=MAX_RETRIES + 1)}
                             for i in indices]
            for index, row in zip(indices, task_rows, strict=True):
                rows[index] = row
            bar.update(len(indices))
            while next_row < len(rows) and rows[next_row] is not None:  # the next rows in order, streamed
                yield rows[next_row]
                rows[next_row] = {}  # yielded: not kept twice
                next_row += 1


def _run_pool(token, run, files, tasks, workers) -> Iterator[tuple[list[int], list[dict] | None]]:
    """Local processes (spawned: no torch state forked); a broken pool is restarted with what had not come back.
    Yields each task's indices and rows as it finishes (rows None: the task was lost every time)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pending = dict(enumerate(tasks))
    for _attempt in range(MAX_RETRIES + 1):
        with ProcessPoolExecutor(min(workers, len(pending)), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(score_chunk, token, run, [files[i] for i in pending[t]]): t for t in pending}
            try:
                for future in as_completed(futures):
                    task_rows = future.result()
                    yield pending.pop(futures[future]), task_rows
            except BrokenProcessPool:  # a worker died: keep what finished, resubmit the rest
                for future, t in futures.items():
                    if t in pending and future.done() and future.exception() is None:
                        yield pending.pop(t), future.result()
        if not pending:
            return
        print(f"score: a worker was lost; {sum(map(len, pending.values()))} files go to fresh workers",
              file=sys.stderr)
    for indices in pending.values():
        yield indices, None


def _run_ray(token, run, files, tasks, workers, address) -> Iterator[tuple[list[int], list[dict] | None]]:
    """Ray tasks of one CPU each; Ray retries a task whose worker died (``max_retries``). Yields as the pool does."""
    import ray

    from core.resources import PROJECT_ROOT

    started = not ray.is_initialized()
    if started:
        if address == "local":
            ray.init(num_cpus=workers, include_dashboard=False)
        else:
            ray.init(address=address)
    try:
        remote = ray.remote(score_chunk).options(
            num_cpus=1, max_retries=MAX_RETRIES,
            runtime_env={"env_vars": {"PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}},
        )
        run_ref = ray.put(run)
        indices_of = {remote.remote(token, run_ref, [files[i] for i in indices]): indices for indices in tasks}
        waiting = list(indices_of)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            for ref in done:
                try:
                    task_rows = ray.get(ref)
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                        ray.exceptions.OutOfMemoryError):
                    task_rows = None
                yield indices_of[ref], task_rows
    finally:
        if started:
            ray.shutdown()
