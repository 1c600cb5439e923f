"""The /stats rollup (migration 0005): the log's champion rows summed per UTC hour and grouping.

``refresh`` reads the log rows written since it last looked (by id, see serving/db/feed.py) into
``stats_cells``; ``cells_sql`` is the same summing over any rows, so a reader adds the rows the
rollup does not hold yet (a window's first partial hour, the log's tail) in the cells' own shape.
Counts, sums, minima and maxima add up exactly; latency is kept in bins (``LATENCY_BINS_PER_E``).
"""

from __future__ import annotations

from serving.db.dashboard import PAYER_EDGES, REVENUE_EDGES_USD
from serving.db.feed import read_log_batch

# Rows read per refresh transaction: seconds of work at most on a busy 2-core machine.
BATCH_ROWS = 200_000
# Latency bins: round(ln(ms) * 200), so a bin's value exp(bin / 200) is within 0.25 % of its rows'.
LATENCY_BINS_PER_E = 200

MEASURES = ("n", "n_first", "pred_n", "pred_sum", "pred_min", "pred_max", "prob_n", "prob_sum",
            "inf_n", "inf_sum", "lat_sum", "first_ts", "last_ts")
_AGGREGATES = ("count(*), count(*) FILTER (WHERE user_index = 0), count(predicted_revenue), "
               "coalesce(sum(predicted_revenue), 0), min(predicted_revenue), max(predicted_revenue), "
               "count(payer_probability), coalesce(sum(payer_probability), 0), count(inference_time_ms), "
               "coalesce(sum(inference_time_ms), 0), {lat_sum}, min(timestamp), max(timestamp)")
_PLATFORM = ("CASE WHEN lower(platform) LIKE '%%ios%%' THEN 'iOS' "
             "WHEN lower(platform) LIKE '%%android%%' THEN 'Android' ELSE 'other' END")
_BOTH = "status_code = 200 AND predicted_revenue IS NOT NULL AND payer_probability IS NOT NULL"
# dim: (a, b, which rows)
DIMS = {
    "r": ("route", "status_code::text", "true"),
    "c": ("upper(country)", "NULL", "status_code = 200"),
    "p": (_PLATFORM, "NULL", "status_code = 200"),
    "v": ("model_name", "model_version", "status_code = 200"),
    "s": ("source", "NULL", "status_code = 200"),
    "e": ("width_bucket(predicted_revenue, %(revenue_edges)s::float8[])::text", "NULL", _BOTH),
    "q": ("width_bucket(payer_probability, %(payer_edges)s::float8[])::text", "NULL", _BOTH),
    "l": (f"round(ln(greatest(latency_ms, 0.001)) * {LATENCY_BINS_PER_E})::integer::text", "NULL",
          "user_index = 0 AND latency_ms IS NOT NULL"),
}
EDGES = {"revenue_edges": list(REVENUE_EDGES_USD), "payer_edges": list(PAYER_EDGES)}
_HOUR = "date_bin('1 hour', timestamp, TIMESTAMPTZ '2000-01-01 00:00+00')"
_COLUMNS = ("hour, route, status_code, user_index, country, platform, source, model_name, model_version, "
            "predicted_revenue, payer_probability, inference_time_ms, latency_ms, timestamp")


def cells_sql(*wheres: str) -> str:
    """SELECT hour, dim, a, b, MEASURES... summing the champion rows matching any of ``wheres``
    (each a condition on predictions; a row matching two is counted twice: keep them disjoint)."""
    rows = " UNION ALL ".join(f"SELECT {_HOUR} AS {_COLUMNS} FROM predictions WHERE role = 'champion' AND ({w})"
                              for w in wheres)
    parts = [f"SELECT hour, '{dim}'::\"char\", {a}, {b}, "
             f"{_AGGREGATES.format(lat_sum='coalesce(sum(latency_ms), 0)' if dim == 'l' else '0')} "
             f"FROM rows WHERE {which} GROUP BY 1, 3, 4"
             for dim, (a, b, which) in DIMS.items()]
    return f"WITH rows AS MATERIALIZED ({rows}) " + " UNION ALL ".join(parts)


_MERGE = {"pred_min": "least(c.pred_min, excluded.pred_min)", "pred_max": "greatest(c.pred_max, excluded.pred_max)",
          "first_ts": "least(c.first_ts, excluded.first_ts)", "last_ts": "greatest(c.last_ts, excluded.last_ts)"}
_APPLY = (f"INSERT INTO stats_cells AS c (hour, dim, a, b, {', '.join(MEASURES)}) "
          + cells_sql("id > %(after)s AND id <= %(through)s")
          + " ON CONFLICT ON CONSTRAINT stats_cells_key DO UPDATE SET "
          + ", ".join(f"{m} = {_MERGE.get(m, f'c.{m} + excluded.{m}')}" for m in MEASURES))


def refresh(connection, *, batch_rows: int = BATCH_ROWS) -> int | None:
    """Sum up to ``batch_rows`` new log rows into stats_cells and commit; the rows still pending.

    None when another refresher holds the feed for longer than LOCK_TIMEOUT.
    """
    return read_log_batch(connection, "stats_feed", batch_rows, lambda cursor, after, through: cursor.execute(
        _APPLY, {"after": after, "through": through, **EDGES}))


def catch_up(connection, *, batch_rows: int = BATCH_ROWS, stop=None) -> int | None:
    """Refresh batch after batch until nothing is pending (or ``stop`` is set); rows still pending."""
    while True:
        pending = refresh(connection, batch_rows=batch_rows)
        if not pending or (stop is not None and stop.is_set()):
            return pending
