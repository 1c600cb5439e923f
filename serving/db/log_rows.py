"""Log rows: their columns, and writing them to the ``predictions`` table.

Rows are written idempotently: each carries ``row_key`` (made by the server: the request's
attempt id and the user's position), unique with its role and timestamp, so a batch replayed
after an outage, or written twice because its commit's acknowledgement was lost, is stored once.
"""

from __future__ import annotations

import json
import math
import re
from typing import Sequence

import orjson

from revenue_model.contract import EVENT_COLUMNS, STRING_COLUMNS
from serving.db.feed import LOG_FEED, hold_shared
from serving.db.partitions import Partitions, utc_day

# Column order of a log row (core.log_rows builds tuples in this order).
ROW_COLUMNS = (
    "row_key", "timestamp", "request_id", "user_index", "role", "user_id", "route", "status_code", "error",
    "model_name", "model_version", "country", "country_region", "source", "platform",
    "device_family", "os_version", "event_1", "event_2", "event_3", "predicted_revenue",
    "payer_probability", "revenue_p10", "revenue_p90", "inference_time_ms", "latency_ms",
    "input_data",
)
INPUT_DATA = ROW_COLUMNS.index("input_data")
# The user's fields among them, as validated (revenue_model.validation.validate_columns).
TYPED_FIELDS = STRING_COLUMNS + EVENT_COLUMNS
_TIMESTAMP = ROW_COLUMNS.index("timestamp")


def typed_fields(columns) -> dict[str, list]:
    """The typed columns of log rows from ``validate_columns``' output (stripped strings, float
    events): one list per field, missing (None or NaN) as None. The service and batch_score's log
    store the same values for the same user."""
    return {c: [None if v != v else v for v in columns[c].tolist()] for c in TYPED_FIELDS}


def write_rows(connection, rows: Sequence[tuple], partitions: Partitions) -> int:
    """Insert rows not stored yet, in one statement, and commit; returns rows inserted.

    The days' partitions are created first, in the same transaction. On any error the
    transaction is rolled back (and ``partitions`` forgets what it made in it) before raising.

    The rows travel as one JSON document (orjson, in C) that PostgreSQL unpacks: the writer
    shares the GIL and two cores with the requests, and quoting every value in Python
    (``execute_values``) cost it several times more. COPY through a staging table was
    measured too: its truncation at every commit cost PostgreSQL more than the COPY saved.
    The document is read as JSONB, parsed once (as ``json`` each ``->>`` parsed the row's
    element again), with each input embedded as JSON, not as a string to parse a second time:
    10,000 rows cost PostgreSQL about 5x less (benchmarks/log_write.py). A direct COPY was
    measured beside it: no faster for PostgreSQL, and several times more Python (CSV of floats,
    timestamps, NULL apart from ''), and it cannot skip rows already stored.
    """
    try:
        document = _document(rows)
    except orjson.JSONEncodeError:  # lone surrogates, from a client's "\ud800"
        document = _document([_mapped(row, _scrubbed) for row in rows])
    try:
        with connection.cursor() as cursor:
            hold_shared(cursor, LOG_FEED)  # before any id is taken: see serving/db/feed.py
        partitions.ensure(connection, {utc_day(row[_TIMESTAMP]) for row in rows})
        with connection.cursor() as cursor:
            cursor.execute(_INSERT, (document,))
            inserted = cursor.rowcount
        connection.commit()
    except BaseException:
        partitions.forget()
        _rollback(connection)
        raise
    return inserted


def _rollback(connection) -> None:
    try:
        connection.rollback()
    except Exception:  # a broken connection: the caller learns of it from the original error
        pass


def _document(rows: Sequence[tuple]) -> str:
    """Rows as one JSON array: NaN and Infinity become null (SQL NULL); input_data goes in as
    JSON (``to_json``'s, where NaN is kept as "NaN"), embedded as it is."""
    i = INPUT_DATA
    values = [row[:i] + (None if row[i] is None else orjson.Fragment(to_json(row[i])),) + row[i + 1:]
              for row in rows]
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


# Types of the non-text columns; input_data is taken as the JSON it is (a JSON null is SQL NULL).
_SQL_TYPES = {"timestamp": "timestamptz", "user_index": "integer", "status_code": "integer",
              **dict.fromkeys(("event_1", "event_2", "event_3", "predicted_revenue", "payer_probability",
                               "revenue_p10", "revenue_p90", "inference_time_ms", "latency_ms"),
                              "double precision")}
_SELECT = ", ".join(f"nullif(e->{i}, 'null')" if c == "input_data" else f"(e->>{i})::{_SQL_TYPES.get(c, 'text')}"
                    for i, c in enumerate(ROW_COLUMNS))
_INSERT = (f"INSERT INTO predictions ({', '.join(ROW_COLUMNS)}) SELECT {_SELECT} "
           "FROM jsonb_array_elements(%s::jsonb) AS e ON CONFLICT (row_key, role, timestamp) DO NOTHING")


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
