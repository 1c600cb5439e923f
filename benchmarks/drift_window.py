"""How long GET /drift's count takes over a filled log, per window: the rollup's read path beside the
row scan, and what keeping the rollup current costs.

    .venv/bin/python -m benchmarks.fill_log --database-url URL --rows 10000000 --days 30
    .venv/bin/python -m benchmarks.drift_window --database-url URL [--repeats 5] [--rebuild]

First the rollup (serving/db/drift_cells.py) is brought up to date, as the service's upkeep does:
the reference profile's edges are stored for every version in the log (as the service's first
/drift of a version does), then ``catch_up`` reads the log rows past the feed; its time per million
rows is printed. ``--rebuild`` empties the rollup first, so the catch-up reads the whole log.

Then, for windows of 1 hour to 7 days ending at the log's newest row (not on an hour: both ends are
partial hours, read from the rows), on the newest model version: ``window_counts`` (GET /drift's
read path: whole hours from the rollup, the rest from the rows) and ``scan_counts`` (one scan of
the window's rows, as /drift did before the rollup), medians of ``--repeats`` runs after one
warm-up each, side by side; the two answers are checked equal. Then the folding and PSI.
The reference profile is built from the generator's users, as train would.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import timedelta

from benchmarks.fill_log import user_pool
from revenue_model import drift as D
from revenue_model.validation import validate_columns
from serving.db import drift_cells
from serving.db.connection import connect
from serving.db.drift import NUMERIC_COLUMNS, scan_counts, window_counts

WINDOWS = {"1h": timedelta(hours=1), "6h": timedelta(hours=6), "24h": timedelta(hours=24),
           "7d": timedelta(days=7)}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", required=True)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rebuild", action="store_true", help="empty the rollup first and time its catch-up over the whole log")
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


def catch_up(connection, versions: list[str], edges: dict, rebuild: bool) -> dict:
    """Store the edges of ``versions``, bring the rollup up to date; rows read and seconds."""
    with connection.cursor() as cursor:
        if rebuild:
            cursor.execute("TRUNCATE drift_cells")
            cursor.execute("UPDATE drift_feed SET last_log_id = 0")
        cursor.execute("SELECT last_log_id FROM drift_feed")
        (before,) = cursor.fetchone()
    connection.commit()
    for version in versions:
        drift_cells.register(connection, version, edges)
    started = time.perf_counter()
    assert drift_cells.catch_up(connection) == 0
    seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("SELECT last_log_id FROM drift_feed")
        (after,) = cursor.fetchone()
        cursor.execute("SELECT count(*) FROM drift_cells")
        (cells,) = cursor.fetchone()
    connection.rollback()
    return {"log_ids_read": after - before, "catch_up_s": seconds, "cells": cells}


def main(argv=None) -> dict:
    args = parse_args(argv)
    profile = reference_profile()
    edges = {c: profile["columns"][c]["edges"] for c in NUMERIC_COLUMNS}
    connection = connect(args.database_url, statement_timeout_ms=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT array_agg(DISTINCT model_version), count(*), max(timestamp) FROM predictions")
        versions, total, now = cursor.fetchone()  # windows end at the newest row: fill_log's log ends when it ran
    connection.rollback()
    version = max(versions, key=int)
    print(f"{total:,} rows in the log; version {version}; medians of {args.repeats} runs; "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    rollup = catch_up(connection, versions, edges, args.rebuild)
    per_million = rollup["catch_up_s"] / rollup["log_ids_read"] * 1e6 if rollup["log_ids_read"] else float("nan")
    print(f"rollup catch-up: {rollup['log_ids_read']:,} log rows in {rollup['catch_up_s']:.1f} s "
          f"({per_million:.1f} s per million rows); {rollup['cells']:,} cells", flush=True)
    results = {"rollup": rollup}
    for name, span in WINDOWS.items():
        window = {"model_version": version, "since": now - span, "until": now, "edges": edges}
        groups = window_counts(connection, **window)
        assert groups == scan_counts(connection, **window), f"window {name}: the rollup and the scan disagree"
        rows = sum(groups["event_1"].values())
        scan_s = median_s(lambda: scan_counts(connection, **window), args.repeats)
        read_s = median_s(lambda: window_counts(connection, **window), args.repeats)
        fold_s = median_s(lambda: D.drift_report(profile, D.grouped_counts(profile, groups)), args.repeats)
        results[name] = {"rows": rows, "scan_s": scan_s, "read_s": read_s, "fold_s": fold_s}
        print(f"window {name:>4}: {rows:>10,} rows  row scan {scan_s:7.3f} s  rollup + rows {read_s:6.3f} s "
              f"({scan_s / read_s:5.1f}x)  fold + PSI {fold_s:6.3f} s  (equal answers)", flush=True)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    connection.close()
    return results


if __name__ == "__main__":
    main()
