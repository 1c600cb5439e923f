"""Store realised D7 revenue from a file: what POST /labels does, for files of any size.

    mlflow run . -e ingest_labels --env-manager local -P data_path=d7_revenue.csv

The file (CSV or Parquet) has columns ``user_id`` and ``revenue`` (USD), optionally
``observed_at`` (ISO 8601). It is read in chunks of ``chunk_rows`` (memory does not grow with the
file), each chunk validated as the route validates labels and its good rows stored in one
transaction, with a progress line. Bad rows are reported (row number, 1 = the first data row;
field; reason), the first ones printed and all of them in the run's ``problems.csv``; the rest is
stored. A user_id that appears again later in the file replaces its earlier row, as a later request
would. An interrupted ingest has stored the chunks it committed: running it again is safe.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path
from typing import Iterator

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from pipelines.log_database import log_database
from revenue_model.labels import OBSERVED_AT, REVENUE, USER_ID, check_label_columns
from serving.db.labels import upsert_labels

SHOWN_PROBLEMS = 20
BAD_FILE = 2


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-path", required=True, help="CSV or Parquet with user_id, revenue [, observed_at]")
    p.add_argument("--chunk-rows", type=int, default=100_000, help="rows validated and stored at a time")
    return p.parse_args(argv)


def read_chunks(path: Path, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The file's label columns, ``chunk_rows`` at a time (CSV text stays text: validation judges it)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        source = pq.ParquetFile(path)
        names = source.schema_arrow.names
        _check_columns(path, names)
        wanted = [c for c in (USER_ID, REVENUE, OBSERVED_AT) if c in names]
        for batch in source.iter_batches(batch_size=chunk_rows, columns=wanted):
            yield batch.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)
    elif path.suffix.lower() in (".csv", ".txt", ".gz"):
        names = pa_csv.open_csv(path).schema.names
        _check_columns(path, names)
        wanted = [c for c in (USER_ID, REVENUE, OBSERVED_AT) if c in names]
        reader = pa_csv.open_csv(path, read_options=pa_csv.ReadOptions(block_size=64 << 20),
                                 convert_options=pa_csv.ConvertOptions(
                                     include_columns=wanted, column_types={c: pa.string() for c in wanted},
                                     strings_can_be_null=True))
        pending = []
        for batch in reader:
            pending.append(batch.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get))
            while sum(map(len, pending)) >= chunk_rows:
                frame = pd.concat(pending, ignore_index=True)
                yield frame.iloc[:chunk_rows].reset_index(drop=True)
                pending = [frame.iloc[chunk_rows:].reset_index(drop=True)]
        if pending and sum(map(len, pending)):
            yield pd.concat(pending, ignore_index=True)
    else:
        raise SystemExit(f"{path}: expected a .csv or .parquet file")


def _check_columns(path: Path, names: list[str]) -> None:
    missing = [c for c in (USER_ID, REVENUE) if c not in names]
    if missing:
        raise SystemExit(f"{path}: no column {', '.join(missing)} (the file has: {', '.join(names)[:300]})")


def revenue_values(column: pd.Series):
    """Numbers as floats; text (CSV) converted, and what is not a number kept as text, so
    validation names it."""
    if column.dtype.kind in "fiu":
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    text = column.astype(object)
    numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
    words = np.isnan(numbers) & ~(text.isna() | text.astype(str).str.strip().eq("")).to_numpy()
    if not words.any():
        return numbers
    values = numbers.astype(object)
    values[words] = text.to_numpy()[words]
    return values


def store_chunk(connection, frame: pd.DataFrame, first_row: int, source: str, problems_out) -> dict:
    """Validate one chunk, store its good rows (the last of each user_id), commit; counts."""
    observed = frame[OBSERVED_AT] if OBSERVED_AT in frame.columns else None
    columns, good, problems = check_label_columns(frame[USER_ID].array, revenue_values(frame[REVENUE]), observed)
    for p in problems:
        problems_out.writerow([first_row + p.row, p.field, p.reason])
    kept = pd.DataFrame({"user_id": columns[USER_ID][good], "revenue": columns[REVENUE][good],
                         "observed_at": columns[OBSERVED_AT][good]})
    last = kept.drop_duplicates("user_id", keep="last")
    inserted = replaced = 0
    if len(last):
        observed_at = [None if pd.isna(t) else f"{t.isoformat()}+00:00" for t in last["observed_at"]]
        inserted, replaced = upsert_labels(connection, last["user_id"].tolist(), last["revenue"].tolist(),
                                           observed_at, source)
        connection.commit()
    return {"rows": len(frame), "bad_rows": len({p.row for p in problems}), "inserted": inserted,
            "replaced": replaced + len(kept) - len(last), "problems": problems}


def main(argv=None) -> dict:
    args = parse_args(argv)
    path = Path(args.data_path)
    if not path.is_file():
        raise SystemExit(f"{path}: no such file")
    source = f"file:{path.name}"
    totals = {"rows": 0, "bad_rows": 0, "inserted": 0, "replaced": 0}
    shown = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as directory, log_database() as connection, mlflow.start_run():
        mlflow.log_params({"data_path": str(path), "chunk_rows": args.chunk_rows, "source": source})
        problems_path = Path(directory) / "problems.csv"
        with problems_path.open("w", newline="") as f:
            problems_out = csv.writer(f)
            problems_out.writerow(["row", "field", "reason"])
            for frame in read_chunks(path, args.chunk_rows):
                counts = store_chunk(connection, frame, totals["rows"] + 1, source, problems_out)
                for p in counts.pop("problems"):
                    if shown < SHOWN_PROBLEMS:
                        print(f"  row {totals['rows'] + 1 + p.row}: {p.field} {p.reason}", flush=True)
                        shown += 1
                for key in totals:
                    totals[key] += counts[key]
                rate = totals["rows"] / max(time.perf_counter() - started, 1e-9)
                print(f"{totals['rows']:,} rows read, {totals['inserted'] + totals['replaced']:,} labels stored, "
                      f"{totals['bad_rows']:,} bad rows ({rate:,.0f} rows/s)", flush=True)
        seconds = time.perf_counter() - started
        mlflow.log_metrics({**{k: float(v) for k, v in totals.items()}, "seconds": seconds})
        if totals["bad_rows"]:
            mlflow.log_artifact(str(problems_path))
    stored = totals["inserted"] + totals["replaced"]
    print(f"done: {totals['rows']:,} rows, {stored:,} labels stored ({totals['inserted']:,} new, "
          f"{totals['replaced']:,} replacing an earlier label), {totals['bad_rows']:,} bad rows"
          + (" (all of them in the run's problems.csv)" if totals["bad_rows"] else "") + f", {seconds:.1f} s")
    return totals


if __name__ == "__main__":
    main()
