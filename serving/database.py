"""All PostgreSQL access: the embedded server, the schema, writing rows, /stats.

Rows are written idempotently: each carries ``row_key`` (request id and the
user's position in the request) under a UNIQUE constraint, so a batch
replayed after an outage, or written twice because its commit's
acknowledgement was lost, is stored once.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from pathlib import Path
from typing import Sequence

import psycopg2
from psycopg2.extras import execute_values

# Column order of a log row; ``LogRow`` in log_rows.py builds tuples in this order.
ROW_COLUMNS = (
    "row_key", "timestamp", "request_id", "user_index", "user_id", "route", "status_code", "error",
    "model_name", "model_version", "country", "country_region", "source", "platform",
    "device_family", "os_version", "event_1", "event_2", "event_3", "predicted_revenue",
    "payer_probability", "revenue_p10", "revenue_p90", "inference_time_ms", "latency_ms",
    "input_data",
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS predictions (
    id                BIGSERIAL PRIMARY KEY,
    row_key           TEXT NOT NULL UNIQUE,
    timestamp         TIMESTAMPTZ NOT NULL DEFAULT now(),
    request_id        TEXT NOT NULL,
    user_index        INTEGER NOT NULL,
    user_id           TEXT,
    route             TEXT NOT NULL,
    status_code       INTEGER NOT NULL,
    error             TEXT,
    model_name        TEXT,
    model_version     TEXT,
    country           TEXT,
    country_region    TEXT,
    source            TEXT,
    platform          TEXT,
    device_family     TEXT,
    os_version        TEXT,
    event_1           DOUBLE PRECISION,
    event_2           DOUBLE PRECISION,
    event_3           DOUBLE PRECISION,
    predicted_revenue DOUBLE PRECISION,
    payer_probability DOUBLE PRECISION,
    revenue_p10       DOUBLE PRECISION,
    revenue_p90       DOUBLE PRECISION,
    inference_time_ms DOUBLE PRECISION,
    latency_ms        DOUBLE PRECISION,
    input_data        JSONB
);
CREATE INDEX IF NOT EXISTS predictions_timestamp ON predictions (timestamp);
CREATE INDEX IF NOT EXISTS predictions_request_id ON predictions (request_id);
"""


def start_embedded(pgdata_dir: Path) -> tuple[object, str]:
    """Start (or reuse) the pgserver PostgreSQL in ``pgdata_dir``; (server, URL).

    The server stops when the process that started it exits.
    """
    import pgserver

    pgdata_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata_dir.resolve())
    return server, server.get_uri()


def connect(url: str, *, timeout_s: int = 3):
    connection = psycopg2.connect(url, connect_timeout=timeout_s)
    connection.autocommit = False
    return connection


def ensure_schema(connection) -> None:
    with connection.cursor() as cursor:
        cursor.execute(SCHEMA)
    connection.commit()


def write_rows(connection, rows: Sequence[tuple]) -> int:
    """Insert rows not stored yet (one multi-row INSERT per page); returns rows inserted.

    Measured here against COPY into a temporary staging table: the staging table's truncation
    at every commit cost PostgreSQL more than the COPY saved, and slowed requests on the
    same cores.
    """
    values = [tuple(_sql_value(v) for v in row) for row in rows]
    with connection.cursor() as cursor:
        execute_values(cursor, _INSERT, values, template=_TEMPLATE, page_size=1000)
        inserted = cursor.rowcount
    connection.commit()
    return inserted


_INSERT = f"INSERT INTO predictions ({', '.join(ROW_COLUMNS)}) VALUES %s ON CONFLICT (row_key) DO NOTHING"
_TEMPLATE = "(" + ", ".join("%s::jsonb" if c == "input_data" else "%s" for c in ROW_COLUMNS) + ")"


def _sql_value(value):
    """A row value as psycopg2 sends it: NaN/Infinity as NULL, NUL-free text, JSON as text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000")
    if value is None or isinstance(value, (int, datetime)):
        return value
    return _JSON_NUL.sub(r"\1\\\\u0000", to_json(value))


def to_json(value) -> str:
    """JSON that PostgreSQL accepts: NaN and Infinity, which clients may send, become strings."""
    try:
        return json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), ensure_ascii=False, default=str, allow_nan=False)


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# PostgreSQL can store NUL neither in text nor in JSONB ("\u0000"): both keep the six
# characters \u0000 instead. In JSON, only an escape preceded by an even run of backslashes is one.
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


STATS_QUERIES = {
    "totals": """
        SELECT count(*) FILTER (WHERE status_code = 200),
               count(*),
               count(DISTINCT request_id),
               avg(predicted_revenue), min(predicted_revenue), max(predicted_revenue),
               sum(predicted_revenue), avg(payer_probability), avg(inference_time_ms),
               min(timestamp) FILTER (WHERE status_code = 200),
               max(timestamp) FILTER (WHERE status_code = 200)
        FROM predictions WHERE timestamp >= %(since)s""",
    "latency": """
        SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY latency_ms), avg(latency_ms)
        FROM (SELECT DISTINCT ON (request_id) latency_ms FROM predictions
              WHERE timestamp >= %(since)s AND latency_ms IS NOT NULL) AS requests""",
    "countries": """
        SELECT upper(country), count(*), avg(predicted_revenue) FROM predictions
        WHERE timestamp >= %(since)s AND status_code = 200
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10""",
    "platforms": """
        SELECT CASE WHEN lower(platform) LIKE '%%ios%%' THEN 'iOS'
                    WHEN lower(platform) LIKE '%%android%%' THEN 'Android' ELSE 'other' END, count(*)
        FROM predictions WHERE timestamp >= %(since)s AND status_code = 200
        GROUP BY 1 ORDER BY 2 DESC""",
    "errors": """
        SELECT status_code, count(DISTINCT request_id), count(*) FROM predictions
        WHERE timestamp >= %(since)s AND status_code <> 200 GROUP BY 1 ORDER BY 1""",
    "versions": """
        SELECT model_name, model_version, count(*), avg(predicted_revenue), min(timestamp), max(timestamp)
        FROM predictions WHERE timestamp >= %(since)s AND status_code = 200
        GROUP BY 1, 2 ORDER BY 5""",
    "routes": """
        SELECT route, count(DISTINCT request_id), count(*) FROM predictions
        WHERE timestamp >= %(since)s GROUP BY 1 ORDER BY 1""",
}


def prediction_stats(connection, since: datetime) -> dict:
    """Aggregates for /stats over rows logged at or after ``since`` (never raw inputs)."""
    out: dict = {}
    with connection.cursor() as cursor:
        results = {}
        for name, sql in STATS_QUERIES.items():
            cursor.execute(sql, {"since": since})
            results[name] = cursor.fetchall()
    connection.rollback()
    (ok, rows, requests, avg_rev, min_rev, max_rev, sum_rev, avg_p, avg_inf, first, last), = results["totals"]
    (percentiles, avg_latency), = results["latency"]
    p50, p95, p99 = percentiles or (None, None, None)
    out.update({
        "total_predictions": ok, "total_rows": rows, "total_requests": requests,
        "avg_predicted_revenue": avg_rev, "min_predicted_revenue": min_rev,
        "max_predicted_revenue": max_rev, "total_predicted_revenue": sum_rev,
        "avg_payer_probability": avg_p, "avg_inference_time_ms": avg_inf,
        "first_prediction": first.isoformat() if first else None,
        "last_prediction": last.isoformat() if last else None,
        "latency_ms": {"avg": avg_latency, "p50": p50, "p95": p95, "p99": p99},
        "top_countries": [{"country": c, "predictions": n, "avg_predicted_revenue": a}
                          for c, n, a in results["countries"]],
        "platform_distribution": [{"platform": p, "predictions": n} for p, n in results["platforms"]],
        "errors": {str(code): {"requests": r, "rows": n} for code, r, n in results["errors"]},
        "by_model_version": [{"model_name": m, "model_version": v, "predictions": n,
                              "avg_predicted_revenue": a, "first": f.isoformat(), "last": l.isoformat()}
                             for m, v, n, a, f, l in results["versions"]],
        "by_route": {route: {"requests": r, "rows": n} for route, r, n in results["routes"]},
    })
    return out
