"""GET /performance's answer from grouped statistics: pure logic, no I/O.

The statistics come from serving/db/performance.py, grouped by the value as logged; here values
are folded as the model folds them (``category_key``: "iOS" and "ios " are one platform), the
statistics of a group are merged, and ``revenue_model.metrics.realised_metrics`` computes the
metrics: the definitions training uses.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import numpy as np
import pandas as pd

from revenue_model.features import category_key
from revenue_model.metrics import Outcomes, realised_metrics

STATS = ("n", "n_labelled", "predicted", "actual", "abs_error", "squared_error", "brier",
         "at_or_below_p90", "below_p10", "payers")
_FOLDED = ("country", "platform", "source")
MIN_LABELLED = 200


def split_window(since: datetime, until: datetime | None, built: list[date],
                 today: date) -> tuple[list[date], list[tuple[datetime, datetime | None]]]:
    """The window [since, until) as the built days it covers whole (before ``today``) and the time
    ranges left over, to be read row by row. ``until`` None: no end."""
    def start_of(day: date) -> datetime:
        return datetime.combine(day, time(), tzinfo=timezone.utc)

    days = [d for d in sorted(built) if d < today and start_of(d) >= since
            and (until is None or start_of(d + timedelta(days=1)) <= until)]
    ranges, cursor = [], since
    for day in days:
        if start_of(day) > cursor:
            ranges.append((cursor, start_of(day)))
        cursor = start_of(day + timedelta(days=1))
    if until is None or cursor < until:
        ranges.append((cursor, until))
    return days, ranges


def fold(by: str | None, value):
    """A grouping value as reported: countries, platforms and sources as the model folds them."""
    if by in _FOLDED:
        return category_key(by, value)
    return value


def group_outcomes(rows: list[tuple], by: str | None) -> dict[tuple[str, object], tuple[int, Outcomes]]:
    """{(model_version, value): (users predicted, Outcomes)} from rows (value, model_version, kind,
    bin, *STATS)."""
    if not rows:
        return {}
    frame = pd.DataFrame(rows, columns=["value", "model_version", "kind", "bin", *STATS])
    frame["value"] = [fold(by, v) for v in frame["value"]]
    frame[list(STATS)] = frame[list(STATS)].astype(float).fillna(0.0)
    frame["bin"] = frame["bin"].astype(float)
    merged = frame.groupby(["model_version", "value", "kind", "bin"], dropna=False, sort=False)[list(STATS)].sum()
    merged = merged.reset_index().sort_values("bin", ascending=False, na_position="last")
    out = {}
    for (version, value), group in merged.groupby(["model_version", "value"], dropna=False, sort=False):
        kinds = {k: g for k, g in group.groupby("kind")}
        p = kinds.get("p", group.iloc[:0])
        labelled = p[p["n_labelled"] > 0]
        q = kinds.get("q", group.iloc[:0]).dropna(subset=["bin"])
        a = kinds.get("a", group.iloc[:0])
        outcomes = Outcomes(
            n=float(p["n_labelled"].sum()), predicted=float(p["predicted"].sum()), actual=float(p["actual"].sum()),
            abs_error=float(p["abs_error"].sum()), squared_error=float(p["squared_error"].sum()),
            brier=float(p["brier"].sum()), at_or_below_p90=float(p["at_or_below_p90"].sum()),
            below_p10=float(p["below_p10"].sum()),
            by_prediction=labelled[["n_labelled", "predicted", "actual"]].to_numpy(float),
            by_probability=q[["n_labelled", "payers"]].to_numpy(float),
            by_actual=a[["n_labelled", "actual"]].to_numpy(float))
        out[(version, None if _missing(value) else value)] = (int(p["n"].sum()), outcomes)
    return out


def performance_groups(rows: list[tuple], by: str | None, min_labelled: int = MIN_LABELLED) -> list[dict]:
    """GET /performance's groups: one per model version and value, ordered by version then value."""
    groups = []
    for (version, value), (n_predicted, outcomes) in group_outcomes(rows, by).items():
        n_labelled = int(outcomes.n)
        enough = n_labelled >= min_labelled and n_labelled > 0
        groups.append({
            "model_version": version, "by": by, "value": value, "n_predicted": n_predicted,
            "n_labelled": n_labelled, "metrics": realised_metrics(outcomes) if enough else None,
            "reason": None if enough else (f"{n_labelled} labelled users, fewer than min_labelled="
                                           f"{min_labelled}"),
        })
    groups.sort(key=lambda g: (_version_key(g["model_version"]), g["value"] is not None, str(g["value"])))
    return groups


def _version_key(version: str) -> tuple:
    return (0, int(version), "") if str(version).isdigit() else (1, 0, str(version))


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
