"""Fill a prediction log with realistic rows, to time the read routes at millions of rows.

    .venv/bin/python -m benchmarks.fill_log --database-url URL --rows 10000000 --days 30 \
        [--labelled-share 0.5] [--versions 2] [--shadow-share 0]

Rows look like what the service writes: users from the project's generator (countries, sources,
spellings, missing values), requests of 50 users on the three prediction routes in turn, about 1%
rejected, predictions that follow each user's true expected revenue with model-like error,
timestamps spread evenly over the last ``days`` days in insertion order, model versions in turn
(the oldest days served by version 1). With ``--labelled-share``, that share of the users predicted
more than 7 days ago get a label (their generated revenue), as the daily ingestion would have
written it. Rows go in with COPY, a day partition at a time: 10 million rows take minutes, not hours.

Never run it against a database whose log matters: it adds rows with made-up request ids.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd

from revenue_model.contract import EVENT_COLUMNS, STRING_COLUMNS
from revenue_model.synthetic import generate_users
from serving.db.connection import connect
from serving.db.log_rows import ROW_COLUMNS
from serving.db.partitions import Partitions
from serving.db.schema import migrate

_POOL = 200_000          # distinct generated users, reused with new ids (generating costs 20 us per user)
_CHUNK = 100_000         # rows per COPY
_USER_FIELDS = [c for c in STRING_COLUMNS + EVENT_COLUMNS if c != "user_id"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", required=True)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--labelled-share", type=float, default=0.0, help="share of users older than 7 days labelled")
    p.add_argument("--versions", type=int, default=2, help="model versions served in turn, oldest first")
    p.add_argument("--shadow-share", type=float, default=0.0, help="share of users also scored by a shadow")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2, help="processes writing at once")
    return p.parse_args(argv)


def user_pool(size: int, seed: int) -> pd.DataFrame:
    """Generated users with model-like predictions: the truth, blurred as a good model would be."""
    users = generate_users(size, seed=seed, with_truth=True)
    rng = np.random.default_rng(seed)
    truth = users["true_expected_revenue"].to_numpy()
    users["predicted_revenue"] = truth * rng.lognormal(-0.125, 0.5, size)
    p = np.clip(users["true_payer_probability"].to_numpy() * rng.lognormal(0, 0.2, size), 0.001, 0.999)
    users["payer_probability"] = p
    users["revenue_p10"] = np.where(p > 0.9, users["predicted_revenue"] * 0.2, 0.0)
    users["revenue_p90"] = np.where(p > 0.1, users["predicted_revenue"] / p * 2.5, 0.0)
    return users


def log_frame(pool: pd.DataFrame, start: int, n: int, first: datetime, span: timedelta, args,
              rng: np.random.Generator) -> pd.DataFrame:
    """Rows ``start``..``start + n`` of the log, as COPY takes them (ROW_COLUMNS order)."""
    index = np.arange(start, start + n)
    users = pool.iloc[index % len(pool)].reset_index(drop=True)
    request_of = index // 50
    route = np.array(["/predict", "/invocations", "/batch_predict"])[request_of % 3]
    attempt = np.char.add(f"fill-{args.run}-", request_of.astype(str))
    rejected = rng.random(n) < 0.01
    step_us = span.total_seconds() * 1e6 / args.rows
    moment = np.datetime64(first.replace(tzinfo=None), "us") + (index * step_us).astype("int64").astype("timedelta64[us]")
    version = 1 + np.minimum((index * args.versions) // args.rows, args.versions - 1)
    frame = pd.DataFrame({
        "row_key": np.char.add(np.char.add(attempt, ":"), (index % 50).astype(str)),
        # ISO text made by NumPy: pandas' date_format formats row by row (most of a chunk's time).
        "timestamp": np.char.add(np.datetime_as_string(moment, unit="us"), "+00:00"),
        "request_id": attempt, "user_index": index % 50, "role": "champion",
        "user_id": np.char.add(f"fill-{args.run}-u", index.astype(str)),
        "route": route, "status_code": np.where(rejected, 400, 200),
        "error": np.where(rejected, "event_1 must be >= 0", None),
        "model_name": "revenue_model", "model_version": version.astype(str),
        **{c: users[c].to_numpy() for c in _USER_FIELDS},
    })
    for c in ("predicted_revenue", "payer_probability", "revenue_p10", "revenue_p90"):
        frame[c] = np.where(rejected, np.nan, users[c].to_numpy())
    frame["inference_time_ms"] = rng.gamma(4.0, 0.8, n)
    frame["latency_ms"] = frame["inference_time_ms"] + rng.gamma(2.0, 0.4, n)
    frame["input_data"] = users[_USER_FIELDS].assign(user_id=frame["user_id"]).to_json(
        orient="records", lines=True).splitlines()
    frame["revenue"] = users["revenue"].to_numpy()  # not a log column: the label, if one is written
    return frame


def copy_rows(cursor, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    frame[list(ROW_COLUMNS)].to_csv(buffer, index=False, header=False, na_rep="")
    buffer.seek(0)
    cursor.copy_expert(f"COPY predictions ({', '.join(ROW_COLUMNS)}) FROM STDIN WITH (FORMAT csv)", buffer)


def with_shadow(frame: pd.DataFrame, share: float, versions: int, rng: np.random.Generator) -> pd.DataFrame:
    chosen = frame[(frame["status_code"] == 200).to_numpy() & (rng.random(len(frame)) < share)].copy()
    chosen["role"] = "shadow"
    chosen["model_version"] = str(versions + 1)
    chosen["predicted_revenue"] *= rng.lognormal(0, 0.3, len(chosen))
    return pd.concat([frame, chosen], ignore_index=True)


def copy_labels(cursor, frame: pd.DataFrame, now: datetime, share: float, rng: np.random.Generator) -> int:
    week_ago = (now - timedelta(days=7)).replace(tzinfo=None).isoformat()
    old = frame[(frame["timestamp"] < week_ago).to_numpy() & (rng.random(len(frame)) < share)]
    if old.empty:
        return 0
    labels = pd.DataFrame({"user_id": old["user_id"], "revenue": old["revenue"],
                           "observed_at": now.isoformat(), "source": "fill_log"})
    buffer = io.StringIO()
    labels.to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    cursor.copy_expert("COPY labels (user_id, revenue, observed_at, source) FROM STDIN WITH (FORMAT csv)", buffer)
    return len(labels)


def fill_chunks(args, pool: pd.DataFrame, starts: list[int], first: datetime, now: datetime,
                has_labels: bool, worker: int) -> tuple[int, int]:
    """Write the chunks beginning at ``starts`` on a connection of its own; (rows, labels) written."""
    rng = np.random.default_rng([args.seed, worker])
    span = now - first
    connection = connect(args.database_url, statement_timeout_ms=0)
    written = labelled = 0
    started = time.perf_counter()
    for start in starts:
        frame = log_frame(pool, start, min(_CHUNK, args.rows - start), first, span, args, rng)
        if args.shadow_share:
            frame = with_shadow(frame, args.shadow_share, args.versions, rng)
        with connection.cursor() as cursor:
            copy_rows(cursor, frame)
            if has_labels and args.labelled_share:
                labelled += copy_labels(cursor, frame[frame["role"] == "champion"], now, args.labelled_share, rng)
        connection.commit()
        written += len(frame)
        rate = written / (time.perf_counter() - started)
        print(f"worker {worker}: {written:,} rows, {labelled:,} labels, {rate:,.0f} rows/s", flush=True)
    connection.close()
    return written, labelled


def main(argv=None) -> dict:
    args = parse_args(argv)
    args.run = uuid.uuid4().hex[:8]  # this run's ids: a second run adds rows, it does not collide
    now = datetime.now(timezone.utc)
    first = now - timedelta(days=args.days)
    started = time.perf_counter()
    pool = user_pool(min(args.rows, _POOL), args.seed)
    connection = connect(args.database_url, statement_timeout_ms=0)
    migrate(connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass('labels') IS NOT NULL")
        (has_labels,) = cursor.fetchone()
    if args.labelled_share and not has_labels:
        print("no labels table in this database (its layout predates labels): no labels written")
    Partitions().ensure(connection, {(first + timedelta(days=k)).date() for k in range(args.days + 2)})
    connection.commit()
    starts = list(range(0, args.rows, _CHUNK))
    jobs = max(1, min(args.jobs, len(starts)))
    # Forked workers share the generated users; PostgreSQL takes each COPY on a core of its own.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as executor:
        results = list(executor.map(fill_chunks, *zip(*[(args, pool, starts[k::jobs], first, now, has_labels, k)
                                                          for k in range(jobs)])))
    written, labelled = map(sum, zip(*results))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE predictions")
        if has_labels:
            cursor.execute("ANALYZE labels")
    connection.commit()
    connection.close()
    seconds = time.perf_counter() - started
    print(f"done: {written:,} rows and {labelled:,} labels in {seconds:.0f} s")
    return {"rows": written, "labels": labelled, "seconds": seconds, "run": args.run}


if __name__ == "__main__":
    main()
