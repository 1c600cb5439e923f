"""GET /performance's answer from grouped statistics: pure logic, no I/O.

The statistics come from serving/db/performance.py, grouped by the value as logged; here values
are folded as the model folds them (``category_key``: "iOS" and "ios " are one platform), the
statistics of a group are merged, and ``revenue_model.metrics.realised_metrics`` computes the
metrics: the definitions training uses.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from itertools import chain

import numpy as np

from revenue_model.features import category_key
from revenue_model.metrics import Outcomes, realised_metrics

STATS = ("n", "n_labelled", "predicted", "actual", "abs_error", "squared_error", "brier",
         "at_or_below_p90", "below_p10", "payers")
_FOLDED = ("country", "platform", "source")
MIN_LABELLED = 200


MAX_SPAN_DAYS = 512  # the longest span of days with cells of its own (a power of two)
_EPOCH_DAY = date(1970, 1, 1)
Span = tuple[date, int]  # (first day, number of days)


def split_window(since: datetime, until: datetime | None, built: set[Span], today: date, first_day: date | None,
                 *, max_days: int = MAX_SPAN_DAYS) -> tuple[list[Span], list[tuple[datetime, datetime | None]]]:
    """The window [since, until) (until None: no end) as built spans of whole UTC days before
    ``today`` (spans of at most ``max_days``), and the time ranges left over, read row by row:
    the partial days at its ends, today, and days whose spans are not built. Days before
    ``first_day`` (the earliest row) hold nothing and need neither."""
    def start_of(day: date) -> datetime:
        return datetime.combine(day, time(), tzinfo=timezone.utc)

    if first_day is None:  # no rows at all
        return [], []
    first_whole = since.date() if start_of(since.date()) == since else since.date() + timedelta(days=1)
    end_whole = min(today, until.date()) if until is not None else today
    first_whole = max(first_whole, min(first_day, end_whole))
    if first_whole >= end_whole:
        return [], [(since, until)]
    spans, unbuilt = cover(_number(first_whole), _number(end_whole), built, first_day, max_days)
    ranges = [(since, start_of(first_whole))] if since < start_of(first_whole) else []
    for day in unbuilt:
        start = start_of(_day(day))
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], start + timedelta(days=1))
        else:
            ranges.append((start, start + timedelta(days=1)))
    end_start = start_of(end_whole)
    if until is None or end_start < until:
        if ranges and ranges[-1][1] == end_start:
            ranges[-1] = (ranges[-1][0], until)
        else:
            ranges.append((end_start, until))
    return [(_day(s), n) for s, n in spans], ranges


def cover(a: int, b: int, built: set[Span], first_day: date | None, max_days: int) -> tuple[list, list[int]]:
    """Days a..b-1 (numbers since 1970-01-01) as built aligned spans, and the days left uncovered.

    The run is cut into the largest aligned spans (start a multiple of the length); a span not
    built is looked at as its two halves, down to single days.
    """
    numbers = {(_number(s), n) for s, n in built}
    first = _number(first_day) if first_day is not None else b
    spans, days = [], []

    def visit(start: int, length: int) -> None:
        if start + length <= first:
            return  # before the first row: nothing there
        if (start, length) in numbers:
            spans.append((start, length))
        elif length == 1:
            days.append(start)
        else:
            visit(start, length // 2)
            visit(start + length // 2, length // 2)

    while a < b:
        length = max_days
        while length > 1 and (a % length or a + length > b):
            length //= 2
        visit(a, length)
        a += length
    return spans, days


def spans_to_build(built: set[Span], first_day: date | None, today: date, limit: int = 1,
                   *, max_days: int = MAX_SPAN_DAYS) -> list[Span]:
    """The next spans to build: days first (the most recent first), then longer spans whose halves
    are built; only spans that end before ``today`` and hold a day from ``first_day`` on."""
    if first_day is None or first_day >= today:
        return []
    numbers = {(_number(s), n) for s, n in built}
    first, end = _number(first_day), _number(today)
    ready = lambda s, n: (s, n) in numbers or s + n <= first  # noqa: E731  (nothing before the first row)
    out: list[Span] = []
    length = 1
    while length <= max_days and len(out) < limit:
        start = (first // length) * length
        candidates = [s for s in range(start, end - length + 1, length)
                      if not ready(s, length) and (length == 1 or (ready(s, length // 2)
                                                                   and ready(s + length // 2, length // 2)))]
        out += [(_day(s), length) for s in sorted(candidates, reverse=True)][:limit - len(out)]
        length *= 2
    return out


def _number(day: date) -> int:
    return (day - _EPOCH_DAY).days


def _day(number: int) -> date:
    return _EPOCH_DAY + timedelta(days=number)


def fold(by: str | None, value):
    """A grouping value as reported: countries, platforms and sources as the model folds them."""
    if by in _FOLDED:
        return category_key(by, value)
    return value


def group_outcomes(rows: list[tuple], by: str | None) -> dict[tuple[str, object], tuple[int, Outcomes]]:
    """{(model_version, value): (users predicted, Outcomes)} from rows (value, model_version, kind,
    bin, *STATS): totals (kind 'c') and bins ('p', 'q', 'a'; a group without them has Outcomes
    without rankings); rows of one folded value and bin are merged. A bins row may hold arrays
    (bin and each statistic a list, a statistic it lacks None): the bins of one value, version and
    kind, as outcome_bins stores them. NumPy throughout: a grouping by country can have thousands of
    values as logged, and a month of bins hundreds of thousands."""
    if not rows:
        return {}
    folded = {v: fold(by, v) for v in {r[0] for r in rows}}
    group_ids: dict[tuple, int] = {}
    ids = [group_ids.setdefault((r[1], folded[r[0]]), len(group_ids)) for r in rows]
    arrays = [i for i, r in enumerate(rows) if isinstance(r[3], list)]
    scalars = [i for i, r in enumerate(rows) if not isinstance(r[3], list)]
    sizes = np.array([len(rows[i][3]) for i in arrays], dtype=np.int64)
    group = np.concatenate([np.array([ids[i] for i in scalars], dtype=np.int64),
                            np.repeat(np.array([ids[i] for i in arrays], dtype=np.int64), sizes)])
    kind = np.concatenate([np.array([_KIND[rows[i][2]] for i in scalars], dtype=np.int64),
                           np.repeat(np.array([_KIND[rows[i][2]] for i in arrays], dtype=np.int64), sizes)])
    # NULL bin: totals, or a user without a probability.
    bins = np.concatenate([np.array([rows[i][3] for i in scalars], dtype=float),
                           np.fromiter(chain.from_iterable(rows[i][3] for i in arrays), float, int(sizes.sum()))])
    stats = np.zeros((len(bins), len(STATS)))
    stats[:len(scalars)] = np.array([rows[i][4:] for i in scalars], dtype=float).reshape(len(scalars), len(STATS))
    for column in range(len(STATS)):  # one pass per statistic over every array row that has it
        has = [rows[i][4 + column] is not None for i in arrays]
        if any(has):
            at = len(scalars) + np.flatnonzero(np.repeat(np.array(has, dtype=bool), sizes))
            stats[at, column] = np.fromiter(
                chain.from_iterable(rows[i][4 + column] for i, h in zip(arrays, has) if h), float, len(at))
    stats = np.nan_to_num(stats)
    keep = ~np.isnan(bins) | (kind == _KIND["c"])
    bins = np.nan_to_num(bins)
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
        c, p, q, a = (parts.get(g * len(_KIND) + k, empty) for k in range(len(_KIND)))
        totals = c.sum(axis=0) if len(c) else np.zeros(len(STATS))
        outcomes = Outcomes(
            n=float(totals[_N_LABELLED]), predicted=float(totals[_S["predicted"]]),
            actual=float(totals[_S["actual"]]), abs_error=float(totals[_S["abs_error"]]),
            squared_error=float(totals[_S["squared_error"]]), brier=float(totals[_S["brier"]]),
            at_or_below_p90=float(totals[_S["at_or_below_p90"]]), below_p10=float(totals[_S["below_p10"]]),
            by_prediction=p[:, [_N_LABELLED, _S["predicted"], _S["actual"]]],
            by_probability=q[:, [_N_LABELLED, _S["payers"]]], by_actual=a[:, [_N_LABELLED, _S["actual"]]])
        out[(version, None if _missing(value) else value)] = (int(totals[_S["n"]]), outcomes)
    return out


_KIND = {"c": 0, "p": 1, "q": 2, "a": 3}
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
