"""Drift: how far a window of users, and the model's outputs for them, is from the training data.

A reference profile (plain JSON, ``build_profile``) is computed at training
time and travels with the model. For each column it fixes the bins a window
is counted into and the reference share of each bin:

- numeric inputs (events) and outputs: quantile edges ``t_1 < ... < t_m`` of
  the reference; bin 0 holds x < t_1, bin i holds t_i <= x < t_(i+1), bin m
  holds x >= t_m, which is exactly PostgreSQL's ``width_bucket(x, edges)``;
  a missing value (NULL, NaN) is a bin of its own;
- categorical inputs: the value as the model reads it (``drift_key``: the
  model's own folding, so "iOS" and " ios " are one category), the top
  ``TOP_K`` categories, "(other)" for the rest the training data had,
  "(missing)", and a leftover bin for categories training never had
  (NannyML's idea), so a new ad network is drift and not noise in "(other)".

PSI = sum over bins of (a - e) * ln(a / e), a and e the window's and the
reference's shares; a share below ``EPSILON`` counts as ``EPSILON`` (what
Evidently does for empty bins). The status follows credit-risk practice:
``ok`` below 0.1, ``warn`` from 0.1, ``drift`` from 0.25, and
``insufficient_data`` (psi None) below ``min_rows`` rows.

Windows arrive as counts (``Counts``): from SQL (``numeric_counts`` takes
``width_bucket`` counts, ``categorical_counts`` counts per raw value) or from
arrays in memory (``count_numeric``, ``count_categorical``, which produce the
same shapes and go through the same two functions). Pure functions, no I/O.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from revenue_model.distinct import distinct
from revenue_model.features import MISSING_KEY, category_key, parse_os_version

PROFILE_VERSION = 1
CATEGORICAL_INPUTS = ("country", "country_region", "source", "platform", "device_family", "os_version")
NUMERIC_INPUTS = ("event_1", "event_2", "event_3")
OUTPUTS = ("predicted_revenue", "payer_probability")
COLUMNS = CATEGORICAL_INPUTS + NUMERIC_INPUTS + OUTPUTS

BINS = 10
TOP_K = 20
MIN_ROWS = 500
# A category gets a bin of its own only if a window of MIN_ROWS rows expects 5 of it (the
# chi-square rule of thumb): rarer bins add sampling noise to PSI, not signal.
MIN_SHARE = 5 / MIN_ROWS
EPSILON = 1e-4
WARN_PSI = 0.1
DRIFT_PSI = 0.25
OK, WARN, DRIFT, INSUFFICIENT = "ok", "warn", "drift", "insufficient_data"
# "Not enough rows" is worse news than ok (nothing can be claimed) but better than a measured shift.
SEVERITY = {OK: 0, INSUFFICIENT: 1, WARN: 2, DRIFT: 3}
OTHER, UNSEEN = "(other)", "(unseen)"


def drift_key(column: str, value: str | None) -> str:
    """The category a raw value counts as: the model's own folding of it.

    os_version counts by major version ('15.0.2' -> '15'): minors and patches
    change every few weeks without changing what the model sees much (it uses
    the major's distance to the newest major), while a new major is what moves
    its recency feature. Text that is no version ('unknown') is missing to the
    model, so it counts as missing here.
    """
    if column == "os_version":
        major = parse_os_version(value)[0]
        return MISSING_KEY if math.isnan(major) else str(int(major))
    return category_key(column, value)


@dataclass(frozen=True)
class Counts:
    """One column of a window in its reference's bins (rows per bin), missing rows, unseen rows."""

    bins: np.ndarray
    missing: int
    unseen: int = 0

    @property
    def n(self) -> int:
        return int(self.bins.sum()) + self.missing + self.unseen


def numeric_counts(reference: Mapping, buckets: Mapping[int | None, int]) -> Counts:
    """Counts from ``width_bucket(x, edges)``: {bucket 0..len(edges), or None for NULL: rows}."""
    size = len(reference["edges"]) + 1
    bins = np.zeros(size, dtype=np.int64)
    missing = 0
    for bucket, rows in buckets.items():
        if bucket is None:
            missing += int(rows)
        elif 0 <= bucket < size:
            bins[bucket] += int(rows)
        else:
            raise ValueError(f"bucket {bucket} is outside 0..{size - 1}")
    return Counts(bins, missing)


def categorical_counts(column: str, reference: Mapping, values: Mapping[str | None, int]) -> Counts:
    """Counts from a GROUP BY on the raw values: {raw value or None: rows}, folded here."""
    top = {key: i for i, key in enumerate(reference["top"])}
    known = frozenset(reference["keys"])
    bins = np.zeros(len(top) + 1, dtype=np.int64)  # the last: (other)
    missing = unseen = 0
    for value, rows in values.items():
        key = drift_key(column, value)
        if key == MISSING_KEY:
            missing += int(rows)
        elif key in top:
            bins[top[key]] += int(rows)
        elif key in known:
            bins[-1] += int(rows)
        else:
            unseen += int(rows)
    return Counts(bins, missing, unseen)


def count_numeric(reference: Mapping, values) -> Counts:
    """``numeric_counts`` of an array (NaN: missing)."""
    values = np.asarray(values, dtype=np.float64)
    missing = np.isnan(values)
    # searchsorted(side="right") is the number of edges <= x: width_bucket's bucket number.
    buckets = np.searchsorted(np.asarray(reference["edges"], dtype=np.float64), values[~missing],
                              side="right")
    tally = np.bincount(buckets, minlength=len(reference["edges"]) + 1)
    return numeric_counts(reference, {**dict(enumerate(tally.tolist())), None: int(missing.sum())})


def count_categorical(column: str, reference: Mapping, values) -> Counts:
    """``categorical_counts`` of an array of raw values (None / NA: missing)."""
    codes, uniques = distinct(values)
    tally = np.bincount(codes + 1, minlength=len(uniques) + 1).tolist()  # slot 0: code -1, missing
    return categorical_counts(column, reference, {None: tally[0], **dict(zip(uniques, tally[1:]))})


def build_profile(inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray], *,
                  bins: int = BINS, top_k: int = TOP_K) -> dict:
    """The reference profile: training rows' validated ``inputs``, dev rows' model ``outputs``.

    Numeric columns get up to ``bins`` quantile bins, categorical ones their
    ``top_k`` most common categories (those above ``MIN_SHARE``); shares are of
    all rows, missing included.
    """
    columns: dict = {c: categorical_reference(c, inputs[c], top_k) for c in CATEGORICAL_INPUTS}
    columns.update({c: numeric_reference(inputs[c], bins) for c in NUMERIC_INPUTS})
    columns.update({c: numeric_reference(outputs[c], bins) for c in OUTPUTS})
    return {"version": PROFILE_VERSION, "reference_n": columns[NUMERIC_INPUTS[0]]["n"], "columns": columns}


def numeric_reference(values, bins: int = BINS) -> dict:
    """One numeric column's reference: quantile edges, the share of rows in each bin, the missing share."""
    values = np.asarray(values, dtype=np.float64)
    _refuse_empty(values)
    present = np.sort(values[~np.isnan(values)])
    edges: list[float] = []
    if len(present):
        # Edges are values the data has; ties (most users have 0 of an event) collapse into one
        # edge instead of empty bins, and an edge at the minimum would only open an empty bin.
        cuts = np.quantile(present, np.arange(1, bins) / bins, method="inverted_cdf")
        edges = [float(e) for e in np.unique(cuts) if e > present[0]]
    reference = {"kind": "numeric", "n": len(values), "edges": edges}
    counts = count_numeric(reference, values)
    return {**reference, "shares": (counts.bins / len(values)).tolist(),
            "missing_share": counts.missing / len(values)}


def categorical_reference(column: str, values, top_k: int = TOP_K) -> dict:
    """One categorical column's reference: top categories, their shares and the rest's, every key."""
    _refuse_empty(values)
    codes, uniques = distinct(values)
    per_key: dict[str, int] = {}
    for raw, rows in zip([None, *uniques], np.bincount(codes + 1, minlength=len(uniques) + 1).tolist()):
        key = drift_key(column, raw)
        per_key[key] = per_key.get(key, 0) + rows
    n = len(codes)
    missing = per_key.pop(MISSING_KEY, 0)
    top = [k for k in sorted(per_key, key=lambda k: (-per_key[k], k))[:top_k] if per_key[k] >= MIN_SHARE * n]
    other = sum(per_key.values()) - sum(per_key[k] for k in top)
    return {
        "kind": "categorical", "n": n, "top": top,
        "shares": [per_key[k] / n for k in top] + [other / n],
        "missing_share": missing / n,
        # Good-Turing: the share of rows whose category occurs once estimates how much of new
        # traffic from the same population falls in categories this sample never had.
        "unseen_share": sum(1 for rows in per_key.values() if rows == 1) / n,
        "keys": sorted(per_key),
    }


def _refuse_empty(values) -> None:
    if len(values) == 0:
        raise ValueError("a reference needs at least one row")


def psi(expected, actual, epsilon: float = EPSILON) -> float:
    """Population stability index of two share vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


def status_of(value: float | None) -> str:
    if value is None:
        return INSUFFICIENT
    return DRIFT if value >= DRIFT_PSI else WARN if value >= WARN_PSI else OK


def worst_status(statuses) -> str:
    return max(statuses, key=SEVERITY.__getitem__, default=INSUFFICIENT)


def shares(reference: Mapping, counts: Counts) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(bin labels, reference shares, window shares): every bin PSI sums over, missing included."""
    expected = np.append(reference["shares"], reference["missing_share"])
    actual = np.append(counts.bins, counts.missing) / max(counts.n, 1)
    if reference["kind"] == "categorical":
        labels = [*reference["top"], OTHER, MISSING_KEY, UNSEEN]
        unseen = reference["unseen_share"]
        # The observed shares are of the categories training saw; the leftover bin gets the rest.
        expected = np.append(expected * (1.0 - unseen), unseen)
        actual = np.append(actual, counts.unseen / max(counts.n, 1))
    else:
        edges = [f"{e:g}" for e in reference["edges"]]
        labels = [f"[{lo}, {hi})" for lo, hi in zip(["-inf", *edges], [*edges, "inf"])] + [MISSING_KEY]
    return labels, expected, actual


def column_drift(reference: Mapping, counts: Counts, min_rows: int = MIN_ROWS) -> dict:
    """The contract's entry for one column: psi, status, missing shares (and unseen_share)."""
    n = counts.n
    value = psi(*shares(reference, counts)[1:]) if n >= max(min_rows, 1) else None
    out = {"psi": value, "status": status_of(value),
           "missing_share": counts.missing / n if n else None,
           "reference_missing_share": reference["missing_share"]}
    if reference["kind"] == "categorical":
        out["unseen_share"] = counts.unseen / n if n else None
    return out


def drift_report(profile: Mapping, counts: Mapping[str, Counts], min_rows: int = MIN_ROWS) -> dict:
    """{"n", "reference_n", "status", "columns"}: every column of ``COLUMNS`` against the profile."""
    columns = {c: column_drift(profile["columns"][c], counts[c], min_rows) for c in COLUMNS}
    return {"n": max(counts[c].n for c in COLUMNS), "reference_n": profile["reference_n"],
            "status": worst_status(col["status"] for col in columns.values()), "columns": columns}


def grouped_counts(profile: Mapping, groups: Mapping[str, Mapping]) -> dict[str, Counts]:
    """Every column of a window counted by SQL: {column: {bucket or raw value (None: missing): rows}}
    (``width_bucket`` buckets for numeric columns, raw values for categorical ones, folded here)."""
    refs = profile["columns"]
    counts = {c: categorical_counts(c, refs[c], groups.get(c, {})) for c in CATEGORICAL_INPUTS}
    counts.update({c: numeric_counts(refs[c], groups.get(c, {})) for c in NUMERIC_INPUTS + OUTPUTS})
    return counts


def window_counts(profile: Mapping, inputs: Mapping[str, np.ndarray],
                  outputs: Mapping[str, np.ndarray]) -> dict[str, Counts]:
    """Every column of a window held in memory (validated inputs, model outputs), counted."""
    refs = profile["columns"]
    counts = {c: count_categorical(c, refs[c], inputs[c]) for c in CATEGORICAL_INPUTS}
    counts.update({c: count_numeric(refs[c], inputs[c]) for c in NUMERIC_INPUTS})
    counts.update({c: count_numeric(refs[c], outputs[c]) for c in OUTPUTS})
    return counts


def frame_drift(profile: Mapping, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray],
                min_rows: int = MIN_ROWS) -> dict:
    """``drift_report`` of a window held in memory (training's test split, evaluate's data set)."""
    return drift_report(profile, window_counts(profile, inputs, outputs), min_rows)


def profile_from_json(text: str) -> dict:
    """A profile read back from its JSON; refuses another version or a missing column."""
    profile = json.loads(text)
    if not isinstance(profile, dict) or profile.get("version") != PROFILE_VERSION:
        raise ValueError(f"reference profile version {profile.get('version') if isinstance(profile, dict) else None}"
                         f" is not {PROFILE_VERSION}")
    missing = [c for c in COLUMNS if c not in profile.get("columns", {})]
    if missing:
        raise ValueError(f"reference profile lacks columns {missing}")
    return profile
