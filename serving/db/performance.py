"""The statistics behind GET /performance, read from the cells of whole days and the rows of the rest.

Rows come back as ``(value, model_version, kind, bin, *STATS)``: per grouping value as logged
(folded by the caller), model version, and bin of predicted revenue (kind 'p'), payer probability
('q') or actual revenue ('a'). A window [since, until) reads the cells of the UTC days it covers
whole (days before today whose cells are built and current: serving/db/outcomes.py) and groups the
rows of ``prediction_outcomes`` for the rest: the partial days at both ends, today, and days whose
cells are being rebuilt. So a call costs the cells of the window plus the rows of at most a few days.
"""

from __future__ import annotations

from datetime import date, datetime

import psycopg2.extensions

from serving.performance import STATS, split_window

# Groupings of the cells; 'day' is read from the 'none' cells of each day.
CELL_DIMS = ("none", "route", "country", "platform", "source")
BY = ("country", "platform", "source", "route", "day")

_VALUE = {"none": "NULL::text", "route": "route", "country": "country", "platform": "platform",
          "source": "source", "day": "to_char(timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD')"}
# Per kind: the bin, the statistics in STATS order, and which rows count.
_KINDS = {
    "p": ("prediction_bin",
          "count(*), count(revenue), sum(predicted_revenue) FILTER (WHERE revenue IS NOT NULL), sum(revenue), "
          "sum(abs(predicted_revenue - revenue)), sum((predicted_revenue - revenue) ^ 2), "
          "sum((payer_probability - (revenue > 0)::int) ^ 2), count(*) FILTER (WHERE revenue <= revenue_p90), "
          "count(*) FILTER (WHERE revenue < revenue_p10), 0", ""),
    "q": ("probability_bin", "0, count(*), 0, 0, 0, 0, 0, 0, 0, count(*) FILTER (WHERE revenue > 0)",
          "AND revenue IS NOT NULL"),
    "a": ("revenue_bin", "0, count(*), 0, sum(revenue), 0, 0, 0, 0, 0, 0", "AND revenue IS NOT NULL"),
}


def rows_sql(dim: str, ranges: int) -> str:
    """Statistics grouped from prediction_outcomes over ``ranges`` time ranges (parameters
    %(start_K)s, %(end_K)s for K in 0..ranges-1: start inclusive, end exclusive or NULL)."""
    window = " OR ".join(f"(timestamp >= %(start_{k})s AND (%(end_{k})s::timestamptz IS NULL "
                         f"OR timestamp < %(end_{k})s))" for k in range(ranges))
    return " UNION ALL ".join(
        f"SELECT {_VALUE[dim]}, model_version, '{kind}'::\"char\", {bin_}, {stats} FROM prediction_outcomes "
        f"WHERE ({window}) {only} GROUP BY 1, 2, 4"
        for kind, (bin_, stats, only) in _KINDS.items())


def range_parameters(ranges: list[tuple[datetime, datetime | None]]) -> dict:
    out = {}
    for k, (start, end) in enumerate(ranges):
        out[f"start_{k}"], out[f"end_{k}"] = start, end
    return out


_SUMS = ", ".join(f"sum({s})" for s in STATS)


def performance_rows(connection, *, since: datetime, until: datetime | None, by: str | None,
                     today: date) -> list[tuple]:
    """Statistics of predictions made in [since, until) (until None: no end), grouped by ``by``
    (None: per model version only), from one consistent snapshot."""
    connection.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT day FROM outcome_days WHERE day >= %s::date AND (%s::date IS NULL OR day <= %s::date) "
                           "ORDER BY day", (since, until, until))
            built = [d for (d,) in cursor.fetchall()]
            days, ranges = split_window(since, until, built, today)
            rows: list[tuple] = []
            if days:
                dim = "none" if by in (None, "day") else by
                value = "to_char(day, 'YYYY-MM-DD')" if by == "day" else "value"
                cursor.execute(f"SELECT {value}, model_version, kind, bin, {_SUMS} FROM outcome_cells "
                               "WHERE dim = %s AND day = ANY(%s) GROUP BY 1, 2, 3, 4", (dim, days))
                rows += cursor.fetchall()
            if ranges:
                cursor.execute(rows_sql(by or "none", len(ranges)), range_parameters(ranges))
                rows += cursor.fetchall()
    finally:
        connection.rollback()
        connection.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_DEFAULT, readonly=False)
    return rows
