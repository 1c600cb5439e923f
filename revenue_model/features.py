"""Feature engineering: fitted on training rows only, stored as plain JSON.

``fit_features`` learns per-category frequencies, smoothed target encodings
(payer rate, and mean log spend of payers) and LightGBM category codes, plus
the newest OS major per platform. Training rows get out-of-fold target
encodings, so no row sees its own revenue. ``FeaturePlan`` compiles that
state into lookup tables once; ``FeaturePlan.transform`` turns validated
columns into a float64 matrix (rows x ``feature_names``) with NumPy and one
dict lookup per distinct value, never per-row pandas.

Unseen categories get frequency 0, the prior target rates and the code of
"other" (0): a new country scores like an average rare one.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from revenue_model.distinct import distinct

STATE_VERSION = 1
CATEGORICAL = ("country", "country_region", "source", "platform", "device_family")
# Low-cardinality columns that also get a LightGBM categorical code.
CODED = ("country", "source", "platform", "device_family")
MISSING_KEY = "(missing)"
# What missing values become when something upstream turns them into text: MLflow's scoring
# server does this to nulls in string columns of its "inputs" format (None -> "None").
_MISSING_TEXT = frozenset({"none", "nan", "null"})
NUMERIC = (
    "event_1", "event_2", "event_3", "event_3_missing", "events_total", "log_events_total",
    "event_2_per_event_1", "event_3_per_event_1", "os_major", "os_minor", "os_recency",
)
FEATURE_NAMES = NUMERIC + tuple(
    f"{c}_{kind}" for c in CATEGORICAL for kind in ("frequency", "payer_rate", "log_spend")
) + tuple(f"{c}_code" for c in CODED)
CATEGORICAL_FEATURES = tuple(f"{c}_code" for c in CODED)
# More of any event never makes a payer less likely: the payer booster is constrained to be
# increasing in these, and does not see the ratios (more event_1 lowers event_2 per event_1).
INCREASING_IN_EVENTS = ("event_1", "event_2", "event_3", "events_total", "log_events_total")
EVENT_RATIOS = ("event_2_per_event_1", "event_3_per_event_1")


def category_key(column: str, value: str | None) -> str:
    """The normalised form two spellings of one category share ('iOS', ' ios ' -> 'ios')."""
    if value is None:
        return MISSING_KEY
    text = " ".join(value.split()).casefold()
    if text in _MISSING_TEXT:
        return MISSING_KEY
    if column == "platform":
        if "ios" in text or "iphone" in text or "ipad" in text:
            return "ios"
        return "android" if "android" in text else "other"
    return text or MISSING_KEY


def parse_os_version(text: str | None) -> tuple[float, float]:
    """(major, minor) of '15.0.2' -> (15, 0); NaN where unknown."""
    if text is None:
        return math.nan, math.nan
    parts = text.strip().lower().lstrip("v").split(".")
    try:
        major = float(int(parts[0]))
    except ValueError:
        return math.nan, math.nan
    try:
        minor = float(int(parts[1])) if len(parts) > 1 else 0.0
    except ValueError:
        minor = math.nan
    return major, minor


def fit_features(columns: Mapping[str, np.ndarray], revenue: np.ndarray, *, seed: int = 0,
                 folds: int = 5, smoothing: float = 20.0, min_count: int = 30) -> tuple[dict, np.ndarray]:
    """Fit the feature state on training rows; return (state, training matrix with OOF encodings).

    ``columns`` are validated columns (``validate_columns``); ``revenue`` is D7 USD per row.
    """
    revenue = np.asarray(revenue, dtype=np.float64)
    n = len(revenue)
    payer = (revenue > 0).astype(np.float64)
    log_spend = np.where(revenue > 0, np.log(np.where(revenue > 0, revenue, 1.0)), 0.0)
    prior_payer = float(payer.mean())
    prior_spend = float(log_spend.sum() / max(payer.sum(), 1.0))
    fold = np.random.default_rng(seed).integers(0, folds, n)

    state: dict = {
        "version": STATE_VERSION, "feature_names": list(FEATURE_NAMES),
        "categorical_features": list(CATEGORICAL_FEATURES),
        "payer_increasing": list(INCREASING_IN_EVENTS), "payer_ignores": list(EVENT_RATIOS),
        "smoothing": smoothing,
        "prior_payer_rate": prior_payer, "prior_log_spend": prior_spend, "categories": {},
    }
    oof: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for column in CATEGORICAL:
        codes, uniques = distinct(columns[column])
        keys_of_unique = [category_key(column, u) for u in uniques] + [MISSING_KEY]
        keys = sorted(set(keys_of_unique))
        index = {k: i for i, k in enumerate(keys)}
        idx = np.array([index[k] for k in keys_of_unique], dtype=np.intp)[codes]
        k = len(keys)
        count = np.bincount(idx, minlength=k).astype(np.float64)
        payers = np.bincount(idx, weights=payer, minlength=k)
        spend = np.bincount(idx, weights=log_spend, minlength=k)
        table = {
            "keys": keys, "frequency": (count / n).tolist(),
            "payer_rate": _smooth(payers, count, prior_payer, smoothing).tolist(),
            "log_spend": _smooth(spend, payers, prior_spend, smoothing).tolist(),
        }
        if column in CODED:
            order = sorted((i for i in range(k) if count[i] >= min_count), key=lambda i: -count[i])
            code = np.zeros(k, dtype=int)
            code[order] = np.arange(1, len(order) + 1)
            table["code"] = code.tolist()
        state["categories"][column] = table
        oof[column] = _out_of_fold(idx, fold, folds, payer, log_spend, prior_payer, prior_spend,
                                   smoothing, count, payers, spend)

    state["os_newest_major"] = _newest_major(columns)

    plan = FeaturePlan(state)
    matrix = plan.transform(columns)
    for column, (payer_rate, spend_rate) in oof.items():
        matrix[:, plan.column_of[f"{column}_payer_rate"]] = payer_rate
        matrix[:, plan.column_of[f"{column}_log_spend"]] = spend_rate
    return state, matrix


def _smooth(total, count, prior, smoothing):
    return (total + smoothing * prior) / (count + smoothing)


def _out_of_fold(idx, fold, folds, payer, log_spend, prior_payer, prior_spend, smoothing,
                 count, payers, spend):
    """Target encodings of each row computed without the rows of its own fold."""
    k = len(count)
    payer_rate = np.empty(len(idx))
    spend_rate = np.empty(len(idx))
    for f in range(folds):
        rows = fold == f
        in_count = np.bincount(idx[rows], minlength=k)
        in_payers = np.bincount(idx[rows], weights=payer[rows], minlength=k)
        in_spend = np.bincount(idx[rows], weights=log_spend[rows], minlength=k)
        payer_rate[rows] = _smooth(payers - in_payers, count - in_count, prior_payer, smoothing)[idx[rows]]
        spend_rate[rows] = _smooth(spend - in_spend, payers - in_payers, prior_spend, smoothing)[idx[rows]]
    return payer_rate, spend_rate


def _newest_major(columns) -> dict[str, float]:
    """The 99th percentile OS major per platform: 'how recent' is relative to it."""
    platform = _keys(columns["platform"], "platform")
    major = _os_parts(columns["os_version"])[0]
    newest = {}
    for key in ("ios", "android", "other"):
        values = major[(platform == key) & ~np.isnan(major)]
        newest[key] = float(np.percentile(values, 99)) if len(values) else math.nan
    return newest


def _keys(values, column) -> np.ndarray:
    codes, uniques = distinct(values)
    keys = np.array([category_key(column, u) for u in uniques] + [MISSING_KEY], dtype=object)
    return keys[codes]


def _os_parts(values) -> tuple[np.ndarray, np.ndarray]:
    codes, uniques = distinct(values)
    parts = np.array([parse_os_version(u) for u in uniques] + [(math.nan, math.nan)],
                     dtype=np.float64).reshape(-1, 2)
    return parts[codes, 0], parts[codes, 1]


class FeaturePlan:
    """The fitted state compiled into dicts and arrays; built once when a model loads."""

    def __init__(self, state: dict):
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"feature state version {state.get('version')} is not {STATE_VERSION}")
        self.state = state
        self.feature_names = tuple(state["feature_names"])
        self.column_of = {name: i for i, name in enumerate(self.feature_names)}
        self._index: dict[str, dict[str, int]] = {}
        self._values: dict[str, np.ndarray] = {}  # (keys + 1 unseen row) x 4: freq, payer, spend, code
        for column, table in state["categories"].items():
            keys = table["keys"]
            self._index[column] = {k: i for i, k in enumerate(keys)}
            unseen = [0.0, state["prior_payer_rate"], state["prior_log_spend"], 0.0]
            rows = np.column_stack([table["frequency"], table["payer_rate"], table["log_spend"],
                                    table.get("code", [0] * len(keys))]).astype(np.float64)
            self._values[column] = np.vstack([rows.reshape(-1, 4), unseen])
        self._newest = state["os_newest_major"]

    def _rows(self, column: str, values) -> np.ndarray:
        """Index of each value's row in the column's table (the last row: unseen)."""
        codes, uniques = distinct(values)
        index = self._index[column]
        unseen = len(index)
        of_unique = [index.get(category_key(column, u), unseen) for u in uniques]
        of_unique.append(index.get(MISSING_KEY, unseen))  # code -1: None or NaN
        return np.array(of_unique, dtype=np.intp)[codes]

    def transform(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Validated columns -> float64 matrix (Fortran order), rows x len(feature_names)."""
        e1 = np.asarray(columns["event_1"], dtype=np.float64)
        e2 = np.asarray(columns["event_2"], dtype=np.float64)
        e3 = np.asarray(columns["event_3"], dtype=np.float64)
        # Column-major: every feature below is one contiguous write (LightGBM reads either order).
        out = np.empty((len(e1), len(self.feature_names)), dtype=np.float64, order="F")
        col = self.column_of
        total = e1 + e2
        out[:, col["event_1"]] = e1
        out[:, col["event_2"]] = e2
        out[:, col["event_3"]] = e3
        out[:, col["event_3_missing"]] = np.isnan(e3)
        out[:, col["events_total"]] = total
        out[:, col["log_events_total"]] = np.log1p(total)
        out[:, col["event_2_per_event_1"]] = e2 / (e1 + 1.0)
        out[:, col["event_3_per_event_1"]] = e3 / (e1 + 1.0)

        major, minor = _os_parts(columns["os_version"])
        out[:, col["os_major"]] = major
        out[:, col["os_minor"]] = minor
        for column in CATEGORICAL:
            rows = self._rows(column, columns[column])
            values = self._values[column][rows]
            out[:, col[f"{column}_frequency"]] = values[:, 0]
            out[:, col[f"{column}_payer_rate"]] = values[:, 1]
            out[:, col[f"{column}_log_spend"]] = values[:, 2]
            if column in CODED:
                out[:, col[f"{column}_code"]] = values[:, 3]
            if column == "platform":
                keys = self.state["categories"]["platform"]["keys"] + ["other"]
                newest = np.array([self._newest.get(k, math.nan) for k in keys], dtype=np.float64)
                out[:, col["os_recency"]] = major - newest[rows]
        return out
