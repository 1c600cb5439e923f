"""The /drift rollup (migration 0006): the rows GET /drift counts, per UTC hour, model version,
column and key, kept current from the log by id (serving/db/feed.py) like the /stats rollup.

A numeric key is a bucket of the version's reference edges, so the refresher needs every version's
edges: ``register`` stores them (the service does, the first time it measures a version's drift,
with the profile its reference lookup found). A row of a version without stored edges is counted
in one ``UNBUCKETED`` cell of its hour only, and the reader takes that hour of that version from
the rows, until a later refresh recounts that hour with the edges (``BACKFILL_HOURS`` per
refresh): nothing depends on the edges arriving before the version's first rows.

``cells_sql`` is the same counting over any rows, so a reader adds the rows the rollup does not
answer (partial hours, unbucketed hours, the log's tail) in the cells' own shape.
"""

from __future__ import annotations

from typing import Mapping

from revenue_model.drift import CATEGORICAL_INPUTS, NUMERIC_INPUTS, OUTPUTS
from serving.db.feed import read_log_batch

NUMERIC_COLUMNS = NUMERIC_INPUTS + OUTPUTS
# Rows read per refresh transaction: seconds of work at most on a busy 2-core machine.
BATCH_ROWS = 200_000
UNBUCKETED = "(unbucketed)"
# The rows GET /drift counts: the users a model version answered (a rejected user's fields may be
# anything; a shadow's row repeats its champion's user).
COUNTED = "p.role = 'champion' AND p.status_code = 200 AND p.predicted_revenue IS NOT NULL"
HOUR = "date_bin('1 hour', p.timestamp, TIMESTAMPTZ '2000-01-01 00:00+00')"
# The stored edges of every version, as the refresher joins them.
STORED_EDGES = "drift_versions"
# One version's edges given as parameters, as a reader joins them.
GIVEN_EDGES = ("(SELECT %(version)s::text AS model_version, "
               + ", ".join(f"%({c})s::double precision[] AS {c}" for c in NUMERIC_COLUMNS) + ")")
# What a counted row contributes (not the whole row: input_data is large and not needed).
_COLUMNS = ", ".join(f"p.{c}" for c in ("model_version",) + CATEGORICAL_INPUTS + NUMERIC_COLUMNS)


def keys(edges_of=None) -> str:
    """A VALUES list of (column, key) of one row: the raw value of each categorical column, the
    ``width_bucket`` of each numeric one over ``edges_of(column)`` (an SQL expression), as text
    (``edges_of`` None: the numeric columns hold their buckets already)."""
    return ", ".join([f"('{c}', {c})" for c in CATEGORICAL_INPUTS]
                     + [f"('{c}', {c if edges_of is None else f'width_bucket({c}, {edges_of(c)})::text'})"
                        for c in NUMERIC_COLUMNS])


def cells_sql(wheres: list[str], edges: str = STORED_EDGES) -> str:
    """SELECT hour, model_version, column_name, key, n: the counted rows matching any of ``wheres``
    (conditions on predictions p; keep them disjoint: a row matching two counts twice), every column
    keyed for a version ``edges`` holds, only an UNBUCKETED count for the others."""
    picked = " UNION ALL ".join(f"SELECT {HOUR} AS hour, {_COLUMNS} FROM predictions p WHERE {COUNTED} AND ({w})"
                                for w in wheres)
    # Buckets before materialising: rows of a few text keys, not of five arrays of edges (2x faster).
    values = ", ".join([f"r.{c}" for c in CATEGORICAL_INPUTS]
                       + [f"width_bucket(r.{c}, v.{c})::text AS {c}" for c in NUMERIC_COLUMNS])
    return (f"WITH rows AS MATERIALIZED (SELECT r.hour, r.model_version, v.model_version IS NOT NULL AS bucketed, "
            f"{values} FROM ({picked}) AS r LEFT JOIN {edges} AS v ON v.model_version = r.model_version) "
            f"SELECT hour, model_version, k.column_name, k.key, count(*) AS n FROM rows "
            f"CROSS JOIN LATERAL (VALUES {keys()}) AS k(column_name, key) "
            f"WHERE bucketed GROUP BY 1, 2, 3, 4 "
            f"UNION ALL SELECT hour, model_version, '{UNBUCKETED}', NULL, count(*) FROM rows "
            f"WHERE NOT bucketed GROUP BY 1, 2")


_APPLY = ("INSERT INTO drift_cells AS c (hour, model_version, column_name, key, n) "
          + cells_sql(["p.id > %(after)s AND p.id <= %(through)s"])
          + " ON CONFLICT ON CONSTRAINT drift_cells_key DO UPDATE SET n = c.n + excluded.n")


# Hours of a version counted UNBUCKETED (rolled up before its edges were stored) recounted per
# refresh, newest first: about 0.1 s per hour at 330,000 rows a day.
BACKFILL_HOURS = 6
_UNBUCKETED = (f"SELECT c.hour, c.model_version FROM drift_cells c JOIN drift_versions v USING (model_version) "
               f"WHERE c.column_name = '{UNBUCKETED}' ORDER BY c.hour DESC LIMIT %(hours)s")
_RECOUNT = ("INSERT INTO drift_cells (hour, model_version, column_name, key, n) "
            + cells_sql(["p.model_version = %(version)s AND p.timestamp >= %(hour)s "
                         "AND p.timestamp < %(hour)s + interval '1 hour' AND p.id <= %(through)s"]))


def refresh(connection, *, batch_rows: int = BATCH_ROWS, backfill_hours: int = BACKFILL_HOURS) -> int | None:
    """Count up to ``batch_rows`` new log rows into drift_cells, recount up to ``backfill_hours``
    unbucketed hours of versions whose edges are stored now, and commit; the rows still pending.

    None when another refresher holds the feed for longer than LOCK_TIMEOUT. The versions whose
    edges are stored when the batch's statement starts are bucketed; the others are UNBUCKETED.
    """
    return read_log_batch(
        connection, "drift_feed", batch_rows,
        lambda cursor, after, through: cursor.execute(_APPLY, {"after": after, "through": through}),
        (lambda cursor, through: _backfill(cursor, through, backfill_hours)) if backfill_hours > 0 else None)


def _backfill(cursor, through: int, hours: int) -> None:
    """Replace every cell of an unbucketed (hour, version) by a recount of its rows the feed has read
    (ids up to ``through``, all of them in the hour's cells, bucketed or not): the hour is then
    answered from the cells. The feed row's lock keeps other refreshers out meanwhile."""
    cursor.execute(_UNBUCKETED, {"hours": hours})
    for hour, version in cursor.fetchall():
        cursor.execute("DELETE FROM drift_cells WHERE hour = %s AND model_version = %s", (hour, version))
        cursor.execute(_RECOUNT, {"version": version, "hour": hour, "through": through})


def catch_up(connection, *, batch_rows: int = BATCH_ROWS, backfill_hours: int = BACKFILL_HOURS,
             stop=None) -> int | None:
    """Refresh batch after batch until nothing is pending (or ``stop`` is set); rows still pending."""
    while True:
        pending = refresh(connection, batch_rows=batch_rows, backfill_hours=backfill_hours)
        if not pending or (stop is not None and stop.is_set()):
            return pending


def edge_parameters(version: str, edges: Mapping[str, list[float]]) -> dict:
    return {"version": version, **{c: [float(e) for e in edges[c]] for c in NUMERIC_COLUMNS}}


def stored_edges(cursor, version: str) -> dict[str, list[float]] | None:
    """The edges the rollup buckets ``version`` with (None: not registered)."""
    cursor.execute(f"SELECT {', '.join(NUMERIC_COLUMNS)} FROM drift_versions WHERE model_version = %s", (version,))
    found = cursor.fetchone()
    return None if found is None else {c: [float(e) for e in edges] for c, edges in zip(NUMERIC_COLUMNS, found)}


def register(connection, version: str, edges: Mapping[str, list[float]]) -> None:
    """Store ``version``'s reference edges for the refresher (the first stored stay) and commit."""
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO drift_versions (model_version, {', '.join(NUMERIC_COLUMNS)}) VALUES "
                       f"(%(version)s, {', '.join(f'%({c})s' for c in NUMERIC_COLUMNS)}) "
                       "ON CONFLICT (model_version) DO NOTHING", edge_parameters(version, edges))
    connection.commit()
