"""Files in, one :class:`FileResult` per file out: the one loop that loads, checks, scores and catches.

The ``score`` command (:mod:`workflows.score_folder`), Batch screening (:mod:`workflows.screening`) and study
creation (:mod:`workflows.studies`) all read their files through :func:`score_files`; what differs between
them is a parameter of it, named for what it changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from core.io import check_scorable, load_volume
from core.types import ScanResult, ScanScorer, Volume


@dataclass(frozen=True)
class FileResult:
    """What became of one file.

    Attributes:
        path: the file as given to :func:`score_files` (whatever its ``load`` reads).
        volume: the loaded image; None when it could not be loaded.
        result: the scan's score; None without a scorer or when the file failed before it was scored.
        error: why the file failed, in words for its user (:func:`error_message`); None when nothing failed.
        seconds: wall time spent on the file: loading, checking, scoring and ``after_scoring``.
    """

    path: Any
    volume: Volume | None
    result: ScanResult | None
    error: str | None
    seconds: float


def error_message(error: Exception) -> str:
    """The message a user reads for a failed file: SAFEGEN's own errors (:mod:`core.errors`) as they are;
    any other error with its type in front (``ZeroDivisionError: division by zero``), since its text alone
    rarely says what went wrong."""
    message = str(error) or type(error).__name__
    return message if type(error).__module__.startswith("core") else f"{type(error).__name__}: {message}"


def score_files(
    paths: Iterable[Any],
    scorer: ScanScorer | None,
    *,
    load: Callable[[Any], Volume] = load_volume,
    require_scorable: bool = True,
    after_scoring: Callable[[Any, Volume, ScanResult], None] | None = None,
    raise_errors: bool = False,
    pixel_mm: float | None = None,
) -> Iterator[FileResult]:
    """Load and score each of ``paths`` in turn, lazily: one result is yielded before the next file is read.

    A file that cannot be loaded or scored gets its error message and the run goes on, so one bad file
    costs only its own result.

    Args:
        paths: the files, read one at a time as the results are asked for.
        scorer: scores each volume with its ``score_volume(volume)`` (a :class:`core.types.ScanScorer`);
            None: load only.
        load: reads one of ``paths`` (default :func:`core.io.load_volume`); the ``score`` command passes
            its own, which first refuses entries it does not score and applies its size limits.
        require_scorable: refuse images too small to score (:func:`core.io.check_scorable`) before scoring.
        after_scoring: called with ``(path, volume, result)`` after each file is scored, e.g. to write its
            outputs; a failure there becomes the file's error (its ``volume`` and ``result`` are kept).
        raise_errors: let the first error propagate instead of recording it (study creation: one refused
            file refuses the whole study).
        pixel_mm: read 2-D images that state no pixel size (PNG, JPEG, ...) at this many mm per pixel
            (:meth:`core.types.Volume.with_pixel_size`) instead of 1 mm; images that state one keep it.
    """
    for path in paths:
        volume = result = error = None
        start = time.perf_counter()
        try:
            volume = load(path)
            if pixel_mm is not None and not volume.spacing_known and not volume.is_3d:
                volume = volume.with_pixel_size(pixel_mm)
            if require_scorable:
                check_scorable(volume)  # a 1x2 image gets an error saying so, not a score
            if scorer is not None:
                result = scorer.score_volume(volume)
                if after_scoring is not None:
                    after_scoring(path, volume, result)
        except Exception as caught:  # one bad file must not stop the run; its result says why
            if raise_errors:
                raise
            error = error_message(caught)
        yield FileResult(path, volume, result, error, time.perf_counter() - start)
