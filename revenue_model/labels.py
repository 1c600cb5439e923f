"""Labels (what users really spent in their first 7 days), validated by the same rules as users.

A label is ``{"user_id": ..., "revenue": ...}`` and optionally ``observed_at`` (ISO 8601; when the
revenue was measured). ``user_id`` follows the users' rules (a string of at most 200 characters,
or a number, stripped: the form the prediction log stores, so labels and predictions match);
``revenue`` is USD, a finite number >= 0. Every problem is collected, as (row, field, reason).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from revenue_model.validation import InvalidUsers, Problem, clean_number_column, clean_string_column

USER_ID, REVENUE, OBSERVED_AT = "user_id", "revenue", "observed_at"


class InvalidLabels(InvalidUsers):
    """Raised with every bad (row, field, reason) of a request's labels."""


def check_label_columns(user_ids, revenues, observed_at=None) -> tuple[dict[str, np.ndarray], np.ndarray,
                                                                       list[Problem]]:
    """Clean columns (user_id as objects, revenue as float64, observed_at as UTC datetime64 or
    NaT), a mask of the rows without problems, and the problems (rows counted from 0)."""
    n = len(user_ids)
    problems: list[Problem] = []
    columns = {USER_ID: clean_string_column(user_ids, n, USER_ID, True, problems),
               REVENUE: clean_number_column(revenues, n, REVENUE, True, problems)}
    columns[OBSERVED_AT] = _times(observed_at, n, problems)
    good = np.ones(n, dtype=bool)
    good[[p.row for p in problems]] = False
    problems.sort(key=lambda p: (p.row, p.field))
    return columns, good, problems


def validate_labels(records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """A request's labels as clean columns, or ``InvalidLabels`` listing every problem; a
    user_id twice in one request is a problem (which of the two would be meant?)."""
    problems: list[Problem] = []
    rows = []
    for i, record in enumerate(records):
        if type(record) is not dict and not isinstance(record, Mapping):
            problems.append(Problem(i, "label", "must be a JSON object"))
            record = {}
        rows.append(record)
    not_objects = {p.row for p in problems}
    columns, _, found = check_label_columns([r.get(USER_ID) for r in rows], [r.get(REVENUE) for r in rows],
                                            [r.get(OBSERVED_AT) for r in rows])
    problems += [p for p in found if p.row not in not_objects]
    first: dict[str, int] = {}
    for i, user_id in enumerate(columns[USER_ID]):
        if user_id is not None:
            seen = first.setdefault(user_id, i)
            if seen != i:
                problems.append(Problem(i, USER_ID, f"is a duplicate of row {seen}"))
    if problems:
        problems.sort(key=lambda p: (p.row, p.field))
        raise InvalidLabels(problems)
    return columns


def _times(values, n: int, problems: list[Problem]) -> np.ndarray:
    """ISO 8601 times (or datetimes) as UTC datetime64; missing or blank is NaT; no zone means UTC."""
    if values is None:
        return np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    series = pd.Series(values, copy=False)
    if series.dtype.kind != "M":
        series = series.astype(object)
        blank = series.map(lambda v: (isinstance(v, str) and not v.strip()) or
                           (not isinstance(v, str) and pd.isna(v) is True)).to_numpy(dtype=bool)
        texts = series.where(~blank, None)
        try:
            parsed = pd.to_datetime(texts, errors="coerce", utc=True, format="ISO8601")
        except (TypeError, ValueError):  # values of mixed types: one at a time
            parsed = pd.Series([_time(v) for v in texts], dtype="datetime64[us, UTC]")
        bad = parsed.isna().to_numpy() & ~blank
        problems.extend(Problem(int(i), OBSERVED_AT, "is not an ISO 8601 time") for i in np.flatnonzero(bad))
        series = parsed
    if series.dt.tz is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    return series.to_numpy(dtype="datetime64[us]")


def _time(value):
    try:
        moment = pd.Timestamp(value) if isinstance(value, str) else pd.NaT
    except (ValueError, TypeError, OverflowError):
        return pd.NaT
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
