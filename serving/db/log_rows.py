"""Log rows: their columns, and writing them to the ``predictions`` table.

Each row carries ``row_key`` (made by the server: the request's attempt id and the user's
position), unique with its role and timestamp. A batch's first write goes by COPY (``fresh``);
anything that may be stored already (a batch replayed after an outage, or retried because its
commit's acknowledgement was lost) by an INSERT that skips stored rows, so it is stored once.
"""

from __future__ import annotations

import io
from typing import Sequence

import orjson

from revenue_model.contract import EVENT_COLUMNS, STRING_COLUMNS
from serving.db.feed import LOG_FEED, hold_shared
from serving.db.log_copy import JSON, NUMBER, TEXT, TIMESTAMP, Unsupported, copy_data
from serving.db.log_json import mapped, scrubbed, to_json, without_nul
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


def write_rows(connection, rows: Sequence[tuple], partitions: Partitions, *, fresh: bool = False) -> int:
    """Store rows and commit; returns rows inserted.

    ``fresh``: none of the rows can be stored yet (a batch's first attempt), so they go by COPY,
    which cannot skip a stored row (a duplicate is refused: PostgreSQL's 23505, a row error).
    Otherwise (replays, retries, a row alone) by one INSERT that skips the rows already stored.
    The days' partitions are created first, in the same transaction. On any error the
    transaction is rolled back (and ``partitions`` forgets what it made in it) before raising.

    Measured per 10,000 rows (benchmarks/log_write.py, docs/performance.md): the INSERT's rows
    travel as one JSONB document (orjson, in C) that PostgreSQL unpacks; parsing it was half of
    PostgreSQL's time, which COPY's text format spares, and its text is built column by column
    (serving/db/log_copy.py) for no more Python than the document. A batch whose commit may have
    succeeded unacknowledged must never be COPYed again: the caller decides (serving/log_writer.py).
    """
    data = None
    if fresh:
        try:
            data = copy_data(rows, _KINDS)
        except Unsupported:  # a value of an unexpected type: the INSERT takes (or refuses) it
            pass
    if data is None:
        try:
            document = _document(rows)
        except orjson.JSONEncodeError:  # lone surrogates, from a client's "\ud800"
            document = _document([mapped(row, scrubbed) for row in rows])
    try:
        with connection.cursor() as cursor:
            hold_shared(cursor, LOG_FEED)  # before any id is taken: see serving/db/feed.py
        partitions.ensure(connection, {utc_day(moment) for moment in {row[_TIMESTAMP] for row in rows}})
        with connection.cursor() as cursor:
            if data is None:
                cursor.execute(_INSERT, (document,))
                inserted = cursor.rowcount
            else:
                cursor.copy_expert(_COPY, io.BytesIO(data), size=_COPY_CHUNK)
                inserted = len(rows)
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
    return without_nul(orjson.dumps(values).decode())


# Types of the non-text columns; input_data is taken as the JSON it is (a JSON null is SQL NULL).
_SQL_TYPES = {"timestamp": "timestamptz", "user_index": "integer", "status_code": "integer",
              **dict.fromkeys(("event_1", "event_2", "event_3", "predicted_revenue", "payer_probability",
                               "revenue_p10", "revenue_p90", "inference_time_ms", "latency_ms"),
                              "double precision")}
_SELECT = ", ".join(f"nullif(e->{i}, 'null')" if c == "input_data" else f"(e->>{i})::{_SQL_TYPES.get(c, 'text')}"
                    for i, c in enumerate(ROW_COLUMNS))
_INSERT = (f"INSERT INTO predictions ({', '.join(ROW_COLUMNS)}) SELECT {_SELECT} "
           "FROM jsonb_array_elements(%s::jsonb) AS e ON CONFLICT (row_key, role, timestamp) DO NOTHING")
_COPY = f"COPY predictions ({', '.join(ROW_COLUMNS)}) FROM STDIN"  # text format
_COPY_CHUNK = 2**20  # bytes handed to libpq at a time
_KINDS = tuple(JSON if c == "input_data" else TIMESTAMP if _SQL_TYPES.get(c) == "timestamptz"
               else NUMBER if c in _SQL_TYPES else TEXT for c in ROW_COLUMNS)
