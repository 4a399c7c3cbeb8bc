"""Batch screening: score many generated images and rank them, in memory (no files written).

The dashboard's batch page and any notebook use this; ``python -m core.cli score`` is the
file-writing twin with the fixed output contract.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.io import check_scorable
from core.render import apply_window, auto_window, overlay_heatmap
from core.scoring import Scorer
from core.types import Volume

COLUMNS = ("file", "score", "flag", "p_value", "score_diffusion", "score_autoencoder", "worst_slice",
           "slices", "seconds", "warnings", "error")
THUMBNAIL_PX = 160


@dataclass
class Screening:
    """A ranked table (worst first), a thumbnail of each scored file's worst slice with its overlay,
    and the detector that scored them: its ``method`` name, ``tau`` and the scores of the real clean
    calibration slices (``reference``, the histogram's comparison)."""

    table: pd.DataFrame
    thumbnails: dict[str, np.ndarray] = field(default_factory=dict)
    method: str = "safegen"
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


def screen(
    items: Iterable[tuple[str, Callable[[], Volume]]],
    scorer,
    *,
    progress: Callable[[int, str], None] | None = None,
) -> Screening:
    """Score each ``(name, load)`` item; a file that cannot be loaded or scored gets an error row.

    Args:
        items: a display name and a zero-argument loader per file (loading happens here, so one
            bad file costs only its own row).
        scorer: the models and calibration (a :class:`core.scoring.Scorer`, or a
            :class:`core.baselines.scorer.BaselineScorer` to screen with a baseline).
        progress: called with ``(files done, name)`` after each file.
    """
    rows, thumbs = [], {}
    for done, (name, load) in enumerate(items, start=1):
        row = dict.fromkeys(COLUMNS, "")
        row.update(file=name, score=np.nan, p_value=np.nan, score_diffusion=np.nan, score_autoencoder=np.nan,
                   flag=False, worst_slice=None, slices=None)
        start = time.perf_counter()
        try:
            volume = load()
            check_scorable(volume)  # a 1x2 image gets a row saying so, not a score
            result = scorer.score_volume(volume)
            row.update(score=result.score, flag=result.flag, p_value=result.p_value,
                       score_diffusion=result.score_diffusion, score_autoencoder=result.score_autoencoder,
                       worst_slice=result.worst_slice + 1, slices=volume.n_slices,
                       warnings=" | ".join(result.warnings))
            heatmap = result.heatmap if result.pixel_maps else np.full_like(result.heatmap, -np.inf)
            thumbs[name] = thumbnail(volume, heatmap, result.worst_slice, scorer.tau)
        except Exception as error:  # one bad file must not stop the batch; its row says why
            message = str(error) or type(error).__name__
            row["error"] = message if type(error).__module__.startswith("core") else f"{type(error).__name__}: {message}"
        row["seconds"] = round(time.perf_counter() - start, 2)
        rows.append(row)
        if progress is not None:
            progress(done, name)
    table = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"worst_slice": "Int64", "slices": "Int64"})
    table = table.sort_values("score", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
    return Screening(table, thumbs, getattr(scorer, "name", "safegen"), float(scorer.tau), reference_scores(scorer))


def reference_scores(scorer) -> np.ndarray:
    """Slice scores of the clean calibration slices (the head's, under normal variation; the seed's at
    its alpha; a baseline's own calibration scores): the histogram's reference."""
    from core.head_scoring import HeadScorer

    if isinstance(scorer, HeadScorer):
        return np.asarray(scorer.calibration.calibrator.scores, dtype=float)
    if isinstance(scorer, Scorer):
        return np.asarray(scorer.calibration.calibrator(scorer.alpha).scores, dtype=float)
    return np.asarray(scorer.calibrated.calib_scores, dtype=float)
