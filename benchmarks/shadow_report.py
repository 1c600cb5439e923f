"""GET /shadow's work at scale: the SQL and the ranking, on a log filled by benchmarks.fill_log.

    .venv/bin/python -m benchmarks.shadow_report                       # 2 million rows, 30 days, half shadowed
    .venv/bin/python -m benchmarks.shadow_report --rows 10000000

Fills a fresh embedded PostgreSQL (``--database-url`` to use another: it must be a throwaway
database) and times, for windows of 1, 7 and 30 days (median of ``--repeats``), what the route
does: ``shadow_pairs`` (counts and mean ratio over the whole window, SQL), ``shadow_sample`` (the
newest SHADOW_SAMPLE_USERS pairs, SQL) and ``compare`` (Spearman and top-decile overlap, NumPy).
Then GET /performance's ``same_users`` (``--labelled-share`` of the users older than a week get a
label): the rollup brought up to date once (``outcomes.catch_up``, timed), then, per window,
``same_users_rows`` (both versions on the users both scored, SQL) and ``performance_groups``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from benchmarks import fill_log
from serving.config import Settings
from serving.db import outcomes
from serving.db.connection import connect
from serving.db.shadow import shadow_pairs, shadow_sample
from serving.db.shadow_outcomes import same_users_rows
from serving.performance import performance_groups
from serving.shadow_compare import compare

PROJECT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2_000_000, help="champion rows (shadow rows come on top)")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--shadow-share", type=float, default=0.5)
    p.add_argument("--labelled-share", type=float, default=0.5, help="of the users older than a week")
    p.add_argument("--sample-users", type=int, default=Settings.shadow_sample_users)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--database-url", default="", help="a throwaway database; empty: an embedded one")
    p.add_argument("--pgdata", default="", help="the embedded database's directory; empty: a new one")
    p.add_argument("--filled", action="store_true", help="the database is filled already: only time")
    p.add_argument("--output", default=str(PROJECT / "benchmarks" / "results" / "shadow_report.json"))
    return p.parse_args(argv)


def timed(fn, repeats: int) -> tuple[float, object]:
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds)), result


def main(argv=None) -> dict:
    args = parse_args(argv)
    url = args.database_url
    if not url:
        import pgserver

        pgdata = Path(args.pgdata or Path(tempfile.mkdtemp(prefix="shadow-report-")) / "pgdata")
        url = pgserver.get_server(pgdata).get_uri()
        print(f"embedded PostgreSQL in {pgdata} (--pgdata {pgdata} --filled to time it again)", flush=True)
    if not args.filled:
        fill_log.main(["--database-url", url, "--rows", str(args.rows), "--days", str(args.days),
                       "--shadow-share", str(args.shadow_share), "--versions", "1",
                       "--labelled-share", str(args.labelled_share)])
    connection = connect(url, statement_timeout_ms=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM predictions")
        (rows,) = cursor.fetchone()
    connection.rollback()
    results = {"rows": rows, "sample_users": args.sample_users, "windows": {}}
    for days in (1, 7, 30):
        since = datetime.now(timezone.utc) - timedelta(days=days)
        pairs_s, pairs = timed(lambda: shadow_pairs(connection, since), args.repeats)
        pair = max(pairs, key=lambda p: p["last"])
        sample_s, (champion, shadow) = timed(lambda: shadow_sample(connection, since, pair, args.sample_users),
                                             args.repeats)
        compare_s, _ = timed(lambda: compare(champion, shadow), args.repeats)
        results["windows"][f"{days}d"] = {"n_users": pair["n_users"], "pairs_s": pairs_s, "sample_s": sample_s,
                                          "compare_s": compare_s, "total_s": pairs_s + sample_s + compare_s}
        print(f"since {days:>2}d: {pair['n_users']:>9,} users both scored; pairs {pairs_s:.2f} s, "
              f"sample {sample_s:.2f} s, compare {compare_s:.3f} s", flush=True)
    results["same_users"] = same_users_timings(connection, args.repeats)
    connection.close()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.output}")
    return results


def same_users_timings(connection, repeats: int) -> dict:
    """The rollup's catch-up (once), then /performance's same_users per window (median of ``repeats``)."""
    started = time.perf_counter()
    outcomes.catch_up(connection)
    out = {"catch_up_s": time.perf_counter() - started, "windows": {}}
    print(f"rollup brought up to date in {out['catch_up_s']:.1f} s", flush=True)
    for days in (1, 7, 30):
        since = datetime.now(timezone.utc) - timedelta(days=days)
        seconds, groups = timed(lambda: performance_groups(same_users_rows(
            connection, first="1", second="2", since=since, until=None, by=None), None, 200), repeats)
        labelled = groups[0]["n_labelled"] if groups else 0
        users = groups[0]["n_predicted"] if groups else 0
        out["windows"][f"{days}d"] = {"n_users": users, "n_labelled": labelled, "seconds": seconds}
        print(f"same_users since {days:>2}d: {users:>9,} users both scored, {labelled:>9,} labelled; "
              f"{seconds:.2f} s", flush=True)
    return out


if __name__ == "__main__":
    main()
