"""What storing one 10,000-user batch of log rows costs, by write method, side by side.

    .venv/bin/python -m benchmarks.log_write [--repeats 5] [--users 10000]

Rows are the service's own (``serving.core.log_rows`` of a validated batch of generated users)
into a fresh embedded PostgreSQL with the log's migrations. For each method, in turn per round:
Python's part (building what is sent: it holds the GIL the requests need) and PostgreSQL's
(the statement and its commit), medians over the rounds. Methods:
- ``json_text``: the statement before issue 17 (``json_array_elements``, inputs as JSON strings);
- ``jsonb``: ``serving.db.log_rows.write_rows`` (one JSONB document, inputs embedded);
- ``copy_csv``: ``COPY predictions FROM STDIN (FORMAT csv)`` (not idempotent: no ON CONFLICT).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import tempfile
import time
import uuid

import orjson

from revenue_model.synthetic import generate_users
from revenue_model.validation import validate_columns
from serving.core import RequestRecord, log_rows
from serving.db import log_rows as lr
from serving.db.connection import connect
from serving.db.log_json import without_nul
from serving.db.partitions import Partitions
from serving.db.schema import migrate
from serving.model_identity import ModelIdentity

_JSON_TEXT_INSERT = (lr._INSERT.replace("jsonb_array_elements(%s::jsonb)", "json_array_elements(%s::json)")
                     .replace(f"nullif(e->{lr.INPUT_DATA}, 'null')", f"(e->>{lr.INPUT_DATA})::jsonb"))
_COPY = f"COPY predictions ({', '.join(lr.ROW_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"


def json_text(rows):
    i = lr.INPUT_DATA
    values = [row[:i] + (None if row[i] is None else lr.to_json(row[i]),) + row[i + 1:] for row in rows]
    return _JSON_TEXT_INSERT, (without_nul(orjson.dumps(values).decode()),)


def jsonb(rows):
    return lr._INSERT, (lr._document(rows),)


def copy_csv(rows):
    buffer = io.StringIO()
    i = lr.INPUT_DATA
    csv.writer(buffer).writerows(row[:i] + (lr.to_json(row[i]),) + row[i + 1:] for row in rows)
    buffer.seek(0)
    return None, buffer


METHODS = {"json_text": json_text, "jsonb": jsonb, "copy_csv": copy_csv}


def batch_rows(users: list[dict], identity: ModelIdentity) -> list[tuple]:
    record = RequestRecord(request_id=uuid.uuid4().hex, route="/batch_predict", users=users)
    record.columns = validate_columns(users)
    record.outputs = [{"predicted_revenue": 1.5, "payer_probability": 0.1, "revenue_p10": 0.0,
                       "revenue_p90": 3.0}] * len(users)
    record.inference_ms = 300.0
    return log_rows(record, 200, 400.0, identity)


def timed(connection, partitions, method, rows) -> tuple[float, float]:
    started = time.perf_counter()
    sql, argument = METHODS[method](rows)
    built = time.perf_counter()
    partitions.ensure(connection, {lr.utc_day(rows[0][1])})
    with connection.cursor() as cursor:
        if sql is None:
            cursor.copy_expert(_COPY, argument)
        else:
            cursor.execute(sql, argument)
    connection.commit()
    return built - started, time.perf_counter() - built


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--users", type=int, default=10_000)
    args = p.parse_args(argv)
    import pgserver

    server = pgserver.get_server(tempfile.mkdtemp(prefix="log-write-"), cleanup_mode="delete")
    connection = connect(server.get_uri(), statement_timeout_ms=0)
    migrate(connection)
    partitions = Partitions()
    users = json.loads(generate_users(args.users, seed=1).drop(columns=["revenue", "install_date"])
                       .to_json(orient="records"))
    identity = ModelIdentity("models:/revenue_model/1", "revenue_model", "1")
    times = {m: [] for m in METHODS}
    for round_ in range(args.repeats + 1):  # the first round warms caches and is not counted
        for method in METHODS:
            result = timed(connection, partitions, method, batch_rows(users, identity))
            if round_:
                times[method].append(result)
    print(f"\n| method ({args.users:,} rows a batch) | Python ms | PostgreSQL ms | rows/s (both) |")
    print("|---|--:|--:|--:|")
    out = {}
    for method, runs in times.items():
        py, db = (statistics.median(r[k] for r in runs) * 1000 for k in (0, 1))
        out[method] = {"python_ms": py, "postgres_ms": db, "rows_per_s": args.users / (py + db) * 1000}
        print(f"| {method} | {py:.0f} | {db:.0f} | {out[method]['rows_per_s']:,.0f} |")
    connection.close()
    server.cleanup()
    return out


if __name__ == "__main__":
    main()
