"""GET /performance's answer from grouped statistics: pure logic, no I/O.

The statistics come from serving/db/performance.py, grouped by the value as logged; here values
are folded as the model folds them (``category_key``: "iOS" and "ios " are one platform), the
statistics of a group are merged, and ``revenue_model.metrics.realised_metrics`` computes the
metrics: the definitions training uses.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import numpy as np

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
    bin, *STATS); rows of one folded value and bin are merged. NumPy throughout: a grouping by
    country can have thousands of values as logged."""
    if not rows:
        return {}
    folded = {v: fold(by, v) for v in {r[0] for r in rows}}
    group_ids: dict[tuple, int] = {}
    group = np.fromiter((group_ids.setdefault((r[1], folded[r[0]]), len(group_ids)) for r in rows), np.int64, len(rows))
    kind = np.fromiter((_KIND[r[2]] for r in rows), np.int64, len(rows))
    bins = np.array([r[3] for r in rows], dtype=float)  # NULL (no probability): NaN
    stats = np.nan_to_num(np.array([r[4:] for r in rows], dtype=float))
    keep = ~np.isnan(bins)
    group, kind, bins, stats = group[keep], kind[keep], bins[keep], stats[keep]
    order = np.lexsort((-bins, kind, group))  # per group and kind, the highest bin first
    group, kind, bins, stats = group[order], kind[order], bins[order], stats[order]
    segment = group * len(_KIND) + kind
    starts = np.flatnonzero(np.r_[True, (segment[1:] != segment[:-1]) | (bins[1:] != bins[:-1])])
    stats, segment = np.add.reduceat(stats, starts, axis=0), segment[starts]
    edges = np.r_[np.flatnonzero(np.r_[True, segment[1:] != segment[:-1]]), len(segment)]
    parts = {int(segment[a]): stats[a:b] for a, b in zip(edges[:-1], edges[1:])}
    empty = np.zeros((0, len(STATS)))
    out = {}
    for (version, value), g in group_ids.items():
        p, q, a = (parts.get(g * len(_KIND) + k, empty) for k in range(len(_KIND)))
        labelled = p[p[:, _N_LABELLED] > 0]
        totals = p.sum(axis=0) if len(p) else np.zeros(len(STATS))
        outcomes = Outcomes(
            n=float(totals[_N_LABELLED]), predicted=float(totals[_S["predicted"]]),
            actual=float(totals[_S["actual"]]), abs_error=float(totals[_S["abs_error"]]),
            squared_error=float(totals[_S["squared_error"]]), brier=float(totals[_S["brier"]]),
            at_or_below_p90=float(totals[_S["at_or_below_p90"]]), below_p10=float(totals[_S["below_p10"]]),
            by_prediction=labelled[:, [_N_LABELLED, _S["predicted"], _S["actual"]]],
            by_probability=q[:, [_N_LABELLED, _S["payers"]]], by_actual=a[:, [_N_LABELLED, _S["actual"]]])
        out[(version, None if _missing(value) else value)] = (int(totals[_S["n"]]), outcomes)
    return out


_KIND = {"p": 0, "q": 1, "a": 2}
_S = {name: i for i, name in enumerate(STATS)}
_N_LABELLED = _S["n_labelled"]


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
