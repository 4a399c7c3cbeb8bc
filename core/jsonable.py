"""Strict JSON from numpy and pandas values: one sanitiser for every exported summary."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def json_safe(value: object) -> object:
    """``value`` with NaN / infinity as None, numpy scalars and arrays as Python values, tuples as
    lists and dict keys as strings, recursively, so ``json.dumps(..., allow_nan=False)`` accepts it."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return value


def records(frame: pd.DataFrame | None) -> list[dict] | None:
    """A table as JSON-safe records, a named index kept as the first column (None stays None)."""
    if frame is None:
        return None
    frame = frame.reset_index() if not isinstance(frame.index, pd.RangeIndex) else frame
    return json_safe(frame.to_dict("records"))
