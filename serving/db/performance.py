"""The statistics behind GET /performance, read from the cells of whole spans of days and the rows of the rest.

Rows come back as ``(value, model_version, kind, bin, *STATS)``: per grouping value (as logged,
ASCII letters lowercased and spaces trimmed: a first step of the folding the caller finishes with
``category_key``) and model version, the totals (kind 'c': every sum and count) and the labelled
users per bin of predicted revenue ('p'), payer probability ('q') and actual revenue ('a'). The
bins of a built span come as they are stored in outcome_bins (migration 0007): one row per value,
version and kind whose bin and statistics are arrays, added up by ``serving.performance``.

A window [since, until) reads the cells of the built spans of whole UTC days it covers (days before
today, in spans of 1 to 512 days: serving/db/outcomes.py builds them) and groups the rows of
``prediction_outcomes`` for the rest: the partial days at both ends, today, and days being
rebuilt. In two steps: the totals of every group first, then bins only for the groups with at
least ``min_labelled`` labelled users, the only ones whose ranking metrics are reported (a long
tail of rare countries or sources costs its totals, not its bins).
"""

from __future__ import annotations

from datetime import date, datetime

import psycopg2.extensions

from serving.performance import STATS, fold, split_window

# Groupings of the cells; 'day' is read from the 'none' cells of single days.
CELL_DIMS = ("none", "route", "country", "platform", "source")
BY = ("country", "platform", "source", "route", "day")

_LOWER = "translate(btrim({}), 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')"
_VALUE = {"none": "NULL::text", "route": "route", "country": _LOWER.format("country"),
          "platform": _LOWER.format("platform"), "source": _LOWER.format("source"),
          "day": "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD')"}
# Per kind: the bin, the statistics in STATS order, and which rows count.
_KINDS = {
    "c": ("NULL::integer",
          "count(*), count(revenue), sum(predicted_revenue) FILTER (WHERE revenue IS NOT NULL), sum(revenue), "
          "sum(abs(predicted_revenue - revenue)), sum((predicted_revenue - revenue) ^ 2), "
          "sum((payer_probability - (revenue > 0)::int) ^ 2), count(*) FILTER (WHERE revenue <= revenue_p90), "
          "count(*) FILTER (WHERE revenue < revenue_p10), count(*) FILTER (WHERE revenue > 0)", ""),
    "p": ("prediction_bin", "0, count(*), sum(predicted_revenue), sum(revenue), 0, 0, 0, 0, 0, 0",
          "AND revenue IS NOT NULL"),
    "q": ("probability_bin", "0, count(*), 0, 0, 0, 0, 0, 0, 0, count(*) FILTER (WHERE revenue > 0)",
          "AND revenue IS NOT NULL"),
    "a": ("revenue_bin", "0, count(*), 0, sum(revenue), 0, 0, 0, 0, 0, 0", "AND revenue IS NOT NULL"),
}
TOTALS, BINS = ("c",), ("p", "q", "a")
# For a transaction reading a time range of prediction_outcomes' rows. Rows enter the table in log
# order, so a range of time is a run of pages (correlation 0.9997 at 10M rows), which the planner's
# cost of a bitmap heap scan ignores: with the default 4 it scanned the whole table for a week's
# partial days and today (3 GB at 10M rows: 2.4 s, against 0.3 s through the timestamp index).
RANGE_PLANNING = "SET LOCAL random_page_cost = 1.1"
# As doubles: a sum of BIGINTs is NUMERIC, which psycopg2 reads as Decimal (slow to turn into NumPy).
_SUMS = ", ".join(f"sum({s})::double precision" for s in STATS)
# outcome_bins' arrays in STATS order, those a kind's metrics read (the others are NULL: zeros not sent).
_BIN_ARRAYS = ", ".join({"n_labelled": "n_labelled", "predicted": "CASE WHEN kind = 'p' THEN predicted END",
                         "actual": "CASE WHEN kind IN ('p', 'a') THEN actual END",
                         "payers": "CASE WHEN kind = 'q' THEN payers END"}.get(s, "NULL") for s in STATS)


def rows_sql(dim: str, ranges: int, kinds=tuple(_KINDS), only_groups: bool = False,
             source: str = "prediction_outcomes") -> str:
    """Statistics grouped from ``source`` (prediction_outcomes, or a subquery with its columns)
    over ``ranges`` time ranges (parameters %(start_K)s, %(end_K)s: start inclusive, end exclusive
    or NULL); with ``only_groups``, only the versions %(versions)s and values %(values)s."""
    window = " OR ".join(f"(timestamp >= %(start_{k})s AND (%(end_{k})s::timestamptz IS NULL "
                         f"OR timestamp < %(end_{k})s))" for k in range(ranges))
    groups = " AND model_version = ANY(%(versions)s)" if only_groups else ""
    if only_groups and dim != "none":
        groups += f" AND ({_VALUE[dim]} = ANY(%(values)s) OR (%(with_null)s AND {_VALUE[dim]} IS NULL))"
    parts = [f"SELECT {_VALUE[dim]}, model_version, 'c'::\"char\", {_KINDS['c'][0]}, {_KINDS['c'][1]} "
             f"FROM {source} WHERE ({window}){groups} GROUP BY 1, 2, 4"] if "c" in kinds else []
    binned = [k for k in kinds if k != "c"]
    if binned:
        parts.append(_binned(_VALUE[dim], binned, source, f"({window}) AND revenue IS NOT NULL{groups}"))
    return " UNION ALL ".join(parts)


def _binned(value: str, kinds: list[str], source: str, where: str) -> str:
    """The bins of ``kinds`` in one scan of the rows, a grouping set per kind (the kind of a row is
    the set it is of): at 1M rows a day is 33,000 rows, read once instead of once per kind."""
    of = {k: f"GROUPING({_KINDS[k][0]}) = 0" for k in kinds}
    pick = lambda exprs: "CASE " + " ".join(f"WHEN {of[k]} THEN {e}" for k, e in exprs.items()) + " END"  # noqa: E731
    stats = [{k: _KINDS[k][1].split(", ")[i] for k in kinds} for i in range(len(STATS))]
    columns = ", ".join("0" if set(e.values()) == {"0"} else pick(e) for e in stats)
    sets = ", ".join(f"({value}, model_version, {_KINDS[k][0]})" for k in kinds)
    return (f"SELECT {value}, model_version, {pick({k: repr(k) for k in kinds})}::\"char\", "
            f"{pick({k: _KINDS[k][0] for k in kinds})}, {columns} FROM {source} WHERE {where} "
            f"GROUP BY GROUPING SETS ({sets})")


def cells_sql(by: str | None, only_groups: bool, kinds) -> str:
    """The totals of spans %(starts)s/%(lengths)s summed per value and version (kinds: TOTALS), or
    their bins, a row of arrays per span, value, version and kind, as stored (kinds: BINS)."""
    value = "to_char(start, 'YYYY-MM-DD')" if by == "day" else "value"
    groups = " AND model_version = ANY(%(versions)s)" if only_groups else ""
    if only_groups and by not in (None, "day"):
        groups += " AND (value = ANY(%(values)s) OR (%(with_null)s AND value IS NULL))"
    where = ("WHERE dim = %(dim)s AND (start, days) IN (SELECT * FROM unnest(%(starts)s::date[], %(lengths)s::int[])) "
             f"AND kind = ANY(%(kinds)s::\"char\"[]){groups}")
    if tuple(kinds) == TOTALS:
        return f"SELECT {value}, model_version, kind, bin, {_SUMS} FROM outcome_cells {where} GROUP BY 1, 2, 3, 4"
    return f"SELECT {value}, model_version, kind, bins, {_BIN_ARRAYS} FROM outcome_bins {where}"


def range_parameters(ranges: list[tuple[datetime, datetime | None]]) -> dict:
    out = {}
    for k, (start, end) in enumerate(ranges):
        out[f"start_{k}"], out[f"end_{k}"] = start, end
    return out


def performance_rows(connection, *, since: datetime, until: datetime | None, by: str | None, today: date,
                     min_labelled: int = 1) -> list[tuple]:
    """Statistics of predictions made in [since, until) (until None: no end), grouped by ``by``
    (None: per model version only), from one consistent snapshot: totals of every group, bins of
    the groups with at least ``min_labelled`` labelled users."""
    connection.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute(RANGE_PLANNING)
            cursor.execute("SELECT (min(timestamp) AT TIME ZONE 'UTC')::date FROM prediction_outcomes")
            (first_day,) = cursor.fetchone()
            cursor.execute("SELECT start, days FROM outcome_spans")
            built = set(cursor.fetchall())
            spans, ranges = split_window(since, until, built, today, first_day, max_days=1 if by == "day" else
                                         512)
            dim = "none" if by in (None, "day") else by
            parameters = {"dim": dim, "starts": [s for s, _ in spans], "lengths": [n for _, n in spans],
                          **range_parameters(ranges)}
            totals = _read(cursor, by, dim, spans, ranges, TOTALS, parameters, False)
            versions, values = _qualifying(totals, by, min_labelled)
            bins = _read(cursor, by, dim, spans, ranges, BINS, {
                **parameters, "versions": versions, "values": [v for v in values if v is not None],
                "with_null": None in values}, True) if versions else []
    finally:
        connection.rollback()
        connection.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_DEFAULT, readonly=False)
    return totals + bins


def _read(cursor, by, dim, spans, ranges, kinds, parameters, only_groups) -> list[tuple]:
    rows = []
    if spans:
        cursor.execute(cells_sql(by, only_groups, kinds), {**parameters, "kinds": list(kinds)})
        rows += cursor.fetchall()
    if ranges:
        cursor.execute(rows_sql(by or "none", len(ranges), kinds, only_groups), parameters)
        rows += cursor.fetchall()
    return rows


def _qualifying(totals: list[tuple], by: str | None, min_labelled: int) -> tuple[list[str], list]:
    """Versions and values (as in the cells) of the folded groups with enough labelled users."""
    labelled: dict[tuple, float] = {}
    for value, version, _, _, _, n_labelled, *_ in totals:
        key = (version, fold(by, value))
        labelled[key] = labelled.get(key, 0) + float(n_labelled or 0)
    enough = {key for key, n in labelled.items() if n >= max(min_labelled, 1)}
    chosen = {(version, value) for value, version, *_ in totals if (version, fold(by, value)) in enough}
    return sorted({v for v, _ in chosen}), list({x for _, x in chosen})
