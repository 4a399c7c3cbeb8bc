"""Batch screening: score many generated images and rank them, in memory (no files written).

The dashboard's batch page and any notebook use this; ``python -m workflows.cli score`` is the
file-writing twin with the fixed output contract.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.render import apply_window, auto_window, overlay_heatmap
from core.types import SAFEGEN_METHOD, ScanScorer, Volume
from workflows.score_files import score_files

COLUMNS = ("file", "score", "flag", "out_of_domain", "p_value", "score_diffusion", "score_autoencoder",
           "worst_slice", "slices", "seconds", "warnings", "error")
THUMBNAIL_PX = 160


@dataclass
class Screening:
    """A ranked table (worst first), a thumbnail of each scored file's worst slice with its overlay,
    and the detector that scored them: its ``method`` name, ``tau`` and the scores of the real clean
    calibration slices (``reference``, the histogram's comparison)."""

    table: pd.DataFrame
    thumbnails: dict[str, np.ndarray] = field(default_factory=dict)
    method: str = SAFEGEN_METHOD
    tau: float = float("nan")
    reference: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def scored(self) -> pd.DataFrame:
        return self.table[self.table["error"] == ""]


def thumbnail(volume: Volume, heatmap: np.ndarray, slice_index: int, tau: float, size: int = THUMBNAIL_PX) -> np.ndarray:
    """The worst slice, auto-windowed, heatmap above ``tau`` overlaid, shrunk to ``size`` px on its longer side."""
    from PIL import Image

    gray_slice = volume.display_slice(slice_index)
    heat = volume.display_slice_of(heatmap, slice_index)
    gray = apply_window(gray_slice, auto_window(gray_slice))
    rgb = overlay_heatmap(gray, heat, low=tau, high=tau + 5.0, opacity=0.6, mask=heat > tau)
    h, w = rgb.shape[:2]
    scale = size / max(h, w)
    return np.asarray(Image.fromarray(rgb).resize((max(1, round(w * scale)), max(1, round(h * scale)))))


def screened_files(
    items: Iterable[tuple[str, Callable[[], Volume]]],
    scorer: ScanScorer,
    *,
    pixel_mm: float | None = None,
) -> Iterator[tuple[dict, np.ndarray | None]]:
    """Score each ``(name, load)`` item in turn, lazily (through :func:`workflows.score_files.score_files`):
    one table row (the keys of :data:`COLUMNS`) and the worst slice's thumbnail (None when the file
    failed) per file; a file that cannot be loaded or scored gets an error row. :func:`screening_of`
    ranks the rows; a caller may stop between files and rank those done (the dashboard's Cancel).

    Args:
        items: a display name and a zero-argument loader per file (loading happens here, so one
            bad file costs only its own row).
        scorer: SAFEGEN's (:func:`core.head_scoring.load_detector`) or a baseline's
            (:class:`core.baselines.scorer.BaselineScorer`).
        pixel_mm: the pixel size of 2-D images that state none (see :func:`workflows.score_files.score_files`).
    """
    thumbs: dict[str, np.ndarray] = {}

    def keep_thumbnail(item: tuple[str, Callable[[], Volume]], volume: Volume, result) -> None:
        heatmap = result.heatmap if result.pixel_maps else np.full_like(result.heatmap, -np.inf)
        thumbs[item[0]] = thumbnail(volume, heatmap, result.worst_slice, scorer.tau)

    for file in score_files(items, scorer, load=_call_loader, after_scoring=keep_thumbnail,
                            pixel_mm=pixel_mm):
        name = file.path[0]
        row = dict.fromkeys(COLUMNS, "")
        row.update(file=name, score=np.nan, p_value=np.nan, score_diffusion=np.nan, score_autoencoder=np.nan,
                   flag=False, out_of_domain=False, worst_slice=None, slices=None)
        if (result := file.result) is not None:  # scored; its thumbnail may still have failed (then: error too)
            row.update(score=result.score, flag=result.flag, out_of_domain=bool(result.out_of_domain),
                       p_value=result.p_value,
                       score_diffusion=result.score_diffusion, score_autoencoder=result.score_autoencoder,
                       worst_slice=result.worst_slice + 1, slices=file.volume.n_slices,
                       warnings=" | ".join(result.warnings))
        if file.error is not None:
            row["error"] = file.error
        row["seconds"] = round(file.seconds, 2)
        yield row, thumbs.pop(name, None)


def screening_of(rows: list[dict], thumbnails: dict[str, np.ndarray], scorer: ScanScorer) -> Screening:
    """The rows of :func:`screened_files` ranked worst first, with their thumbnails and ``scorer``'s
    method, tau and calibration scores."""
    # score_diffusion / score_autoencoder: None where the method has none (only the seed scorer has), NaN here
    table = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"worst_slice": "Int64", "slices": "Int64",
                                                              "score_diffusion": float, "score_autoencoder": float})
    table = table.sort_values("score", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    return Screening(table, dict(thumbnails), scorer.name, float(scorer.tau), reference_scores(scorer))


def screen(
    items: Iterable[tuple[str, Callable[[], Volume]]],
    scorer: ScanScorer,
    *,
    progress: Callable[[int, str], None] | None = None,
    pixel_mm: float | None = None,
) -> Screening:
    """Score each ``(name, load)`` item (:func:`screened_files`) and rank them (:func:`screening_of`).

    Args:
        items: a display name and a zero-argument loader per file.
        scorer: SAFEGEN's or a baseline's scorer (see :func:`screened_files`).
        progress: called with ``(files done, name)`` after each file.
        pixel_mm: the pixel size of 2-D images that state none (see :func:`workflows.score_files.score_files`).
    """
    rows, thumbs = [], {}
    for done, (row, thumb) in enumerate(screened_files(items, scorer, pixel_mm=pixel_mm), start=1):
        rows.append(row)
        if thumb is not None:
            thumbs[row["file"]] = thumb
        if progress is not None:
            progress(done, row["file"])
    return screening_of(rows, thumbs, scorer)


def _call_loader(item: tuple[str, Callable[[], Volume]]) -> Volume:
    """Load a ``(name, load)`` item of :func:`screen`."""
    return item[1]()


def reference_scores(scorer: ScanScorer) -> np.ndarray:
    """Slice scores of the clean calibration slices (the head's, under normal variation; the seed's at
    its alpha; a baseline's own calibration scores): the histogram's reference."""
    return np.asarray(scorer.calibration_scores, dtype=float)
