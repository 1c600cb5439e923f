"""GET /performance at millions of logged rows: the rollup's one-time catch-up, its refresh as traffic
and labels arrive, and the route's answer time, against reading every row, side by side.

    .venv/bin/python -m benchmarks.performance_at_scale --rows 1000000,10000000   # about 1.5 h on 2 cores

Per size: a database in an embedded PostgreSQL (--pgdata, kept for --reuse), filled by
benchmarks/fill_log.py over 30 days with half of the users older than 7 days labelled, two model
versions. Then:
- catch-up: reading the whole log into prediction_outcomes, and building the day cells (once);
- refresh: reading 10,000 new log rows and 10,000 changed labels (what a /performance call or the
  background task does in steady state);
- /performance: the route's work (serving.routes_loop.performance: refresh, read, metrics) per
  grouping and window, median of --repeats calls, interleaved; beside it the same answer read from
  the rows alone (no day cells) and computed per user in Python after fetching every labelled row.
Figures go to benchmarks/results/performance_at_scale.json and are printed as a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import psycopg2

from benchmarks import fill_log
from revenue_model import metrics as M
from serving.db import outcomes
from serving.db.connection import connect, start_embedded
from serving.db.labels import upsert_labels
from serving.db.log_rows import ROW_COLUMNS, write_rows
from serving.db.partitions import Partitions
from serving.db.performance import range_parameters, rows_sql
from serving.db.schema import migrate
from serving.performance import performance_groups
from serving.routes_loop import performance

RESULTS = Path(__file__).resolve().parent / "results"
QUERIES = [(by, since) for since in (None, "7d") for by in (None, "country", "platform", "source", "route", "day")]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="1000000,10000000", help="log sizes, comma-separated")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--labelled-share", type=float, default=0.5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--pgdata", default="/tmp/performance-at-scale/pg")
    p.add_argument("--reuse", action="store_true", help="keep a database filled by an earlier run")
    p.add_argument("--output", default=str(RESULTS / "performance_at_scale.json"))
    return p.parse_args(argv)


def database(server_url: str, name: str, reuse: bool) -> tuple[str, bool]:
    admin = psycopg2.connect(server_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        exists = cursor.fetchone() is not None
        if exists and not reuse:
            cursor.execute(f"DROP DATABASE {name}")
        if not exists or not reuse:
            cursor.execute(f"CREATE DATABASE {name}")
    admin.close()
    return server_url.replace("/postgres?", f"/{name}?", 1), exists and reuse


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - started, result


def catch_up(url: str) -> dict:
    connection = connect(url, statement_timeout_ms=0)
    migrate(connection)  # a database filled by an earlier release of the rollup gets this one's
    refresh_s, _ = timed(outcomes.catch_up, connection)
    today = datetime.now(timezone.utc).date()
    build_s, _ = timed(build_all, connection, today)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM prediction_outcomes")
        (matched,) = cursor.fetchone()
        cursor.execute("SELECT count(*), count(DISTINCT (start, days)) FROM outcome_cells")
        cells, built = cursor.fetchone()
        cursor.execute("SELECT count(*), sum(cardinality(bins)) FROM outcome_bins")
        bin_rows, bins = cursor.fetchone()
        cursor.execute("SELECT pg_total_relation_size('prediction_outcomes'), pg_total_relation_size('outcome_cells'), "
                       "pg_total_relation_size('outcome_bins')")
        outcome_bytes, cell_bytes, bin_bytes = cursor.fetchone()
    connection.rollback()
    connection.close()
    return {"refresh_s": refresh_s, "build_cells_s": build_s, "outcome_rows": matched, "cells": cells,
            "spans_built": built, "bin_rows": bin_rows, "bins": bins, "outcome_mb": outcome_bytes / 1e6,
            "cell_mb": cell_bytes / 1e6, "bin_mb": bin_bytes / 1e6}


def build_all(connection, today) -> list:
    days = []
    return outcomes.build_spans(connection, today=today, max_spans=100_000)


def steady_refresh(url: str, rows: int = 10_000) -> dict:
    """New traffic and a label batch, then one refresh: what a call pays when it finds them."""
    connection = connect(url, statement_timeout_ms=0)
    now = datetime.now(timezone.utc)
    rng = np.random.default_rng(time.time_ns())  # new revenues each run: a label posted again unchanged is no change
    log = []
    for i in range(rows):
        values = dict.fromkeys(ROW_COLUMNS)
        values.update({"row_key": f"bench-{now.timestamp()}-{i}:0", "timestamp": now - timedelta(seconds=i / 100),
                       "request_id": f"bench-{i}", "user_index": 0, "role": "champion", "user_id": f"bench-u{i}",
                       "route": "/predict", "status_code": 200, "model_name": "revenue_model", "model_version": "2",
                       "country": "US", "platform": "iOS", "source": "Organic", "event_1": 1.0, "event_2": 1.0,
                       "predicted_revenue": float(rng.lognormal(0, 1)), "payer_probability": 0.1,
                       "revenue_p10": 0.0, "revenue_p90": 3.0})
        log.append(tuple(values[c] for c in ROW_COLUMNS))
    partitions = Partitions()
    for start in range(0, rows, 5000):
        write_rows(connection, log[start:start + 5000], partitions)
    with connection.cursor() as cursor:  # labels changed for users predicted 8-9 days ago
        cursor.execute("SELECT user_id FROM prediction_outcomes WHERE timestamp < now() - interval '8 days' "
                       "AND revenue IS NOT NULL LIMIT %s", (rows,))
        users = [u for (u,) in cursor.fetchall()]
    upsert_labels(connection, users, [float(x) for x in rng.lognormal(1, 1, len(users))], [None] * len(users),
                  "benchmark")
    connection.commit()
    seconds, result = timed(outcomes.refresh, connection)
    today = now.date()
    build_s, built = timed(outcomes.build_spans, connection, today=today, max_spans=100_000)
    connection.close()
    return {"log_rows": rows, "labels": len(users), "refresh_s": seconds, "rows_applied": result.predictions,
            "labels_applied": result.labels, "rebuild_s": build_s, "spans_rebuilt": len(built)}


def route_medians(url: str, repeats: int) -> dict:
    now = datetime.now(timezone.utc)
    times = {q: [] for q in QUERIES}
    for _ in range(repeats):
        for by, since in QUERIES:
            start = now - timedelta(days=7) if since else datetime(1970, 1, 1, tzinfo=timezone.utc)
            seconds, body = timed(performance, url, since=start, until=None, by=by, min_labelled=200,
                                  today=now.date())
            times[(by, since)].append(seconds)
    return {f"by={by or '-'} since={since or 'all'}": statistics.median(t) for (by, since), t in times.items()}


def rows_only(url: str, by: str | None, repeats: int) -> float:
    """The same answer with no day cells: every (user, version) row grouped per call."""
    connection = connect(url, statement_timeout_ms=0)
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.execute(rows_sql(by or "none", 1), range_parameters([(epoch, None)]))
            performance_groups(cursor.fetchall(), by, 200)
        connection.rollback()
        seconds.append(time.perf_counter() - started)
    connection.close()
    return statistics.median(seconds)


def per_user_in_python(url: str) -> float:
    """Fetch every labelled (user, version) row and compute the metrics per user (one version)."""
    connection = connect(url, statement_timeout_ms=0)
    started = time.perf_counter()
    chunks = []
    with connection.cursor(name="all_rows") as cursor:
        cursor.itersize = 100_000
        cursor.execute("SELECT revenue, predicted_revenue, payer_probability, revenue_p10, revenue_p90 "
                       "FROM prediction_outcomes WHERE revenue IS NOT NULL AND model_version = '1'")
        while batch := cursor.fetchmany(100_000):
            chunks.append(np.array(batch, dtype=float))
    data = np.concatenate(chunks)
    M.realised_metrics(M.outcomes_of(data[:, 0], {"predicted_revenue": data[:, 1], "payer_probability": data[:, 2],
                                                  "revenue_p10": data[:, 3], "revenue_p90": data[:, 4]}))
    seconds = time.perf_counter() - started
    connection.rollback()
    connection.close()
    return seconds


def main(argv=None) -> dict:
    args = parse_args(argv)
    Path(args.pgdata).mkdir(parents=True, exist_ok=True)
    _server, server_url = start_embedded(Path(args.pgdata))
    results = {"machine": {"cpus": os.cpu_count(), "load_average_at_start": os.getloadavg()}, "sizes": {}}
    for rows in [int(r) for r in args.rows.split(",")]:
        url, reused = database(server_url, f"perf_{rows}", args.reuse)
        size = {}
        if not reused:
            size["fill_s"], _ = timed(fill_log.main, ["--database-url", url, "--rows", str(rows), "--days",
                                                      str(args.days), "--labelled-share", str(args.labelled_share)])
        size["catch_up"] = catch_up(url)
        print(f"{rows:,} rows: catch-up {size['catch_up']}", flush=True)
        size["steady_refresh"] = steady_refresh(url)
        print(f"{rows:,} rows: steady refresh {size['steady_refresh']}", flush=True)
        size["route_median_s"] = route_medians(url, args.repeats)
        size["rows_only_median_s"] = {f"by={by or '-'} since=all": rows_only(url, by, max(1, args.repeats // 2))
                                      for by in (None, "country")}
        size["per_user_in_python_s"] = per_user_in_python(url)
        size["load_average_after"] = os.getloadavg()
        results["sizes"][rows] = size
        print(json.dumps(size, indent=1, default=str), flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=1, default=str))
    _print_table(results)
    return results


def _print_table(results: dict) -> None:
    sizes = results["sizes"]
    print("\n/performance (median seconds):", " | ".join(f"{r:,} rows" for r in sizes))
    for key in next(iter(sizes.values()))["route_median_s"]:
        print(f"  {key:32s}", " | ".join(f"{s['route_median_s'][key]:8.3f}" for s in sizes.values()))
    for key in next(iter(sizes.values()))["rows_only_median_s"]:
        print(f"  rows only {key:22s}", " | ".join(f"{s['rows_only_median_s'][key]:8.3f}" for s in sizes.values()))
    print(f"  {'per user in Python (v1)':32s}", " | ".join(f"{s['per_user_in_python_s']:8.3f}" for s in sizes.values()))


if __name__ == "__main__":
    main()
