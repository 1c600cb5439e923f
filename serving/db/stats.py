"""The /stats aggregates over the log's champion rows (a shadow's rows are not answers), read
from the hourly rollup (serving/db/stats_cells.py) plus the rows it does not hold yet.

A request is counted by its row at user index 0: every request has exactly one (a request
without users is logged as one row), and all rows of a request share its latency.
A window from ``since`` is: the rollup's cells of the whole hours from the first hour boundary at
or after ``since``, the rows of the partial hour before it, and the rows past the rollup's feed
(any timestamp at or after ``since``: a replay can bring old ones), all in one snapshot. Counts,
sums, minima, maxima and averages are exact; latency percentiles come from bins 0.5 % wide.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta

from serving.db.dashboard import PAYER_EDGES, RAW_SOURCES_READ, REVENUE_EDGES_USD, fold_sources, histogram
from serving.db.stats_cells import EDGES, LATENCY_BINS_PER_E, MEASURES, cells_sql

WORK_MEM = "64MB"  # per /stats call, at most
_SUMS = {"pred_min": "min", "pred_max": "max", "first_ts": "min", "last_ts": "max"}
_COUNTS = {"n", "n_first", "pred_n", "prob_n", "inf_n"}
_SUMMED = ", ".join(f"{_SUMS[m]}({m})" if m in _SUMS else f"sum({m})::{'bigint' if m in _COUNTS else 'float8'}"
                    for m in MEASURES)
_WINDOW = (f"SELECT dim, a, b, {_SUMMED} FROM ("
           f"SELECT dim, a, b, {', '.join(MEASURES)} FROM stats_cells WHERE hour >= %(whole_from)s "
           "UNION ALL SELECT dim, a, b, " + ", ".join(MEASURES) + " FROM ("
           + cells_sql("timestamp >= %(since)s AND timestamp < %(whole_from)s AND id <= %(mark)s",
                       "timestamp >= %(since)s AND id > %(mark)s")
           + f") AS tail(hour, dim, a, b, {', '.join(MEASURES)})) AS cells GROUP BY dim, a, b")


def window_cells(connection, since: datetime) -> dict[str, list[dict]]:
    """{dim: [{"a", "b", measures...}]} summed over the window from ``since``."""
    hour = since.replace(minute=0, second=0, microsecond=0)
    whole_from = hour if hour == since else hour + timedelta(hours=1)
    with connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # the feed and cells agree
        # Summing a month's cells (340,000 at 10M rows) in memory, not in a sort spilled to disk: 2x faster.
        cursor.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        cursor.execute("SELECT last_log_id FROM stats_feed WHERE id = 1")
        (mark,) = cursor.fetchone()
        cursor.execute(_WINDOW, {"since": since, "whole_from": whole_from, "mark": mark, **EDGES})
        rows = cursor.fetchall()
    connection.rollback()
    out: dict[str, list[dict]] = defaultdict(list)
    for dim, a, b, *measures in rows:
        out[dim].append({"a": a, "b": b, **dict(zip(MEASURES, measures))})
    return out


def prediction_stats(connection, since: datetime) -> dict:
    """Aggregates for /stats over rows logged at or after ``since`` (never raw inputs), with the
    dashboard's ``distributions``, ``top_sources`` and ``errors_by_route``."""
    cells = window_cells(connection, since)
    routes, answered = cells["r"], [c for c in cells["r"] if c["b"] == "200"]
    total = {m: sum(c[m] for c in routes) for m in ("n", "n_first", "pred_n", "pred_sum", "prob_n", "prob_sum",
                                                    "inf_n", "inf_sum")}
    first = min((c["first_ts"] for c in answered), default=None)
    last = max((c["last_ts"] for c in answered), default=None)
    errors, by_route, errors_by_route = {}, defaultdict(lambda: [0, 0]), defaultdict(dict)
    for c in sorted(routes, key=lambda c: (c["a"], int(c["b"]))):
        by_route[c["a"]][0] += c["n_first"]
        by_route[c["a"]][1] += c["n"]
        if c["b"] != "200":
            errors_by_route[c["a"]][c["b"]] = c["n_first"]
    for c in routes:
        if c["b"] != "200":
            e = errors.setdefault(int(c["b"]), [0, 0])
            e[0] += c["n_first"]
            e[1] += c["n"]
    countries = sorted(cells["c"], key=lambda c: (-c["n"], c["a"] is None, c["a"] or ""))[:10]
    versions = sorted(cells["v"], key=lambda c: c["first_ts"])
    sources = sorted(cells["s"], key=lambda c: (-c["n"], c["a"] is None, c["a"] or ""))[:RAW_SOURCES_READ]
    return {
        "total_predictions": sum(c["n"] for c in answered), "total_rows": total["n"],
        "total_requests": total["n_first"],
        "avg_predicted_revenue": _ratio(total["pred_sum"], total["pred_n"]),
        "min_predicted_revenue": min((c["pred_min"] for c in routes if c["pred_min"] is not None), default=None),
        "max_predicted_revenue": max((c["pred_max"] for c in routes if c["pred_max"] is not None), default=None),
        "total_predicted_revenue": total["pred_sum"] if total["pred_n"] else None,
        "avg_payer_probability": _ratio(total["prob_sum"], total["prob_n"]),
        "avg_inference_time_ms": _ratio(total["inf_sum"], total["inf_n"]),
        "first_prediction": first.isoformat() if first else None,
        "last_prediction": last.isoformat() if last else None,
        "latency_ms": latency(cells["l"]),
        "top_countries": [{"country": c["a"], "predictions": c["n"],
                           "avg_predicted_revenue": _ratio(c["pred_sum"], c["pred_n"])} for c in countries],
        "platform_distribution": [{"platform": c["a"], "predictions": c["n"]}
                                  for c in sorted(cells["p"], key=lambda c: (-c["n"], c["a"]))],
        "errors": {str(code): {"requests": r, "rows": n} for code, (r, n) in sorted(errors.items())},
        "by_model_version": [{"model_name": c["a"], "model_version": c["b"], "predictions": c["n"],
                              "avg_predicted_revenue": _ratio(c["pred_sum"], c["pred_n"]),
                              "first": c["first_ts"].isoformat(), "last": c["last_ts"].isoformat()}
                             for c in versions],
        "by_route": {route: {"requests": r, "rows": n} for route, (r, n) in sorted(by_route.items())},
        "distributions": {"predicted_revenue": histogram(REVENUE_EDGES_USD, _buckets(cells["e"])),
                          "payer_probability": histogram(PAYER_EDGES, _buckets(cells["q"]))},
        "top_sources": fold_sources([(c["a"], c["n"], c["pred_sum"] if c["pred_n"] else None) for c in sources]),
        "errors_by_route": dict(errors_by_route),
    }


def latency(bins: list[dict]) -> dict:
    """avg (exact) and p50/p95/p99 as percentile_cont computes them, each row at its bin's value."""
    n = sum(c["n"] for c in bins)
    if not n:
        return {"avg": None, "p50": None, "p95": None, "p99": None}
    ordered = sorted((int(c["a"]), c["n"]) for c in bins)
    out = {"avg": sum(c["lat_sum"] for c in bins) / n}
    for name, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        position = p * (n - 1)
        low, high = _value_at(ordered, math.floor(position)), _value_at(ordered, math.ceil(position))
        out[name] = low + (high - low) * (position - math.floor(position))
    return out


def _value_at(ordered: list[tuple[int, int]], rank: int) -> float:
    """The value of the row at ``rank`` (0-based) in ascending order."""
    seen = 0
    for bin_, count in ordered:
        seen += count
        if rank < seen:
            return math.exp(bin_ / LATENCY_BINS_PER_E)
    raise IndexError(rank)


def _buckets(cells: list[dict]) -> list[tuple[int, int]]:
    return [(int(c["a"]), c["n"]) for c in cells if c["a"] is not None]


def _ratio(total, count):
    return total / count if count else None
