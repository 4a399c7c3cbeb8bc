"""The one JSON sanitiser behind every exported summary (study summary.json, MRMC tables)."""

import json

import numpy as np
import pandas as pd

from core.jsonable import json_safe, records


def test_json_safe_turns_numpy_and_non_finite_values_into_strict_json():
    value = {1: (np.float32(0.5), np.nan, np.inf), "n": np.int64(3), "ok": np.bool_(True),
             "grid": np.arange(4).reshape(2, 2), "nested": [{"x": float("-inf")}]}
    safe = json_safe(value)
    assert safe == {"1": [0.5, None, None], "n": 3, "ok": True, "grid": [[0, 1], [2, 3]], "nested": [{"x": None}]}
    assert type(safe["n"]) is int and type(safe["ok"]) is bool
    json.dumps(safe, allow_nan=False)  # would raise on any NaN left


def test_records_keep_a_named_index_as_the_first_column():
    frame = pd.DataFrame({"auc": [0.75, np.nan]}, index=pd.Index(["cara", "dan"], name="reader"))
    assert records(frame) == [{"reader": "cara", "auc": 0.75}, {"reader": "dan", "auc": None}]
    assert records(pd.DataFrame({"a": [1]})) == [{"a": 1}]
    assert records(None) is None
