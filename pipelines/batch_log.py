"""batch_score's ``--log true``: the scored users into the prediction log, with ``route = batch_score``.

One run is one "request" (its users share a request id: the MLflow run's, and a fresh attempt id, so
a run repeated is logged again, as a retried request is). The rows are written by the service's own
write path (serving/db/log_rows.py, idempotent, partitions on demand), ``CHUNK_ROWS`` at a time from
the scored Parquet output, so /stats and /performance cover batch-scored users too. Each row holds
the user's input columns as the file gave them (``input_data``) and beside them the typed columns
as the service stores them (validated: stripped strings, float events).
Imported only when logging is asked for: batch_score's scoring processes never import it.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.dataset

from revenue_model.validation import validate_columns
from serving.db.connection import connect, start_embedded
from serving.db.log_rows import ROW_COLUMNS, TYPED_FIELDS, typed_fields, write_rows
from serving.db.partitions import Partitions
from serving.db.schema import migrate

ROUTE = "batch_score"
CHUNK_ROWS = 10_000
OUTPUTS = ("predicted_revenue", "payer_probability", "revenue_p10", "revenue_p90")


def log_scored(output_path: str | Path, model_name: str | None, model_version: str,
               request_id: str, *, database_url: str = "", pgdata_dir: Path = Path(".pgdata"),
               seconds: float | None = None) -> int:
    """Write every row of the scored output to the log; returns the rows written."""
    server = None
    if not database_url:
        server, database_url = start_embedded(pgdata_dir)
    connection = connect(database_url, statement_timeout_ms=0)
    try:
        migrate(connection)
        partitions = Partitions()
        attempt, moment, index = uuid.uuid4().hex, datetime.now(timezone.utc), 0
        per_user_ms = None if seconds is None else seconds * 1000
        dataset = pyarrow.dataset.dataset(str(output_path), format="parquet")
        inputs = [c for c in dataset.schema.names if c not in OUTPUTS + ("model_version",)]
        for batch in dataset.to_batches(batch_size=CHUNK_ROWS):
            given = batch.select(inputs)
            sent = given.to_pylist()
            # Typed as the service types them (stripped strings, float events), so a label for "u1"
            # finds a user the file spelled " u1"; the input as the file gave it stays in input_data.
            typed = typed_fields(validate_columns(given.to_pydict()))
            outputs = {c: [_number(v) for v in batch.column(c).to_pylist()] for c in OUTPUTS}
            rows = []
            for i, record in enumerate(sent):
                values = {c: typed[c][i] for c in TYPED_FIELDS}
                values.update({c: outputs[c][i] for c in OUTPUTS})
                values.update(row_key=f"{attempt}:{index}", timestamp=moment, request_id=request_id,
                              user_index=index, role="champion", route=ROUTE, status_code=200, error=None,
                              model_name=model_name, model_version=model_version,
                              inference_time_ms=None, latency_ms=per_user_ms if index == 0 else None,
                              input_data=record)
                rows.append(tuple(values[c] for c in ROW_COLUMNS))
                index += 1
            if rows:
                write_rows(connection, rows, partitions)
        return index
    finally:
        connection.close()
        del server  # an embedded server stops with this process


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
