"""Background jobs of the dashboard: a loop over lazy steps in a daemon thread, taking turns with other
sessions on the shared models, that a Cancel button stops between steps.

The thread calls no Streamlit function: a job only fills its own fields (under its lock), and the page
reads them on each run. Its subclasses (:class:`ui.analysis.ExplainJob`, :class:`ui.batch.BatchJob`)
say what a step's item is and where it goes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


def take_turns(steps: Generator[T, None, None], stop: threading.Event, models: threading.Lock) -> Iterator[T]:
    """The items of ``steps``, each made while holding ``models`` (:func:`ui.analysis.model_lock`), until they
    run out or ``stop`` is set: the loop of a background job, which stops between items once cancelled."""
    try:
        while not stop.is_set():
            with models:
                item = next(steps, None)
            if item is None:
                return
            yield item
    finally:
        steps.close()


def time_left(elapsed: float, done: int, total: int) -> str:
    """``, about 54 s left``: the items left times this run's measured seconds per item (a background
    job's progress text); empty before the first item is done and after the last."""
    if done == 0 or done >= total:
        return ""
    left = elapsed / done * (total - done)
    return f", about {left:.0f} s left" if left >= 1 else ", under a second left"


@dataclass(eq=False, kw_only=True)
class BackgroundJob:
    """A job of ``total`` items run in a background thread (:meth:`_launch`), item by item; it stops
    between items once cancelled, and what was done stays.

    Subclasses keep each item (:meth:`_keep`, called under :attr:`_lock`) and count what is done
    (:attr:`done`).
    """

    total: int
    error: str | None = None  # why the thread stopped early, shown on the page
    elapsed: float = 0.0  # seconds spent on the items (a resumed job starts from the last run's)
    finished: bool = False  # the thread returned: every item done, cancelled or failed
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @property
    def done(self) -> int:
        """How many items are done."""
        raise NotImplementedError

    def _keep(self, item: Any) -> None:
        """Keep one item the steps made (called under :attr:`_lock`)."""
        raise NotImplementedError

    def _launch(self, name: str, steps: Generator, models: threading.Lock,
                then: Callable[[int, float], None] | None = None) -> None:
        """Take the items of the lazy ``steps`` (a generator: it is closed at the end) in a daemon thread
        ``name`` (it dies with the server), each while holding ``models``, until they run out or the job is
        cancelled; then call ``then(taken, started)`` with the items this run took and its
        :func:`time.perf_counter` start. An exception is recorded in :attr:`error`; the job is
        :attr:`finished` whatever happens."""
        threading.Thread(target=self._run, args=(steps, models, then), name=name, daemon=True).start()

    def _run(self, steps: Generator, models: threading.Lock, then: Callable[[int, float], None] | None) -> None:
        start, before, taken = time.perf_counter(), self.elapsed, 0
        try:
            for item in take_turns(steps, self._stop, models):
                with self._lock:
                    self._keep(item)
                taken += 1
                self.elapsed = before + time.perf_counter() - start
            if then is not None:
                then(taken, start)
        except Exception as error:  # shown on the page; the thread must not die silently
            self.error = f"{type(error).__name__}: {error}"
        finally:
            steps.close()
            self.finished = True

    def cancel(self) -> None:
        """Stop after the item being worked on now; what was done stays."""
        self._stop.set()

    @property
    def cancelled(self) -> bool:
        return self._stop.is_set()

    @property
    def complete(self) -> bool:
        """Every item is done."""
        return self.done >= self.total

    @property
    def fraction(self) -> float:
        """The share of the items done, for a progress bar (0 to 1)."""
        return min(1.0, self.done / max(self.total, 1))

    def progress_text(self, unit: str) -> str:
        """``12 of 40 files, about 54 s left``: what is done, of ``unit`` items, and the time left."""
        done = self.done
        return f"{done} of {self.total} {unit}{time_left(self.elapsed, done, self.total)}"
