"""batch_score's Spark engine: ``mlflow.pyfunc.spark_udf`` with a struct result, Parquet in and out.

Needs the ``spark`` extra (``pip install -e '.[spark]'``) and Java 17. The same
function runs on a laptop (``SPARK_MASTER=local[*]``) and on a cluster (under
``spark-submit``, where the session already exists and its master wins):
see docs/pipelines.md.

Spark's Python workers start from ``pyspark.daemon``, which imports nothing of
this project, and load the model from the archive ``spark_udf`` ships them:
they run the model's bundled code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import mlflow
import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema

from pipelines import batch_io
from pipelines.batch_io import VERSION_COLUMN, ModelColumns

_OUT = "__batch_score_outputs"


def score_spark(input_path: str | Path, output_path: str | Path, model_path: str | Path,
                model: ModelColumns, version: str, *, master: str = "",
                partitions: str = "auto") -> int:
    """Score ``input_path`` into the Parquet folder ``output_path`` (replaced); returns the rows.

    ``master``: a Spark master URL; empty, Spark's own default (``local[*]`` in a plain Python
    process). Under spark-submit (or in a notebook's existing session) the session's master is
    used whatever ``master`` says.

    ``partitions``: "auto" spreads the rows over as many partitions as Spark has cores
    (``defaultParallelism``), "input" keeps the reader's split (no shuffle), a number
    sets it. Spark does not keep the input's row order: join on ``user_id`` (it is passed
    through) when order matters.
    """
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # started by spark-submit: its master rules
    if not submitted and (not master or master.startswith("local")):
        # Local executors start "python3" from PATH unless told: this interpreter has the libraries.
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder.appName("batch_score")
    if master and not submitted:
        builder = builder.master(master)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    # Partition keys (date=2026-10-01/) stay text, as the local engine reads them.
    spark.conf.set("spark.sql.sources.partitionColumnTypeInference.enabled", "false")
    frame = read_input(spark, str(input_path), model)
    batch_io.check_columns(frame.columns, model)
    count = partition_count(partitions, spark.sparkContext.defaultParallelism)
    if count:
        frame = frame.repartition(count)
    udf = mlflow.pyfunc.spark_udf(spark, str(model_path), env_manager="local",
                                  result_type=", ".join(f"`{c}` double" for c in model.outputs))
    scored = frame.withColumn(_OUT, udf(F.struct(*model_inputs(frame, model))))
    scored = scored.select(*[frame[c] for c in frame.columns], f"{_OUT}.*")
    scored.withColumn(VERSION_COLUMN, F.lit(version)).write.mode("overwrite").parquet(str(output_path))
    return spark.read.parquet(str(output_path)).count()  # from the files' footers


def partition_count(partitions: str, cores: int) -> int | None:
    """How many partitions to score in; None: as the input was read.

    A Parquet row group is never split between tasks, and pandas writes up to a million
    rows in one: without a shuffle, a day's file could be scored by one core.
    """
    text = str(partitions).strip().lower()
    if text == "auto":
        return cores
    if text == "input":
        return None
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise batch_io.BatchInputError(f"partitions must be auto, input or a positive number, not {partitions!r}")


def model_inputs(frame: DataFrame, model: ModelColumns) -> list:
    """The model's columns of ``frame``, as they are (the model's own validator reads integer
    and decimal events alike); other columns are not sent to the Python workers."""
    return [frame[f.name].alias(f.name) for f in frame.schema.fields if f.name in model.inputs]


def read_input(spark: SparkSession, path: str, model: ModelColumns) -> DataFrame:
    """Parquet as it is; a CSV with the same column types the local engine gives it."""
    if Path(path).suffix.lower() in batch_io.CSV_SUFFIXES:
        names = spark.read.option("header", True).csv(path).columns
        schema = from_arrow_schema(pa.schema(list(batch_io.csv_types(names, model).items())))
        # FAILFAST: a malformed number is an error, never a silent null.
        return spark.read.csv(path, header=True, schema=schema, mode="FAILFAST")
    # pandas writes nanosecond timestamps (install_date), which Spark refuses to read as
    # timestamps: read them as nanoseconds since the epoch, then turn them back into timestamps
    # (to the microsecond, Spark's precision). Only a local input's footers say which they are.
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    frame = spark.read.parquet(path)
    for name in nanosecond_timestamps(path):
        quoted = "`" + name.replace("`", "``") + "`"
        # Integer arithmetic: nanoseconds since 1970 are past a double's 2**53.
        frame = frame.withColumn(name, F.expr(f"timestamp_micros(({quoted} - pmod({quoted}, 1000)) div 1000)"))
    return frame


def nanosecond_timestamps(path: str) -> list[str]:
    """Columns of a local Parquet input stored as nanosecond timestamps (none for a remote one)."""
    if not Path(path).exists():
        return []
    schema = batch_io.read_schema(path, ModelColumns(inputs={}, required=(), outputs=()))
    return [f.name for f in schema if pa.types.is_timestamp(f.type) and f.type.unit == "ns"]
