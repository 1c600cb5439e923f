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

import orjson
import psycopg2

# Column order of a log row (core.log_rows builds tuples in this order).
ROW_COLUMNS = (
    "row_key", "timestamp", "request_id", "user_index", "user_id", "route", "status_code", "error",
    "model_name", "model_version", "country", "country_region", "source", "platform",
    "device_family", "os_version", "event_1", "event_2", "event_3", "predicted_revenue",
    "payer_probability", "revenue_p10", "revenue_p90", "inference_time_ms", "latency_ms",
    "input_data",
)
INPUT_DATA = ROW_COLUMNS.index("input_data")

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
    """Insert rows not stored yet, in one statement; returns rows inserted.

    The rows travel as one JSON document (orjson, in C) that PostgreSQL unpacks: the writer
    shares the GIL and two cores with the requests, and quoting every value in Python
    (``execute_values``) cost it several times more. COPY through a staging table was
    measured too: its truncation at every commit cost PostgreSQL more than the COPY saved.
    """
    try:
        document = _document(rows)
    except orjson.JSONEncodeError:  # lone surrogates, from a client's "\ud800"
        document = _document([_mapped(row, _scrubbed) for row in rows])
    with connection.cursor() as cursor:
        cursor.execute(_INSERT, (document,))
        inserted = cursor.rowcount
    connection.commit()
    return inserted


def _document(rows: Sequence[tuple]) -> str:
    """Rows as one JSON array: NaN and Infinity become null (SQL NULL); input_data goes as JSON
    text, where NaN is kept as "NaN"."""
    i = INPUT_DATA
    values = [row[:i] + (None if row[i] is None else _without_nul(to_json(row[i])),) + row[i + 1:] for row in rows]
    return _without_nul(orjson.dumps(values).decode())


def _mapped(value, leaf):
    """``value`` with ``leaf`` applied to every scalar in it, dict keys included."""
    if isinstance(value, dict):
        return {_mapped(k, leaf): _mapped(v, leaf) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_mapped(v, leaf) for v in value)
    return leaf(value)


def _scrubbed(value):
    """A lone surrogate as its escape text (six characters), which PostgreSQL stores, as it does NUL."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


# Types of the non-text columns; input_data arrives as JSON text.
_SQL_TYPES = {"timestamp": "timestamptz", "user_index": "integer", "status_code": "integer",
              "input_data": "jsonb",
              **dict.fromkeys(("event_1", "event_2", "event_3", "predicted_revenue", "payer_probability",
                               "revenue_p10", "revenue_p90", "inference_time_ms", "latency_ms"),
                              "double precision")}
_SELECT = ", ".join(f"(e->>{i})::{_SQL_TYPES.get(c, 'text')}" for i, c in enumerate(ROW_COLUMNS))
_INSERT = (f"INSERT INTO predictions ({', '.join(ROW_COLUMNS)}) SELECT {_SELECT} "
           "FROM json_array_elements(%s::json) AS e ON CONFLICT (row_key) DO NOTHING")


def to_json(value) -> str:
    """JSON that PostgreSQL accepts: NaN and Infinity, which clients may send, become strings."""
    if _flat_and_finite(value):  # nearly every user as sent: orjson writes the same JSON 9x faster
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:  # integers past 64 bits, lone surrogates
            pass
    try:
        return json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(_mapped(value, _finite), ensure_ascii=False, default=str, allow_nan=False)


def _flat_and_finite(value) -> bool:
    """An object of strings, integers, booleans, nulls and finite floats (orjson would write NaN as null)."""
    return type(value) is dict and all(type(v) in _SCALARS or (type(v) is float and v - v == 0.0)
                                       for v in value.values())


_SCALARS = (str, int, bool, type(None))


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _without_nul(json_text: str) -> str:
    r"""PostgreSQL can store NUL neither in text nor in JSONB ("\u0000"): both keep the six
    characters \u0000 instead. In JSON, only an escape preceded by an even run of backslashes is one."""
    return _JSON_NUL.sub(r"\1\\\\u0000", json_text) if "\\u0000" in json_text else json_text


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
