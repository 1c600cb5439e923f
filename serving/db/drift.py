"""GET /drift's counts, as SQL over the log's champion rows of one model version in a time window.

One scan of the window: per numeric column the rows in each bucket of
``width_bucket(x, edges)`` (the reference profile's edges; NULL: missing), per
categorical column the rows of each raw value as logged (NULL: missing). Raw
values are folded afterwards, in Python, by the model's own rules
(``revenue_model.drift.categorical_counts``): PostgreSQL cannot fold the way the
model does, and a window has few distinct raw values per column.

The rows counted are the users a model version answered: champion rows with
status 200 and a prediction (a rejected user's fields may be anything; a shadow's
row repeats its champion's user). The window is [since, until) on ``timestamp``,
so only the day partitions it touches are read.
"""

from __future__ import annotations

from datetime import datetime
from typing import Mapping

from revenue_model.drift import CATEGORICAL_INPUTS, NUMERIC_INPUTS, OUTPUTS

NUMERIC_COLUMNS = NUMERIC_INPUTS + OUTPUTS
# Every column's counts come out of one scan as (column, key, rows): a bucket number as text for
# numeric columns, the raw value for categorical ones.
_KEYS = ", ".join([f"('{c}', {c})" for c in CATEGORICAL_INPUTS]
                  + [f"('{c}', width_bucket({c}, %({c})s::double precision[])::text)" for c in NUMERIC_COLUMNS])
_COUNTS = f"""
    SELECT k.column_name, k.key, count(*)
    FROM predictions p
    CROSS JOIN LATERAL (VALUES {_KEYS}) AS k(column_name, key)
    WHERE p.timestamp >= %(since)s AND p.timestamp < %(until)s AND p.role = 'champion'
          AND p.model_version = %(version)s AND p.status_code = 200 AND p.predicted_revenue IS NOT NULL
    GROUP BY 1, 2"""


def window_counts(connection, *, model_version: str, since: datetime, until: datetime,
                  edges: Mapping[str, list[float]]) -> dict[str, dict]:
    """{column: {key: rows}} of the window: for numeric columns the key is the bucket (0..len(edges),
    None: missing), for categorical columns the raw value (None: missing). Every column of
    ``revenue_model.drift.COLUMNS`` is present (empty for an empty window)."""
    parameters = {"since": since, "until": until, "version": model_version,
                  **{c: [float(e) for e in edges[c]] for c in NUMERIC_COLUMNS}}
    counts: dict[str, dict] = {c: {} for c in CATEGORICAL_INPUTS + NUMERIC_COLUMNS}
    with connection.cursor() as cursor:
        cursor.execute(_COUNTS, parameters)
        for column, key, rows in cursor.fetchall():
            if column in NUMERIC_INPUTS or column in OUTPUTS:
                key = None if key is None else int(key)
            counts[column][key] = int(rows)
    connection.rollback()  # read only: end the transaction, keep no snapshot open
    return counts
