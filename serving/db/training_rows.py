"""The log as training data: each user's latest successful champion prediction, with the label.

The inputs are the log's typed columns, i.e. what the service validated and scored (strings as
sent, stripped; numbers as numbers), never re-derived from input_data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterator

from revenue_model.contract import INPUT_COLUMNS

COLUMNS = INPUT_COLUMNS + ("revenue", "model_version", "predicted_at")
_SELECT = f"""
    SELECT DISTINCT ON (p.user_id) {', '.join('p.' + c for c in INPUT_COLUMNS)}, l.revenue, p.model_version,
           p.timestamp AS predicted_at
    FROM predictions p JOIN labels l ON l.user_id = p.user_id
    WHERE p.role = 'champion' AND p.status_code = 200 AND p.predicted_revenue IS NOT NULL
          AND p.timestamp >= %(since)s AND (%(until)s::timestamptz IS NULL OR p.timestamp < %(until)s)
    ORDER BY p.user_id, p.timestamp DESC, p.id DESC"""


def training_rows(connection, *, since: datetime, until: datetime | None,
                  batch_rows: int = 50_000) -> Iterator[list[tuple]]:
    """Batches of rows (COLUMNS order) from a server-side cursor: memory does not grow with the log."""
    with connection.cursor(name="training_rows") as cursor:
        cursor.itersize = batch_rows
        cursor.execute(_SELECT, {"since": since, "until": until})
        while batch := cursor.fetchmany(batch_rows):
            yield batch
    connection.rollback()
