"""Distinct values of a column: per-value work is done once per distinct value.

Both the validator and the feature encoder normalise strings; doing it once
per distinct value instead of once per row is what keeps 100,000 rows cheap.
For a handful of rows a dict beats ``pd.factorize``'s fixed cost.
"""

from __future__ import annotations

import math
from typing import Iterator

import numpy as np
import pandas as pd

_SMALL = 16


def distinct(values) -> tuple[np.ndarray, list]:
    """(codes, uniques): ``uniques[codes[i]] == values[i]``; code -1 marks None/NaN/NA."""
    if len(values) > _SMALL:
        if not isinstance(values, (np.ndarray, pd.api.extensions.ExtensionArray)):
            values = object_array(values)
        try:
            # An Arrow string column factorizes natively, without boxing a Python object per row.
            codes, uniques = pd.factorize(values, use_na_sentinel=True)
        except TypeError:  # unhashable values (JSON lists and objects): the loop copes
            pass
        else:
            # factorize merges equal values across types (False, 0 and 0.0 become one): only an
            # all-string column is safe; anything else (a client's odd values) takes the loop.
            if all(isinstance(u, str) for u in uniques):
                return codes, list(uniques)
    seen: dict = {}
    uniques: list = []
    codes = np.empty(len(values), dtype=np.intp)
    for i, value in enumerate(values):
        if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
            codes[i] = -1
            continue
        # Keyed by type too, so True, 1 and 1.0 stay apart; an unhashable value is its own.
        try:
            key = (type(value), value)
            hash(key)
        except TypeError:
            key = (type(value), id(value))
        code = seen.setdefault(key, len(uniques))
        if code == len(uniques):
            uniques.append(value)
        codes[i] = code
    return codes, uniques


def object_array(values) -> np.ndarray:
    """A 1-D object array of client values, one element each.

    ``np.asarray`` would turn [[1], [2]] into a 2-D array and refuse [None, []]; JSON clients
    send both.
    """
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


def column_arrays(frame: pd.DataFrame) -> Iterator[tuple[str, object]]:
    """(name, array) per column without building a Series each: a tenth of the cost on one row."""
    arrays = getattr(frame, "_iter_column_arrays", None)  # private, stable across pandas 2.x-3.x
    if arrays is None:
        return ((name, series.array) for name, series in frame.items())
    return zip(frame.columns, arrays())
