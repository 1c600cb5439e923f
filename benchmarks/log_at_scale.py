"""GET /stats (and /drift, /performance) through a real service over a log of millions of rows.

    .venv/bin/python -m benchmarks.log_at_scale --rows 1000000 [--pgdata DIR] [--repeats 5]
    .venv/bin/python -m benchmarks.log_at_scale --database-url URL    # a log filled before

With --rows, an embedded PostgreSQL in --pgdata is filled by benchmarks/fill_log.py (30 days, two
model versions). Then: the /stats rollup's one-time catch-up over the whole log is timed
(serving/db/stats_cells.py; the service's background task does the same at start), a model is
trained and registered (benchmarks/sustained.py's), ``python -m serving`` is started on the log,
and each route is called ``--repeats`` times in turn (interleaved), medians printed as a table.
The machine's load average is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from benchmarks import fill_log
from benchmarks.run import Process
from benchmarks.sustained import setup_models
from serving.db import stats_cells
from serving.db.connection import connect
from serving.db.schema import migrate
from serving.scorer_process import free_port

ROUTES = ["/stats", "/stats?since=7d", "/stats?since=1d", "/drift", "/performance", "/performance?since=7d"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=0, help="fill a new log of this many rows first")
    p.add_argument("--database-url", default="", help="a log filled before (instead of --rows)")
    p.add_argument("--pgdata", default="/tmp/log-at-scale/pg")
    p.add_argument("--repeats", type=int, default=5)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    url = args.database_url
    if not url:
        import pgserver

        url = pgserver.get_server(args.pgdata, cleanup_mode=None).get_uri()
        fill_log.main(["--database-url", url, "--rows", str(args.rows), "--days", "30"])
    connection = connect(url, statement_timeout_ms=0)
    migrate(connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM predictions")
        (rows,) = cursor.fetchone()
    connection.rollback()
    started = time.perf_counter()
    stats_cells.catch_up(connection)
    catch_up_s = time.perf_counter() - started
    connection.close()
    print(f"{rows:,} rows in the log; the /stats rollup's catch-up: {catch_up_s:.1f} s", flush=True)
    work = Path(tempfile.mkdtemp(prefix="log-at-scale-"))
    tracking, _, _ = setup_models(work)
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "DATABASE_URL": url, "PORT": str(port),
           "SPILL_DIR": str(work / "spill"), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    service = Process([sys.executable, "-m", "serving"], env, work / "service.log")
    base = f"http://127.0.0.1:{port}"
    seconds = {route: [] for route in ROUTES}
    status = {}
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if requests.get(base + "/health", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not start; see {work / 'service.log'}")
            time.sleep(1)
        load = os.getloadavg()[0]
        for _ in range(args.repeats + 1):  # the first call of each warms caches and is not counted
            for route in ROUTES:
                began = time.perf_counter()
                answer = requests.get(base + route, timeout=600)
                elapsed = time.perf_counter() - began
                status[route] = answer.status_code
                seconds[route].append(elapsed)
    finally:
        service.stop()
    out = {"rows": rows, "catch_up_s": catch_up_s, "load_average": load,
           "median_s": {route: statistics.median(v[1:]) for route, v in seconds.items()}}
    print(f"\n| route, {rows:,} rows, median of {args.repeats} | seconds | HTTP status |\n|---|--:|--:|")
    for route in ROUTES:
        print(f"| GET {route} | {out['median_s'][route]:.3f} | {status[route]} |")
    print(f"load average (1 min) at the start: {load:.1f}")
    return out


if __name__ == "__main__":
    main()
