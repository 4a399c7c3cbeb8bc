"""Tables for the Markdown reports (``evaluate``, ``compare``, the realistic benchmark, LOKO)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    """A plain Markdown table (no ``tabulate`` dependency): floats to ``digits`` decimals, integer
    columns as integers, a missing value (NaN: e.g. no pixel maps) as a dash."""

    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "–" if np.isnan(v) else f"{v:.{digits}f}"
        return str(v)

    cols = [frame.index.name or ""] + [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for index, *row in frame.itertuples(name=None):  # per column, so an int column stays int
        lines.append("| " + " | ".join([str(index), *map(cell, row)]) + " |")
    return "\n".join(lines)
