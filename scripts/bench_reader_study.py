"""A busy reading room against both databases: many readers sign in at once, then each saves every case.

    .venv/bin/python scripts/bench_reader_study.py [--readers 50] [--saves 50] [--db sqlite,postgresql]
                                                   [--reads-in-write-transactions]

Like the Streamlit server, one process holds one engine and every reader is a thread of it (a
browser session); each reader signs in (argon2 verification), then, for each of the study's cases
in their own order, does the Reading page's reads (its reading list and its read of the case, in a
``read_scope``, as the page does; ``--reads-in-write-transactions``: in a ``session_scope``, for
comparison) and submits the case, one transaction per save, as fast as it can. Prints,
per database: sign-ins, page reads and saves that failed, saves lost (told "saved" but not in the
database, or stored twice), and the median / p99 / worst latency of a sign-in, a page read and a
save. PostgreSQL runs on
a throw-away cluster (``tests/postgres_helpers.py``; skipped with the reason where it cannot start).
Part of ``make bench``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from db.migrate import upgrade  # noqa: E402
from db.models import Arm, CaseRead, Reader, Role  # noqa: E402
from db.repository import (  # noqa: E402
    DEFAULT_QUESTIONS,
    CaseSpec,
    create_account,
    create_study,
    find_read,
    open_case,
    reading_list,
    save_read,
    sign_in,
)
from db.session import make_engine, make_session_factory, read_scope, retry_when_busy, session_scope  # noqa: E402

QUESTIONS = DEFAULT_QUESTIONS[:1]  # one required Likert answer per case


def _quantiles(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return f"median {1000 * statistics.median(ordered):.0f} ms, p99 {1000 * p99:.0f} ms, worst {1000 * ordered[-1]:.0f} ms"


def run(url: str, n_readers: int, n_saves: int, *, reads_in_write_transactions: bool = False) -> dict:
    engine = make_engine(url)
    upgrade(engine)
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        admin = create_account(s, "admin", "admin-pass-1", Role.ADMIN)
    names = [f"reader{i:02d}" for i in range(n_readers)]
    for name in names:  # one transaction each: hashing is done before the write lock
        with session_scope(factory) as s:
            create_account(s, name, f"{name}-password")
    with session_scope(factory) as s:
        readers = s.scalars(select(Reader).where(Reader.role == Role.READER)).all()
        cases = [CaseSpec(f"c{i:03d}", f"/scans/c{i:03d}.png", (4, 4, 1)) for i in range(n_saves)]
        study_id = create_study(s, s.get(Reader, admin.id), "load", cases, {r.id: Arm.UNAIDED for r in readers},
                                questions=QUESTIONS).id
    sign_ins, page_reads, saves, errors = [], [], [], []
    told_saved, reads_failed = [0], [0]
    open_read = session_scope if reads_in_write_transactions else read_scope
    lock = threading.Lock()
    start = threading.Barrier(n_readers)

    def reader(name: str) -> None:
        start.wait()
        began = time.perf_counter()
        try:
            reader_id = sign_in(lambda: session_scope(factory), name, f"{name}-password",
                                open_read=lambda: read_scope(factory))  # as the Reading page does
        except Exception as error:  # noqa: BLE001 - counted and reported
            with lock:
                errors.append(f"sign-in {name}: {type(error).__name__}: {error}"[:200])
            return
        with lock:
            sign_ins.append(time.perf_counter() - began)
        def order_of() -> list[int]:
            with read_scope(factory) as s:
                return [case.id for case, _ in reading_list(s, s.get(Reader, reader_id), study_id)]

        order = retry_when_busy(order_of)
        for i, case_id in enumerate(order):
            began = time.perf_counter()
            try:  # the page's reads before the form is shown; the page does not retry them
                with open_read(factory) as s:
                    me = s.get(Reader, reader_id)
                    reading_list(s, me, study_id)
                    find_read(s, me, case_id)
            except Exception as error:  # noqa: BLE001 - counted and reported
                with lock:
                    reads_failed[0] += 1
                    errors.append(f"page read {name}: {type(error).__name__}: {error}"[:200])
                continue
            with lock:
                page_reads.append(time.perf_counter() - began)
            began = time.perf_counter()
            def store(case_id=case_id, i=i) -> None:
                with session_scope(factory) as s:
                    me = s.get(Reader, reader_id)
                    version = open_case(s, me, case_id).version
                    save_read(s, me, case_id, expected_version=version, answers={"realism": 1 + i % 5}, seconds=1.0)

            try:
                retry_when_busy(store)  # as the Reading page does
            except Exception as error:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(f"save {name}: {type(error).__name__}: {error}"[:200])
                continue
            with lock:
                saves.append(time.perf_counter() - began)
                told_saved[0] += 1

    threads = [threading.Thread(target=reader, args=(name,)) for name in names]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    with session_scope(factory) as s:
        stored = s.scalar(select(func.count(CaseRead.id)).where(CaseRead.submitted_at.is_not(None)))
        twice = s.scalar(select(func.count(CaseRead.id)).where(CaseRead.version > 1))
    engine.dispose()
    return {"sign-ins failed": n_readers - len(sign_ins), "page reads failed": reads_failed[0],
            "saves failed": n_readers * n_saves - told_saved[0], "saves lost": told_saved[0] - stored,
            "stored twice": twice, "sign-in": _quantiles(sign_ins), "page read": _quantiles(page_reads),
            "save": _quantiles(saves), "wall": f"{wall:.1f} s", "first errors": errors[:3]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=50)
    parser.add_argument("--saves", type=int, default=50)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--reads-in-write-transactions", action="store_true",
                        help="the page's reads in write transactions (BEGIN IMMEDIATE on SQLite), for comparison")
    args = parser.parse_args()
    options = {"reads_in_write_transactions": args.reads_in_write_transactions}
    print(f"{args.readers} readers (threads of one process) x {args.saves} saves each")
    for kind in args.db.split(","):
        if kind == "sqlite":
            with tempfile.TemporaryDirectory() as folder:
                figures = run(f"sqlite:///{folder}/study.db", args.readers, args.saves, **options)
        else:
            from tests.postgres_helpers import ThrowawayPostgres, why_unavailable

            if reason := why_unavailable():
                print(f"postgresql: skipped ({reason})")
                continue
            cluster = ThrowawayPostgres().start()
            try:
                figures = run(cluster.new_database(), args.readers, args.saves, **options)
            finally:
                cluster.stop()
        print(f"{kind}: " + "; ".join(f"{k} {v}" for k, v in figures.items() if k != "first errors"))
        for line in figures["first errors"]:
            print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
