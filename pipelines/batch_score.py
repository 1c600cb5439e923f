"""Score a day's installs in bulk: a CSV or Parquet file (or a folder of Parquet files) in, Parquet out.

    mlflow run . -e batch_score --env-manager local -P input_path=installs.parquet \\
        -P output_path=$PWD/scored.parquet [-P model_uri=models:/revenue_model@champion] [-P engine=local|spark]

The output holds every input column, the model's four outputs and
``model_version``, one row per input row. The model URI is resolved once (an
alias to its version) and that version scores every row.

- ``engine=local``: chunks of ``chunk_rows`` rows, scored by one spawn-started
  process per core that imports nothing of this project before the model
  loads (pipelines/score_worker.py), written to one Parquet file in input
  order. Memory depends on the chunk size, never on the input's.
- ``engine=spark``: ``mlflow.pyfunc.spark_udf`` on ``SPARK_MASTER`` (default
  ``local[*]``), Parquet (a folder of part files) written by Spark
  (pipelines/batch_spark.py).

A bad row stops the run with an error naming its row (0-based, in input order)
and field; no partial output file is left behind.

This module is the main module of the spawn-started scoring processes too
(multiprocessing imports it there first): it must not import revenue_model,
directly or through another module.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.models import Model
from tqdm import tqdm

from pipelines import batch_io
from pipelines.batch_io import BatchInputError, ModelColumns
from pipelines.score_worker import ScoringError, ScoringPool
from serving.config import Settings
from serving.model_identity import resolve_model

ENGINES = ("local", "spark")
DEFAULT_CHUNK_ROWS = 50_000
# Chunks in flight per scoring process: one being scored, one waiting, so no process idles.
_IN_FLIGHT_PER_WORKER = 2


@dataclass(frozen=True)
class BatchRun:
    rows: int
    seconds: float
    model_uri: str       # the version that scored (models:/name/N when registered)
    model_version: str   # what every output row's model_version says

    @property
    def users_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input-path", required=True, help="a CSV or Parquet file, or a folder of Parquet files")
    p.add_argument("--output-path", required=True, help="the Parquet file (engine=spark: folder) to write")
    p.add_argument("--model-uri", default="models:/revenue_model@champion")
    p.add_argument("--engine", choices=ENGINES, default="local")
    p.add_argument("--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS,
                   help="rows scored at a time (engine=local); memory grows with it")
    p.add_argument("--workers", type=int, default=0,
                   help="scoring processes (engine=local); 0: one per core")
    p.add_argument("--partitions", default="auto",
                   help="engine=spark: auto (one per core Spark has), input (the reader's split, "
                        "no shuffle) or a number")
    p.add_argument("--log", type=_boolean, default=False,
                   help="also write the scored users to the prediction log (route batch_score; "
                        "DATABASE_URL, or the embedded PostgreSQL in PGDATA_DIR)")
    return p.parse_args(argv)


def _boolean(text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")
    return value in ("true", "1", "yes")


def score_local(input_path: str | Path, output_path: str | Path, pool: ScoringPool,
                model: ModelColumns, version: str, *, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> int:
    """Score ``input_path`` into the Parquet file ``output_path``, in order; returns the rows.

    At most ``2 * pool.workers + 1`` chunks of ``chunk_rows`` rows are held at a time.
    """
    schema = batch_io.read_schema(input_path, model)
    batch_io.check_columns(schema.names, model)
    out_schema = batch_io.scored_schema(schema, model)
    inputs = [c for c in schema.names if c in model.inputs]
    rows = 0
    pending: deque = deque()
    with batch_io.AtomicParquetWriter(output_path, out_schema) as writer, \
            tqdm(total=batch_io.count_rows(input_path), unit=" users", unit_scale=True,
                 file=sys.stderr, desc="batch_score") as bar:
        def write_oldest():
            batch, future = pending.popleft()
            writer.write(batch_io.scored_batch(batch, future.result(), out_schema, version))
            bar.update(batch.num_rows)

        try:
            for batch in batch_io.read_chunks(input_path, model, chunk_rows):
                # Only the model's columns travel to the scoring process; the rest wait here.
                pending.append((batch, pool.submit(batch.select(inputs), rows)))
                rows += batch.num_rows
                if len(pending) > _IN_FLIGHT_PER_WORKER * pool.workers:
                    write_oldest()
            while pending:
                write_oldest()
        finally:
            for _, future in pending:  # after a failure: no more work for a pool that may be shared
                future.cancel()
    return rows


def batch_score(input_path: str | Path, output_path: str | Path, *,
                model_uri: str = "models:/revenue_model@champion", engine: str = "local",
                chunk_rows: int = DEFAULT_CHUNK_ROWS, workers: int = 0, partitions: str = "auto",
                settings: Settings | None = None) -> BatchRun:
    """Resolve and download the model once, then score with ``engine`` (see the module doc)."""
    if engine not in ENGINES:
        raise BatchInputError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
    settings = settings or Settings.from_env()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="batch-score-") as directory:
        identity = resolve_model(model_uri, Path(directory) / "model")
        model_path = Path(directory) / "model"
        model = ModelColumns.from_model(Model.load(str(model_path / "MLmodel")))
        version = identity.version or identity.uri
        if engine == "local":
            cores = os.cpu_count() or 1
            workers = workers if workers > 0 else cores
            with ScoringPool(model_path, workers, threads=max(1, cores // workers)) as pool:
                rows = score_local(input_path, output_path, pool, model, version, chunk_rows=chunk_rows)
        else:
            try:
                from pipelines.batch_spark import score_spark
            except ImportError as exc:  # pyspark is an optional extra
                raise BatchInputError(f"engine=spark needs the spark extra (pip install -e '.[spark]') "
                                      f"and Java 17: {exc}") from None
            rows = score_spark(input_path, output_path, model_path, model, version,
                               master=settings.spark_master, partitions=partitions)
        seconds = time.perf_counter() - start
    return BatchRun(rows=rows, seconds=seconds, model_uri=identity.uri, model_version=version)


def main(argv=None) -> BatchRun:
    args = parse_args(argv)
    settings = Settings.from_env()
    with mlflow.start_run():
        mlflow.log_params({"engine": args.engine, "input_path": args.input_path,
                           "output_path": args.output_path, "model_uri": args.model_uri,
                           "chunk_rows": args.chunk_rows, "workers": args.workers,
                           **({"spark_master": settings.spark_master, "partitions": args.partitions}
                              if args.engine == "spark" else {})})
        try:
            result = batch_score(args.input_path, args.output_path, model_uri=args.model_uri,
                                 engine=args.engine, chunk_rows=args.chunk_rows,
                                 workers=args.workers, partitions=args.partitions, settings=settings)
        except (BatchInputError, ScoringError) as exc:
            sys.exit(f"batch_score: {exc}")  # the run is recorded as failed
        mlflow.log_params({"model_version": result.model_version, "scored_model_uri": result.model_uri})
        mlflow.log_metrics({"rows": result.rows, "seconds": result.seconds,
                            "users_per_s": result.users_per_s})
        if args.log:
            logged = _log_to_database(args, result, settings, mlflow.active_run().info.run_id)
            mlflow.log_metrics({"logged_rows": logged})
    print(f"scored {result.rows} users with {result.model_uri} ({args.engine}) in "
          f"{result.seconds:.1f} s: {result.users_per_s:,.0f} users/s -> {args.output_path}")
    return result


def _log_to_database(args, result: BatchRun, settings: Settings, run_id: str) -> int:
    from pipelines.batch_log import log_scored  # not in the scoring processes: see the module doc

    name = result.model_uri.split("/")[1] if result.model_uri.startswith("models:/") else None
    started = time.perf_counter()
    rows = log_scored(args.output_path, name, result.model_version, run_id,
                      database_url=settings.database_url, pgdata_dir=settings.pgdata_dir, seconds=result.seconds)
    print(f"logged {rows} users to the prediction log (route batch_score) in {time.perf_counter() - started:.1f} s")
    return rows


if __name__ == "__main__":
    main()
