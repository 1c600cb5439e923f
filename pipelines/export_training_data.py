"""Export the log as a training set: the inputs exactly as served, joined with what users spent.

    mlflow run . -e export_training_data --env-manager local -P output=served.parquet [-P since=30d]

One row per labelled user_id: the latest successful champion prediction (in [since, until), as
/stats parses them), its typed input columns (as the service validated and scored them), the
label's ``revenue``, the ``model_version`` that answered and ``predicted_at``. CSV or Parquet by the
output's suffix, written batch by batch. With fewer than ``min_users`` rows it refuses (exit status
4, no file): too few users to train and test a model on.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.log_database import log_database, parse_time
from revenue_model.contract import EVENT_COLUMNS
from serving.db.training_rows import COLUMNS, training_rows

TOO_FEW = 4
MIN_USERS = 1000  # train/dev/test of 70/15/15: 150 test users, of whom about 20 pay
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SCHEMA = pa.schema([pa.field(c, pa.float64() if c in EVENT_COLUMNS + ("revenue",) else
                             pa.timestamp("us", tz="UTC") if c == "predicted_at" else pa.string())
                    for c in COLUMNS])


class TooFewUsers(SystemExit):
    def __init__(self, found: int, minimum: int):
        super().__init__(TOO_FEW)
        self.message = (f"REFUSED: only {found} labelled users have a successful champion prediction in the "
                        f"window; training needs at least {minimum} (min_users)")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", required=True, help="a .csv or .parquet file")
    p.add_argument("--since", default="", help="ISO 8601 time or 30m, 6h, 7d back from now; empty: all")
    p.add_argument("--until", default="", help="the same; empty: now")
    p.add_argument("--min-users", type=int, default=MIN_USERS)
    return p.parse_args(argv)


def export(output: Path, *, since: datetime, until: datetime, min_users: int) -> dict:
    """Write the training set to ``output``; a summary (rows, versions, first and last predicted_at).

    Raises TooFewUsers (and leaves no file) below ``min_users``.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    rows, versions, first, last = 0, Counter(), None, None
    with log_database() as connection, _Writer(partial) as writer:
        for batch in training_rows(connection, since=since, until=until):
            writer.write(batch)
            rows += len(batch)
            versions.update(row[-2] for row in batch)
            stamps = [row[-1] for row in batch]
            first = min([first, *stamps] if first else stamps)
            last = max([last, *stamps] if last else stamps)
            print(f"{rows:,} users exported", flush=True)
    if rows < min_users:
        partial.unlink(missing_ok=True)
        raise TooFewUsers(rows, min_users)
    partial.replace(output)
    return {"rows": rows, "versions": dict(versions), "since": since.isoformat(), "until": until.isoformat(),
            "first_predicted_at": first.isoformat(), "last_predicted_at": last.isoformat(), "output": str(output)}


class _Writer:
    """Batches of rows to CSV or Parquet, by the file's suffix."""

    def __init__(self, path: Path):
        self.path, self.parquet = path, Path(str(path).removesuffix(".partial")).suffix.lower() in (".parquet", ".pq")

    def __enter__(self):
        if self.parquet:
            self.out = pq.ParquetWriter(self.path, SCHEMA)
        else:
            self.file = self.path.open("w", newline="", encoding="utf-8")
            self.out = csv.writer(self.file)
            self.out.writerow(COLUMNS)
        return self

    def write(self, batch: list[tuple]) -> None:
        if self.parquet:
            self.out.write_table(pa.Table.from_pylist([dict(zip(COLUMNS, row)) for row in batch], schema=SCHEMA))
        else:
            self.out.writerows([[_text(v) for v in row] for row in batch])

    def __exit__(self, *exc):
        if self.parquet:
            self.out.close()
        else:
            self.file.close()


def _text(value):
    return value.isoformat() if isinstance(value, datetime) else ("" if value is None else value)


def main(argv=None) -> dict:
    args = parse_args(argv)
    now = datetime.now(timezone.utc)
    since = parse_time(args.since, "since", now) or EPOCH
    until = parse_time(args.until, "until", now) or now
    with mlflow.start_run():
        mlflow.log_params({"output": args.output, "window_since": since.isoformat(), "window_until": until.isoformat(),
                           "min_users": args.min_users})
        try:
            summary = export(Path(args.output), since=since, until=until, min_users=args.min_users)
        except TooFewUsers as refused:
            mlflow.set_tag("refused", refused.message)
            print(refused.message, flush=True)
            raise
        mlflow.log_metric("rows", summary["rows"])
        mlflow.set_tags({"first_predicted_at": summary["first_predicted_at"],
                         "last_predicted_at": summary["last_predicted_at"]})
    print(f"exported {summary['rows']:,} users to {summary['output']} (predicted from {summary['first_predicted_at']} "
          f"to {summary['last_predicted_at']}; by version: {summary['versions']})")
    return summary


if __name__ == "__main__":
    main()  # TooFewUsers exits with status 4
