"""Batch scoring's files: the input in bounded chunks, the scored rows streamed out (pyarrow only).

The input is a CSV file, a Parquet file or a folder of Parquet files (Spark's
output, hive partitions such as ``date=2026-10-01/`` included). Nothing here
holds more than one chunk of ``rows`` rows; the row order of the input is kept
(files of a folder in path order, as Spark numbers its part files).

From a CSV, the model's columns get the types the model's signature gives them
and every other column is passed through as text: a CSV carries no types, and
guessing them from the first block breaks on a column that is empty there.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq

CSV_SUFFIXES = (".csv", ".gz", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
VERSION_COLUMN = "model_version"
# Bytes pyarrow's CSV reader parses at a time (its default is 1 MB; bigger blocks parse faster).
_CSV_BLOCK_BYTES = 8 << 20
_ARROW_TYPES = {"string": pa.string(), "double": pa.float64(), "float": pa.float32(),
                "long": pa.int64(), "integer": pa.int32(), "boolean": pa.bool_()}


# The pyfunc's metadata says "number" where a signature says "double".
_METADATA_TYPES = {"number": "double"}


class BatchInputError(ValueError):
    """The input cannot be scored as it is; the message names the file, column or row."""


@dataclass(frozen=True)
class ModelColumns:
    """What the model's signature says it reads and returns."""
    inputs: dict[str, str]        # input column -> signature type name ("string", "double", ...)
    required: tuple[str, ...]
    outputs: tuple[str, ...]

    @classmethod
    def from_model(cls, model) -> "ModelColumns":
        """From an MLmodel: the pyfunc describes its inputs in metadata (it has no input schema,
        docs/model.md); a model with an input schema is read from its signature."""
        signature = model.signature
        if signature is None or signature.outputs is None:
            raise BatchInputError("the model has no signature: batch scoring needs its output columns")
        if signature.inputs is not None:
            specs = [{"name": s.name, "type": getattr(s.type, "name", str(s.type)), "required": s.required}
                     for s in signature.inputs.inputs]
        else:
            specs = (model.metadata or {}).get("inputs") or []
        if not specs:
            raise BatchInputError("the model describes no input columns (neither an input schema nor "
                                  "metadata 'inputs')")
        return cls(inputs={s["name"]: _METADATA_TYPES.get(s["type"], s["type"]) for s in specs},
                   required=tuple(s["name"] for s in specs if s["required"]),
                   outputs=tuple(signature.outputs.input_names()))


def input_kind(path: str | Path) -> str:
    """'csv', 'parquet' (one file) or 'folder' (of Parquet files)."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise BatchInputError(f"{path}: no such file or folder")
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    if suffix in CSV_SUFFIXES:
        return "csv"
    raise BatchInputError(f"{path}: expected a .csv or .parquet file or a folder of Parquet files")


def check_columns(names: Iterable[str], model: ModelColumns) -> None:
    """Refuse an input without a column the model requires, or with one the output adds."""
    names = set(names)
    missing = [c for c in model.required if c not in names]
    if missing:
        raise BatchInputError(f"the input has no {', '.join(missing)} column: the model requires "
                              f"{', '.join(model.required)}")
    clashing = [c for c in model.outputs + (VERSION_COLUMN,) if c in names]
    if clashing:
        raise BatchInputError(f"the input already has a {', '.join(clashing)} column, which the "
                              "output adds: drop or rename it")


def csv_types(names: Iterable[str], model: ModelColumns) -> dict[str, pa.DataType]:
    """Arrow types for a CSV's columns: the signature's for the model's, text for the others."""
    def arrow_type(name):
        kind = model.inputs.get(name)
        # Any other signature type (e.g. MLflow's AnyType for events) is read as the contract's number.
        return _ARROW_TYPES.get(kind, pa.float64()) if kind else pa.string()
    return {name: arrow_type(name) for name in names}


def read_schema(path: str | Path, model: ModelColumns) -> pa.Schema:
    """The input's columns and types, reading no more than a CSV's first block."""
    kind = input_kind(path)
    if kind == "parquet":
        return pq.read_schema(path)
    if kind == "folder":
        return _folder(path)[1]
    return _open_csv(path, model).schema


def count_rows(path: str | Path) -> int | None:
    """Rows in a Parquet input from its footers; None for a CSV (unknown without reading it)."""
    kind = input_kind(path)
    if kind == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    if kind == "folder":
        return sum(pq.ParquetFile(f.path).metadata.num_rows for f in _folder(path)[0])
    return None


def read_chunks(path: str | Path, model: ModelColumns, rows: int) -> Iterator[pa.RecordBatch]:
    """The input in order, as record batches of exactly ``rows`` rows (the last may be shorter)."""
    if rows < 1:
        raise BatchInputError(f"chunk_rows must be at least 1, not {rows}")
    kind = input_kind(path)
    if kind == "parquet":
        batches = pq.ParquetFile(path).iter_batches(batch_size=rows)
    elif kind == "folder":
        fragments, schema = _folder(path)
        batches = (b for f in fragments for b in f.to_batches(schema=schema, batch_size=rows))
    else:
        batches = _csv_batches(path, model)
    return rebatch(batches, rows)


def rebatch(batches: Iterable[pa.RecordBatch], rows: int) -> Iterator[pa.RecordBatch]:
    """Batches of exactly ``rows`` rows (the last one may be shorter), in order, none empty.

    Readers cut at their own boundaries (row groups, files, CSV blocks); a small
    file or row group would otherwise become a small, slow chunk.
    """
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        while batch.num_rows:
            take = min(rows - count, batch.num_rows)
            held.append(batch.slice(0, take))
            batch = batch.slice(take)
            count += take
            if count == rows:
                yield _combine(held)
                held, count = [], 0
    if count:
        yield _combine(held)


def scored_schema(schema: pa.Schema, model: ModelColumns) -> pa.Schema:
    """Every input column, then the model's outputs (float64), then ``model_version`` (text)."""
    extra = [pa.field(c, pa.float64()) for c in model.outputs] + [pa.field(VERSION_COLUMN, pa.string())]
    # Without the input's metadata: pandas' there describes the input's columns, not these.
    return pa.schema(list(schema.remove_metadata()) + extra)


def scored_batch(batch: pa.RecordBatch, outputs: np.ndarray, schema: pa.Schema,
                 version: str) -> pa.RecordBatch:
    """``batch`` with the outputs block (rows x outputs) and the version appended as columns."""
    n = batch.num_rows
    if outputs.shape[0] != n:
        raise RuntimeError(f"the model returned {outputs.shape[0]} rows for {n}")
    columns = list(batch.columns) + [pa.array(outputs[:, j]) for j in range(outputs.shape[1])]
    # One dictionary entry repeated: no string built per row.
    columns.append(pa.DictionaryArray.from_arrays(np.zeros(n, np.int32), [version]).cast(pa.string()))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


class AtomicParquetWriter:
    """A Parquet file that appears at ``path`` only once complete (a failed run leaves none)."""

    def __init__(self, path: str | Path, schema: pa.Schema):
        self.path = Path(path)
        if self.path.is_dir():
            raise BatchInputError(f"{self.path} is a folder: the output is one Parquet file")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".partial", dir=self.path.parent)
        os.close(fd)
        self._temp = Path(temp)
        # mkstemp makes the file private (0600); the output is an ordinary file, readable as usual.
        umask = os.umask(0)
        os.umask(umask)
        self._temp.chmod(0o666 & ~umask)
        self._writer = pq.ParquetWriter(self._temp, schema)

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def __enter__(self) -> "AtomicParquetWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self._writer.close()
        if exc_type is None:
            os.replace(self._temp, self.path)
        else:
            self._temp.unlink(missing_ok=True)


def _combine(batches: list[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    return pa.Table.from_batches(batches).combine_chunks().to_batches()[0]


def _folder(path) -> tuple[list, pa.Schema]:
    """The folder's Parquet files in path order, and one schema for all of them."""
    try:
        found = ds.dataset(path, format="parquet", partitioning="hive")
    except pa.ArrowInvalid as exc:  # e.g. a file in it that is not Parquet
        raise BatchInputError(f"{path}: {exc}") from None
    fragments = sorted(found.get_fragments(), key=lambda f: f.path)
    if not fragments:
        raise BatchInputError(f"{path}: the folder holds no Parquet files")
    # Partition keys (date=2026-10-01/) are text, as the spark engine reads them: a key's type
    # guessed from its values would differ between the two readers.
    files = {n for f in fragments for n in f.physical_schema.names}
    keys = pa.schema([(n, pa.string()) for n in found.schema.names if n not in files])
    dataset = ds.dataset(path, format="parquet", partitioning=ds.partitioning(keys, flavor="hive"))
    fragments = sorted(dataset.get_fragments(), key=lambda f: f.path)
    # A column that is whole numbers in one file and decimals in another is read as decimals.
    schema = pa.unify_schemas([f.physical_schema for f in fragments] + [keys],
                              promote_options="permissive")
    return fragments, schema


def _open_csv(path, model: ModelColumns) -> pcsv.CSVStreamingReader:
    names: list[str] = []
    try:
        # The header first: the types depend on the column names.
        names = pcsv.open_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 16)).schema.names
        return pcsv.open_csv(
            path, read_options=pcsv.ReadOptions(block_size=_CSV_BLOCK_BYTES),
            # Only an empty field is missing: "NA" is a region and "null" a device name.
            convert_options=pcsv.ConvertOptions(column_types=csv_types(names, model), null_values=[""],
                                                strings_can_be_null=True))
    except pa.ArrowInvalid as exc:  # a bad number in the first block, an empty file
        raise BatchInputError(f"{path}: {_name_csv_column(str(exc), names)}") from None


def _csv_batches(path, model: ModelColumns) -> Iterator[pa.RecordBatch]:
    reader = _open_csv(path, model)
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as exc:
            raise BatchInputError(f"{path}: {_name_csv_column(str(exc), reader.schema.names)}") from None
        yield batch


def _name_csv_column(message: str, names: list[str]) -> str:
    """pyarrow says "In CSV column #7: ..."; say which column that is."""
    found = re.search(r"CSV column #(\d+)", message)
    if found and int(found[1]) < len(names):
        return f"column {names[int(found[1])]}: {message}"
    return message
