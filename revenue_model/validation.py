"""Turn raw users (JSON-like records or a DataFrame) into clean, typed columns.

One validator serves training, the pyfunc and the HTTP service, so a user
accepted by one is accepted by all. It works column by column: string columns
are checked once per distinct value (``pd.factorize``) and numbers with
NumPy, so 100,000 rows cost milliseconds; up to 16 users (most requests) are
checked value by value, with the same rules, which NumPy's cost per call
would otherwise dominate.

Every problem is collected before raising, so a client learns about all its
bad fields at once: ``InvalidUsers.problems`` is a list of (row, field, reason).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from revenue_model.distinct import column_arrays, distinct, object_array
from revenue_model.contract import (
    INPUT_COLUMNS, INSTALL_DATE, MAX_STRING_LENGTH,
    OPTIONAL_EVENTS, OPTIONAL_STRINGS, REQUIRED_EVENTS, REQUIRED_STRINGS, TARGET,
)

# Up to this many users, a loop over the values beats NumPy's cost per call: in the service,
# between scorer calls (cold caches), the vectorised checks took 200 us for one user.
_FEW = 16
# NumPy's fixed-width strings, which MLflow's scoring server uses, drop trailing NULs ("\x00"
# arrived as "", "a\x00" as "a"), and PostgreSQL stores none: a NUL is refused, naming the field.
_NUL = "must not contain the NUL character"
# Strings the contract lets arrive as numbers ("os_version": 10).
_NUMBER_AS_STRING = frozenset({"os_version", "user_id"})


@dataclass(frozen=True)
class Problem:
    row: int
    field: str
    reason: str

    def as_dict(self) -> dict:
        return {"row": self.row, "field": self.field, "reason": self.reason}


class InvalidUsers(ValueError):
    """Raised with every bad (row, field, reason) found in the input."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        shown = "; ".join(f"row {p.row}: {p.field} {p.reason}" for p in self.problems[:10])
        more = f" (and {len(self.problems) - 10} more)" if len(self.problems) > 10 else ""
        super().__init__(f"{len(self.problems)} invalid field(s): {shown}{more}")


def validate_columns(data: pd.DataFrame | Sequence[Mapping[str, Any]] | Mapping[str, Any], *,
                     with_target: bool = False) -> dict[str, np.ndarray]:
    """Validate users (a DataFrame, a list of user dicts, or {column: values}) and return
    {column: array} for the contract's input columns.

    Strings come back stripped, as object arrays or (from a string-typed
    DataFrame column) pandas string arrays, missing as None/NA; events
    as float64 (NaN only where event_3 is missing). With ``with_target`` the
    revenue column (USD, >= 0) is required and ``install_date`` is parsed when
    present. Raises ``InvalidUsers`` listing every problem.
    """
    problems: list[Problem] = []
    n, raw = _raw_columns(data, problems)
    out: dict[str, np.ndarray] = {}
    for field in REQUIRED_STRINGS + OPTIONAL_STRINGS:
        out[field] = _clean_strings(raw.get(field), n, field, field in REQUIRED_STRINGS, problems)
    for field in REQUIRED_EVENTS + OPTIONAL_EVENTS:
        out[field] = _clean_numbers(raw.get(field), n, field, field in REQUIRED_EVENTS, problems)
    if with_target:
        out[TARGET] = _clean_numbers(raw.get(TARGET), n, TARGET, True, problems)
        if INSTALL_DATE in raw:
            out[INSTALL_DATE] = _clean_dates(raw[INSTALL_DATE], problems)
    if problems:
        problems.sort(key=lambda p: (p.row, p.field))
        raise InvalidUsers(problems)
    return out


def validate_users(data: pd.DataFrame | Sequence[Mapping[str, Any]], *,
                   with_target: bool = False) -> pd.DataFrame:
    """``validate_columns`` as a DataFrame (one row per user, contract column order)."""
    return pd.DataFrame(validate_columns(data, with_target=with_target))


def _raw_columns(data, problems: list[Problem]) -> tuple[int, dict[str, Any]]:
    wanted = INPUT_COLUMNS + (TARGET, INSTALL_DATE)
    if isinstance(data, pd.DataFrame):
        return len(data), {c: a for c, a in column_arrays(data) if c in wanted}
    if isinstance(data, Mapping):
        return _column_lists(data, wanted)
    records = list(data)
    for i, record in enumerate(records):
        # dict first: an isinstance check against Mapping took a third of validating 10,000 users
        if type(record) is not dict and not isinstance(record, Mapping):
            problems.append(Problem(i, "user", "must be a JSON object"))
            records[i] = {}
    return len(records), {c: [r.get(c) for r in records] for c in wanted}


def _column_lists(data: Mapping, wanted: tuple) -> tuple[int, dict[str, Any]]:
    """{column: values}: what MLflow's scoring server hands a model without an input schema
    ("inputs" as column lists become NumPy arrays). Columns of unequal length are refused at
    once: which value belongs to which user is unknown, so no value is judged."""
    raw = {}
    for c in wanted:
        if c in data:
            values = data[c]
            # A scalar is one user's value: MLflow's "inputs" may carry a single row that way.
            if isinstance(values, np.ndarray) and values.ndim == 0:
                values = [values.item()]
            elif isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__len__"):
                values = [values]
            raw[c] = values
    n = max((len(v) for v in raw.values()), default=0)
    short = [Problem(len(v), c, f"has {len(v)} values where other columns have {n}")
             for c, v in raw.items() if len(v) < n]
    if short:
        raise InvalidUsers(short)
    return n, raw


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def _clean_strings(values, n: int, field: str, required: bool,
                   problems: list[Problem]):
    if values is None:
        if required:
            problems.extend(Problem(i, field, "is required") for i in range(n))
        return np.full(n, None, dtype=object)
    if n <= _FEW:
        return _clean_few_strings(values, field, required, problems)
    if isinstance(getattr(values, "dtype", None), pd.StringDtype):
        return _clean_string_array(values, field, required, problems)
    codes, uniques = distinct(values)
    cleaned = np.empty(len(uniques) + 1, dtype=object)  # last slot: missing (code -1)
    cleaned[-1] = None
    bad: dict[int, str] = {}
    for k, value in enumerate(uniques):
        text, reason = _clean_string(value, field)
        cleaned[k] = text
        if reason:
            bad[k] = reason
        elif text is None and required:
            bad[k] = "is required"
    result = cleaned[codes]
    if required and (codes == -1).any():
        bad[-1] = "is required"
    for k, reason in bad.items():
        problems.extend(Problem(int(i), field, reason) for i in np.flatnonzero(codes == k))
    return result


def _clean_few_strings(values, field: str, required: bool, problems: list[Problem]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        text, reason = _clean_string(value, field)
        if reason or (text is None and required):
            problems.append(Problem(i, field, reason or "is required"))
        out[i] = text
    return out


def _clean_string_array(values, field: str, required: bool, problems: list[Problem]):
    """The same rules as ``_clean_string`` for a column already typed as strings, vectorised."""
    series = pd.Series(values, copy=False)
    too_long = series.str.len().gt(MAX_STRING_LENGTH).to_numpy(dtype=bool, na_value=False)
    nul = series.str.contains("\x00", regex=False).to_numpy(dtype=bool, na_value=False) & ~too_long
    stripped = series.str.strip()
    # As in _clean_string, a string refused for its length or a NUL is not also reported blank.
    missing = stripped.eq("").to_numpy(dtype=bool, na_value=True) & ~too_long & ~nul
    # Kept as an Arrow string array: boxing 100,000 Python strings would cost more than the rest.
    result = stripped.mask(missing | too_long | nul).array
    problems.extend(Problem(int(i), field, f"is longer than {MAX_STRING_LENGTH} characters")
                    for i in np.flatnonzero(too_long))
    problems.extend(Problem(int(i), field, _NUL) for i in np.flatnonzero(nul))
    if required:
        problems.extend(Problem(int(i), field, "is required") for i in np.flatnonzero(missing))
    return result


def _clean_string(value: Any, field: str) -> tuple[str | None, str | None]:
    """(clean text or None when empty, reason when invalid)."""
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            return None, f"is longer than {MAX_STRING_LENGTH} characters"
        if "\x00" in value:
            return None, _NUL
        if not value.isascii() and not _is_unicode(value):
            return None, "is not valid Unicode (a lone surrogate)"
        return (value.strip() or None), None
    if _is_missing(value):
        return None, None
    if field in _NUMBER_AS_STRING and isinstance(value, (int, float, np.integer, np.floating)) \
            and not isinstance(value, (bool, np.bool_)) and math.isfinite(value):
        return (str(value) if isinstance(value, (int, np.integer)) else format(float(value), "g")), None
    return None, "must be a string"


def _is_unicode(text: str) -> bool:
    """False for a lone surrogate, which JSON's "\ud800" escape can carry and UTF-8 cannot."""
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def _clean_numbers(values, n: int, field: str, required: bool,
                   problems: list[Problem]) -> np.ndarray:
    if values is None:
        if required:
            problems.extend(Problem(i, field, "is required") for i in range(n))
        return np.full(n, np.nan)
    if n <= _FEW:
        return _clean_few_numbers(values, field, required, problems)
    if isinstance(values, pd.api.extensions.ExtensionArray) and values.dtype.kind in "fiu":
        values = values.to_numpy(dtype=np.float64, na_value=np.nan)  # nullable Float64 / Int64
    elif not isinstance(values, np.ndarray):
        values = object_array(values)
    if values.dtype.kind in "fiu":
        numbers = values.astype(np.float64, copy=False)
    else:
        numbers = _numbers_from_objects(values, field, problems)
    finite = np.isfinite(numbers)
    if finite.all() and not (numbers < 0).any():  # the usual case: two checks instead of three
        return numbers
    checks = (
        (np.isnan(numbers) if required else None, "is required"),
        (np.isinf(numbers), "must be a finite number"),
        (numbers < 0, "must be >= 0"),  # False for NaN
    )
    for mask, reason in checks:
        if mask is not None and mask.any():
            problems.extend(Problem(int(i), field, reason) for i in np.flatnonzero(mask))
    return numbers


def _clean_few_numbers(values, field: str, required: bool, problems: list[Problem]) -> np.ndarray:
    """The checks of ``_clean_numbers``, value by value, in the same order."""
    numbers = _numbers_from_objects(values, field, problems)
    for i, number in enumerate(numbers.tolist()):
        if math.isnan(number):
            if required:
                problems.append(Problem(i, field, "is required"))
            continue
        if math.isinf(number):
            problems.append(Problem(i, field, "must be a finite number"))
        if number < 0:
            problems.append(Problem(i, field, "must be >= 0"))
    return numbers


def _numbers_from_objects(values, field: str, problems: list[Problem]) -> np.ndarray:
    numbers = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        kind = type(value)
        if kind is float or kind is int or (
                isinstance(value, (int, float, np.integer, np.floating))
                and not isinstance(value, (bool, np.bool_))):
            try:
                numbers[i] = value
            except OverflowError:
                numbers[i] = math.inf  # reported as not finite
        elif _is_missing(value):
            numbers[i] = np.nan
        else:
            # Reported here; 0 keeps it out of the NaN / negative checks.
            numbers[i] = 0.0
            problems.append(Problem(i, field, "must be a number"))
    return numbers


def _clean_dates(values, problems: list[Problem]) -> np.ndarray:
    if getattr(values, "dtype", np.dtype(object)).kind == "M":
        return np.asarray(values)
    values = pd.Series(object_array(values))
    parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    bad = parsed.isna() & values.notna()
    problems.extend(Problem(int(i), INSTALL_DATE, "is not a date") for i in np.flatnonzero(bad))
    return parsed.to_numpy()




# The column checks above, for other records validated by the same rules (labels: revenue_model/labels.py).
clean_string_column = _clean_strings
clean_number_column = _clean_numbers
