"""GET /drift's counts, as SQL over the log's champion rows of one model version in a time window.

Per numeric column the rows in each bucket of ``width_bucket(x, edges)`` (the reference profile's
edges; NULL: missing), per categorical column the rows of each raw value as logged (NULL:
missing). Raw values are folded afterwards, in Python, by the model's own rules
(``revenue_model.drift.categorical_counts``): PostgreSQL cannot fold the way the model does, and a
window has few distinct raw values per column.

The rows counted are serving/db/drift_cells.py's ``COUNTED``; the window is [since, until) on
``timestamp``. ``window_counts`` reads the hourly rollup (drift_cells) for the window's whole
hours and counts from the rows, in the rollup's own SQL, what the rollup cannot answer: the
partial hours at both ends, the hours whose rows of this version were rolled up before its edges
were stored, and the rows past the rollup's feed (any timestamp in the window: a replay can bring
old ones), all in one snapshot. When the rollup holds other edges for the version than the caller's
(a reference that changed), the whole window is counted from the rows (``scan_counts``).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Mapping

from revenue_model.drift import CATEGORICAL_INPUTS
from serving.db import drift_cells
from serving.db.drift_cells import COUNTED, GIVEN_EDGES, NUMERIC_COLUMNS, UNBUCKETED, cells_sql, edge_parameters

# The row scan, every column's counts out of one pass as (column, key, rows).
_SCAN = f"""
    SELECT k.column_name, k.key, count(*)
    FROM predictions p
    CROSS JOIN LATERAL (VALUES {drift_cells.keys(lambda c: f"%({c})s::double precision[]")}) AS k(column_name, key)
    WHERE p.timestamp >= %(since)s AND p.timestamp < %(until)s AND p.model_version = %(version)s AND {COUNTED}
    GROUP BY 1, 2"""
_IN_WINDOW = "p.model_version = %(version)s AND p.timestamp >= %(since)s AND p.timestamp < %(until)s"


def window_counts(connection, *, model_version: str, since: datetime, until: datetime,
                  edges: Mapping[str, list[float]]) -> dict[str, dict]:
    """{column: {key: rows}} of the window: for numeric columns the key is the bucket (0..len(edges),
    None: missing), for categorical columns the raw value (None: missing). Every column of
    ``revenue_model.drift.COLUMNS`` is present (empty for an empty window).

    Stores the version's edges for the rollup when it has none yet (the next refreshes bucket it)."""
    parameters = {**edge_parameters(model_version, edges), "since": since, "until": until}
    whole_from, whole_until = _ceil_hour(_utc(since)), _utc(until).replace(minute=0, second=0, microsecond=0)
    with connection.cursor() as cursor:
        known = drift_cells.stored_edges(cursor, model_version) is not None
    connection.rollback()
    if not known:  # before counting: a first count that times out must not leave the version unbucketed
        drift_cells.register(connection, model_version, edges)
    with connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # the feed and the cells agree
        stored = drift_cells.stored_edges(cursor, model_version)
        if stored != {c: parameters[c] for c in NUMERIC_COLUMNS} or whole_from >= whole_until:
            cursor.execute(_SCAN, parameters)
            rows = cursor.fetchall()
        else:
            cursor.execute("SELECT last_log_id FROM drift_feed WHERE id = 1")
            (mark,) = cursor.fetchone()
            cursor.execute("SELECT hour FROM drift_cells WHERE model_version = %s AND column_name = %s "
                           "AND hour >= %s AND hour < %s", (model_version, UNBUCKETED, whole_from, whole_until))
            unbucketed = sorted(hour for (hour,) in cursor.fetchall())
            cursor.execute(*_rollup_and_rows(parameters, mark, whole_from, whole_until, unbucketed))
            rows = cursor.fetchall()
    connection.rollback()  # read only: end the transaction, keep no snapshot open
    return _counts(rows)


def scan_counts(connection, *, model_version: str, since: datetime, until: datetime,
                edges: Mapping[str, list[float]]) -> dict[str, dict]:
    """``window_counts`` from the rows alone, in one scan of the window (what /drift did before the
    rollup; what it still does when the rollup cannot help): the reference the rollup is checked by."""
    with connection.cursor() as cursor:
        cursor.execute(_SCAN, {**edge_parameters(model_version, edges), "since": since, "until": until})
        rows = cursor.fetchall()
    connection.rollback()
    return _counts(rows)


def _counts(rows) -> dict[str, dict]:
    counts: dict[str, dict] = {c: {} for c in CATEGORICAL_INPUTS + NUMERIC_COLUMNS}
    for column, key, n in rows:
        if column in NUMERIC_COLUMNS:
            key = None if key is None else int(key)
        counts[column][key] = int(n)
    return counts


def _rollup_and_rows(parameters: dict, mark: int, whole_from: datetime, whole_until: datetime,
                     unbucketed: list[datetime]) -> tuple[str, dict]:
    """The SQL and parameters summing the cells of the whole hours the rollup answers and the
    counted rows of everything else in the window; each part of the rows is its own condition, so
    that PostgreSQL reads only those rows (the BRIN indexes on timestamp and id)."""
    parameters = {**parameters, "mark": mark, "whole_from": whole_from, "whole_until": whole_until,
                  "unbucketed": unbucketed}
    wheres = [f"{_IN_WINDOW} AND p.timestamp < %(whole_from)s AND p.id <= %(mark)s",
              f"{_IN_WINDOW} AND p.timestamp >= %(whole_until)s AND p.id <= %(mark)s",
              f"{_IN_WINDOW} AND p.id > %(mark)s"]
    for k, (start, end) in enumerate(_runs(unbucketed)):
        parameters[f"start_{k}"], parameters[f"end_{k}"] = start, end
        wheres.append(f"p.model_version = %(version)s AND p.timestamp >= %(start_{k})s "
                      f"AND p.timestamp < %(end_{k})s AND p.id <= %(mark)s")
    sql = ("SELECT column_name, key, sum(n) FROM ("
           "SELECT column_name, key, n FROM drift_cells WHERE model_version = %(version)s "
           "AND hour >= %(whole_from)s AND hour < %(whole_until)s AND hour <> ALL(%(unbucketed)s::timestamptz[]) "
           f"AND column_name <> '{UNBUCKETED}' "
           f"UNION ALL SELECT column_name, key, n FROM ({cells_sql(wheres, GIVEN_EDGES)}) AS rows) AS cells "
           "GROUP BY 1, 2")
    return sql, parameters


def _runs(hours: list[datetime]) -> list[tuple[datetime, datetime]]:
    """Sorted hours as [start, end) runs of consecutive hours: one condition per run, not per hour."""
    runs: list[tuple[datetime, datetime]] = []
    for hour in hours:
        if runs and runs[-1][1] == hour:
            runs[-1] = (runs[-1][0], hour + timedelta(hours=1))
        else:
            runs.append((hour, hour + timedelta(hours=1)))
    return runs


def _utc(moment: datetime) -> datetime:
    """The cells' hours are UTC hours: an offset of 30 minutes must not shift them."""
    return moment.astimezone(timezone.utc) if moment.tzinfo is not None else moment


def _ceil_hour(moment: datetime) -> datetime:
    hour = moment.replace(minute=0, second=0, microsecond=0)
    return hour if hour == moment else hour + timedelta(hours=1)
