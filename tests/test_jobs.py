"""The dashboard's background job (ui.jobs): it takes lazy steps in a thread, stops once cancelled, records an
error, and is finished whatever happens."""

import threading
import time
from dataclasses import dataclass, field

import pytest

from ui.jobs import BackgroundJob, take_turns, time_left


@dataclass(eq=False)
class Counting(BackgroundJob):
    """Keeps the numbers its steps make."""

    seen: list[int] = field(default_factory=list)

    @property
    def done(self) -> int:
        return len(self.seen)

    def _keep(self, item: int) -> None:
        self.seen.append(item)


def _until(done, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert done()


def test_a_job_that_counts_to_three_finishes_with_three_done_and_then_called_once():
    job, calls = Counting(total=3), []
    job._launch("count", (k for k in (1, 2, 3)), threading.Lock(), lambda taken, started: calls.append(taken))
    _until(lambda: job.finished)
    assert (job.seen, job.done, job.complete, job.fraction, job.error, job.cancelled) == ([1, 2, 3], 3, True, 1.0,
                                                                                         None, False)
    assert calls == [3] and job.elapsed > 0
    assert job.progress_text("files") == "3 of 3 files"  # no time left once all is done


def test_a_cancelled_job_stops_between_items_and_keeps_what_was_done():
    waiting, gate, closed = threading.Event(), threading.Event(), []

    def steps():
        try:
            for k in range(1, 100):
                waiting.set()
                gate.wait(timeout=10)
                yield k
        finally:
            closed.append(True)

    job = Counting(total=99)
    job._launch("cancel", steps(), threading.Lock())
    _until(waiting.is_set)
    job.cancel()  # while the first item is being made: it is kept, then the job stops
    gate.set()
    _until(lambda: job.finished)
    assert job.cancelled and job.seen == [1] and not job.complete and job.error is None
    assert closed == [True]  # the steps were closed


def test_an_exception_is_recorded_and_the_job_is_finished():
    def steps():
        yield 1
        raise ValueError("bad file")

    job = Counting(total=3)
    job._launch("fail", steps(), threading.Lock())
    _until(lambda: job.finished)
    assert job.seen == [1] and job.error == "ValueError: bad file" and job.finished


def test_a_resumed_job_adds_to_the_time_already_spent():
    job = Counting(total=1, elapsed=100.0)
    job._launch("resume", (k for k in (7,)), threading.Lock())
    _until(lambda: job.finished)
    assert job.elapsed >= 100.0


def test_take_turns_holds_the_lock_while_an_item_is_made():
    lock = threading.Lock()

    def steps():
        while True:
            yield lock.locked()

    made = take_turns(steps(), threading.Event(), lock)
    assert [next(made), next(made)] == [True, True]
    made.close()


@pytest.mark.parametrize(("elapsed", "done", "total", "text"), [
    (10.0, 0, 4, ""), (10.0, 2, 4, ", about 10 s left"), (0.2, 2, 4, ", under a second left"), (10.0, 4, 4, "")])
def test_time_left_is_the_measured_seconds_per_item_times_the_items_left(elapsed, done, total, text):
    assert time_left(elapsed, done, total) == text
