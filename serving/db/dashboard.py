"""The dashboard's reads beyond release 1's /stats: traffic and latency per interval, over the log's
champion rows like stats.py (a request is its row at user index 0), and the shapes of the
distributions and top sources that stats_cells.py counts.

Shapes (what GET /stats and GET /stats/timeseries return from these):
- ``distributions``: ``{"predicted_revenue": {"edges": [...], "counts": [...]}, "payer_probability": ...}``,
  ``counts[i]`` users with ``edges[i] <= value < edges[i + 1]``, the last bin ``edges[-1]`` and above.
- ``top_sources``: ``[{"source", "predictions", "avg_predicted_revenue"}]``, sources folded as the
  model folds them (``category_key``: "Organic" and " organic" are one), at most TOP_SOURCES.
- ``errors_by_route``: ``{route: {status: requests}}`` for the answers that were not 200 (a client's
  mistakes on /predict apart from requests to routes that do not exist, "(unknown)").
- ``timeseries``: one dict per interval from ``first`` to ``last``, empty intervals included, of the
  prediction routes only (the requests a client makes to be scored).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from revenue_model.features import category_key

# USD. Predicted D7 revenue is heavy-tailed: most users are worth cents, a few hundreds of dollars.
REVENUE_EDGES_USD = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0)
PAYER_EDGES = tuple(round(i * 0.05, 2) for i in range(20))  # 5 % wide; the last bin is 95 % to 100 %
TOP_SOURCES = 10
# Raw spellings read to fold into sources: the most frequent ones. Bounds the work when clients send
# many distinct values (every spelling of a source shows up among the most frequent in practice).
RAW_SOURCES_READ = 1000

_TIMESERIES = """
    SELECT slot.t, coalesce(r.requests, 0), coalesce(r.users, 0), coalesce(r.errors, 0), r.latency
    FROM generate_series(%(first)s::timestamptz, %(last)s::timestamptz, %(step)s::interval) AS slot(t)
    LEFT JOIN (
        SELECT date_bin(%(step)s::interval, timestamp, %(first)s::timestamptz) AS t,
               count(*) FILTER (WHERE user_index = 0) AS requests,
               count(*) FILTER (WHERE status_code = 200) AS users,
               count(*) FILTER (WHERE user_index = 0 AND status_code <> 200) AS errors,
               percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms)
                   FILTER (WHERE user_index = 0) AS latency
        FROM predictions
        WHERE timestamp >= %(first)s AND timestamp < %(until)s AND role = 'champion'
          AND route = ANY(%(routes)s)
        GROUP BY 1) AS r ON r.t = slot.t
    ORDER BY slot.t"""


def histogram(edges: tuple, bucket_counts: list[tuple[int, int]]) -> dict:
    """PostgreSQL's ``width_bucket`` numbers (1 = first bin, len(edges) = the open last one) to counts.

    Bucket 0 (below the first edge: a negative prediction, which the model never makes) is dropped.
    """
    counts = [0] * len(edges)
    for bucket, n in bucket_counts:
        if 1 <= bucket <= len(edges):
            counts[bucket - 1] += n
    return {"edges": list(edges), "counts": counts}


def fold_sources(rows: list[tuple[str | None, int, float | None]], top: int = TOP_SOURCES) -> list[dict]:
    """(raw source, users, summed predicted revenue) rows to the ``top`` sources as the model sees them.

    Each is named by its most frequent spelling.
    """
    users: dict[str, int] = defaultdict(int)
    revenue: dict[str, float] = defaultdict(float)
    names: dict[str, tuple[int, str]] = {}
    for raw, n, total in rows:
        key = category_key("source", raw)
        users[key] += n
        revenue[key] += total or 0.0
        if key not in names or n > names[key][0]:
            names[key] = (n, raw if raw is not None and raw.strip() else "(missing)")
    ranked = sorted(users, key=lambda k: (-users[k], names[k][1]))[:top]
    return [{"source": names[k][1], "predictions": users[k], "avg_predicted_revenue": revenue[k] / users[k]}
            for k in ranked]


def timeseries(connection, first: datetime, until: datetime, step: timedelta, routes: list[str]) -> list[dict]:
    """Requests to ``routes``, users scored, failed requests and latency percentiles (ms) per ``step``.

    ``first`` is the start of the first interval; the last one holds ``until``.
    """
    last = first + step * ((until - first) // step)
    with connection.cursor() as cursor:
        cursor.execute(_TIMESERIES, {"first": first, "last": last, "until": until, "step": step,
                                     "routes": routes})
        rows = cursor.fetchall()
    connection.rollback()
    return [{"t": t.isoformat(), "requests": requests, "users": users, "errors": errors,
             **dict(zip(("p50_ms", "p95_ms", "p99_ms"), latency or (None, None, None)))}
            for t, requests, users, errors, latency in rows]
