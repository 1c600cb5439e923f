"""What storing one 10,000-user batch of log rows costs, by write method, side by side.

    .venv/bin/python -m benchmarks.log_write [--repeats 5] [--users 10000]

Rows are the service's own (``serving.core.log_rows`` of a validated batch of generated users)
into a fresh embedded PostgreSQL with the log's migrations. For each method, in turn per round:
Python's part (building what is sent: it holds the GIL the requests need; CPU time), PostgreSQL's
(the statement and its commit: wall time, and the backend process's CPU time, which the other
processes on a shared machine disturb less), medians over the rounds. Methods:
- ``json_text``: the statement before issue 17 (``json_array_elements``, inputs as JSON strings);
- ``jsonb``: ``write_rows`` for anything that may be stored already (one JSONB document, inputs
  embedded, ``ON CONFLICT DO NOTHING``);
- ``copy_text``: ``write_rows(fresh=True)``, a batch's first write (COPY's text format built by
  serving/db/log_copy.py; no ON CONFLICT);
- ``copy_csv``: ``COPY ... (FORMAT csv)`` built with Python's csv module.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import tempfile
import time
import uuid

import orjson
import psutil

from revenue_model.synthetic import generate_users
from revenue_model.validation import validate_columns
from serving.core import RequestRecord, log_rows
from serving.db import log_rows as lr
from serving.db.connection import connect
from serving.db.log_copy import copy_data
from serving.db.log_json import without_nul
from serving.db.partitions import Partitions
from serving.db.schema import migrate
from serving.model_identity import ModelIdentity

_JSON_TEXT_INSERT = (lr._INSERT.replace("jsonb_array_elements(%s::jsonb)", "json_array_elements(%s::json)")
                     .replace(f"nullif(e->{lr.INPUT_DATA}, 'null')", f"(e->>{lr.INPUT_DATA})::jsonb"))
_COPY_CSV = f"COPY predictions ({', '.join(lr.ROW_COLUMNS)}) FROM STDIN WITH (FORMAT csv)"


def json_text(rows):
    i = lr.INPUT_DATA
    values = [row[:i] + (None if row[i] is None else lr.to_json(row[i]),) + row[i + 1:] for row in rows]
    return _JSON_TEXT_INSERT, (without_nul(orjson.dumps(values).decode()),)


def jsonb(rows):
    return lr._INSERT, (lr._document(rows),)


def copy_text(rows):
    return lr._COPY, io.BytesIO(copy_data(rows, lr._KINDS))


def copy_csv(rows):
    buffer = io.StringIO()
    i = lr.INPUT_DATA
    csv.writer(buffer).writerows(row[:i] + (lr.to_json(row[i]),) + row[i + 1:] for row in rows)
    buffer.seek(0)
    return _COPY_CSV, buffer


METHODS = {"json_text": json_text, "jsonb": jsonb, "copy_text": copy_text, "copy_csv": copy_csv}


def batch_rows(users: list[dict], identity: ModelIdentity) -> list[tuple]:
    record = RequestRecord(request_id=uuid.uuid4().hex, route="/batch_predict", users=users)
    record.columns = validate_columns(users)
    record.outputs = [{"predicted_revenue": 1.5, "payer_probability": 0.1, "revenue_p10": 0.0,
                       "revenue_p90": 3.0}] * len(users)
    record.inference_ms = 300.0
    return log_rows(record, 200, 400.0, identity)


def timed(connection, backend, partitions, method, rows) -> tuple[float, float, float]:
    """(Python CPU s, PostgreSQL wall s, PostgreSQL backend CPU s) of one batch."""
    partitions.ensure(connection, {lr.utc_day(rows[0][1])})
    connection.commit()
    started = time.process_time()
    sql, argument = METHODS[method](rows)
    built = time.process_time()
    cpu, wall = _cpu(backend), time.perf_counter()
    with connection.cursor() as cursor:
        if sql.startswith("COPY"):
            cursor.copy_expert(sql, argument, size=2**20)
        else:
            cursor.execute(sql, argument)
    connection.commit()
    return built - started, time.perf_counter() - wall, _cpu(backend) - cpu


def _cpu(process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--users", type=int, default=10_000)
    args = p.parse_args(argv)
    import pgserver

    server = pgserver.get_server(tempfile.mkdtemp(prefix="log-write-"), cleanup_mode="delete")
    connection = connect(server.get_uri(), statement_timeout_ms=0)
    migrate(connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = psutil.Process(cursor.fetchone()[0])
    connection.commit()
    partitions = Partitions()
    users = json.loads(generate_users(args.users, seed=1).drop(columns=["revenue", "install_date"])
                       .to_json(orient="records"))
    identity = ModelIdentity("models:/revenue_model/1", "revenue_model", "1")
    times = {m: [] for m in METHODS}
    for round_ in range(args.repeats + 1):  # the first round warms caches and is not counted
        for method in METHODS:
            result = timed(connection, backend, partitions, method, batch_rows(users, identity))
            if round_:
                times[method].append(result)
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, medians of {args.repeats} rounds")
    print(f"| method ({args.users:,} rows a batch) | Python CPU ms | PostgreSQL ms | PostgreSQL CPU ms "
          "| rows/s (Python + PostgreSQL) |")
    print("|---|--:|--:|--:|--:|")
    out = {}
    for method, runs in times.items():
        py, db, db_cpu = (statistics.median(r[k] for r in runs) * 1000 for k in (0, 1, 2))
        out[method] = {"python_ms": py, "postgres_ms": db, "postgres_cpu_ms": db_cpu,
                       "rows_per_s": args.users / (py + db) * 1000}
        print(f"| {method} | {py:.0f} | {db:.0f} | {db_cpu:.0f} | {out[method]['rows_per_s']:,.0f} |")
    connection.close()
    server.cleanup()
    return out


if __name__ == "__main__":
    main()
