"""How long GET /drift's count takes over a filled log, per window; and what hourly rollups would give.

    .venv/bin/python -m benchmarks.fill_log --database-url URL --rows 10000000 --days 30
    .venv/bin/python -m benchmarks.drift_window --database-url URL [--repeats 5] [--rollup]

Times ``serving.db.drift.window_counts`` (the SQL of GET /drift: one scan of the window's day
partitions) and the folding and PSI after it, for windows of 1 hour to 30 days ending now, on the
newest model version fill_log wrote; medians of ``--repeats`` runs after one warm-up. The reference
profile is built from the generator's users and fill_log's model-like predictions, as train would.

``--rollup`` also builds, in a temporary table, the hourly rollup a maintained design would keep
(rows per hour, column and bucket or raw value, for this profile's edges; over the longest window)
and times reading the same windows from it, so the two designs are compared on the same rows.
(The rollup read covers whole hours only; an exact one would add the partial hours at both ends.)
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import timedelta

from benchmarks.fill_log import user_pool
from revenue_model import drift as D
from revenue_model.validation import validate_columns
from serving.db.connection import connect
from serving.db.drift import _KEYS, NUMERIC_COLUMNS, window_counts

WINDOWS = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24),
           "7d": timedelta(days=7)}
_ROLLUP = f"""
    CREATE TEMP TABLE drift_hourly AS
    SELECT date_trunc('hour', p.timestamp) AS hour, p.model_version, k.column_name, k.key, count(*) AS rows
    FROM predictions p CROSS JOIN LATERAL (VALUES {_KEYS}) AS k(column_name, key)
    WHERE p.role = 'champion' AND p.status_code = 200 AND p.predicted_revenue IS NOT NULL
          AND p.timestamp >= %(since)s
    GROUP BY 1, 2, 3, 4"""
_FROM_ROLLUP = """
    SELECT column_name, key, sum(rows) FROM drift_hourly
    WHERE hour >= %(since)s AND hour < %(until)s AND model_version = %(version)s GROUP BY 1, 2"""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rollup", action="store_true", help="also time an hourly rollup of the same rows")
    return p.parse_args(argv)


def reference_profile() -> dict:
    pool = user_pool(20_000, seed=1)
    return D.build_profile(validate_columns(pool), {c: pool[c].to_numpy() for c in D.OUTPUTS})


def median_s(action, repeats: int) -> float:
    action()  # warm-up: the first read of a window pays for the disk, later ones for the work
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main(argv=None) -> dict:
    args = parse_args(argv)
    profile = reference_profile()
    edges = {c: profile["columns"][c]["edges"] for c in NUMERIC_COLUMNS}
    connection = connect(args.database_url, statement_timeout_ms=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT max(model_version), count(*) FROM predictions")
        version, total = cursor.fetchone()
        cursor.execute("SELECT max(timestamp) FROM predictions")
        (now,) = cursor.fetchone()  # windows end at the newest row: fill_log's log ends when it ran
    connection.rollback()
    print(f"{total:,} rows in the log; version {version}; medians of {args.repeats} runs")
    results = {}
    scan = ("SELECT count(*) FROM predictions WHERE timestamp >= %(since)s AND timestamp < %(until)s "
            "AND role = 'champion' AND model_version = %(version)s AND status_code = 200")
    for name, span in WINDOWS.items():
        window = {"model_version": version, "since": now - span, "until": now, "edges": edges}
        groups = window_counts(connection, **window)
        rows = sum(groups["event_1"].values())
        sql_s = median_s(lambda: window_counts(connection, **window), args.repeats)
        fold_s = median_s(lambda: D.drift_report(profile, D.grouped_counts(profile, groups)), args.repeats)
        with connection.cursor() as cursor:
            read_s = median_s(lambda: cursor.execute(scan, {**window, "version": version}), args.repeats)
        results[name] = {"rows": rows, "sql_s": sql_s, "fold_s": fold_s, "read_s": read_s}
        print(f"window {name:>4}: {rows:>10,} rows  count SQL {sql_s:7.3f} s  (reading the rows alone "
              f"{read_s:6.3f} s)  fold + PSI {fold_s:6.3f} s", flush=True)
    if args.rollup:
        with connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(_ROLLUP, {**edges, "since": now - max(WINDOWS.values())})
            build_s = time.perf_counter() - started
            cursor.execute("SELECT count(*) FROM drift_hourly")
            (size,) = cursor.fetchone()
            print(f"rollup: {size:,} rows (hour, version, column, key) built in {build_s:.1f} s")
            for name, span in WINDOWS.items():
                window = {"since": now - span, "until": now, "version": version}
                read_s = median_s(lambda: (cursor.execute(_FROM_ROLLUP, window), cursor.fetchall()), args.repeats)
                results[name]["rollup_s"] = read_s
                ratio = results[name]["sql_s"] / read_s
                print(f"window {name:>4}: rollup read {read_s:7.3f} s ({ratio:.1f}x faster than the scan)", flush=True)
        results["rollup_rows"] = size
    connection.rollback()
    connection.close()
    return results


if __name__ == "__main__":
    main()
