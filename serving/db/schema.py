"""The database's layout, by numbered migrations recorded in ``schema_migrations``.

``migrate(connection)`` brings any database to this release's layout: an empty one from
scratch, one that holds release 1's ``predictions`` table in place (recorded as version 1,
then upgraded), one already current untouched. Each migration runs in one transaction with
its record, under an advisory lock, so two processes starting together apply it once, and without
the connection's statement timeout (a migration takes as long as the log it rewrites).

What it refuses, with a ``SchemaMismatch`` that names the difference: a ``predictions``
table of a shape no release made (someone else's table, or one altered by hand), and a
database migrated by a newer release. Both would otherwise look like rows the database
refuses, and rows are never to be lost that way.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

from serving.db.log_rows import ROW_COLUMNS

_LOCK = "revenue_service_migrations"

# Release 1's predictions table, to recognise a database to upgrade in place.
_RELEASE1_COLUMNS = {
    "id": "bigint", "row_key": "text", "timestamp": "timestamp with time zone", "request_id": "text",
    "user_index": "integer", "user_id": "text", "route": "text", "status_code": "integer", "error": "text",
    "model_name": "text", "model_version": "text", "country": "text", "country_region": "text", "source": "text",
    "platform": "text", "device_family": "text", "os_version": "text",
    **dict.fromkeys(("event_1", "event_2", "event_3", "predicted_revenue", "payer_probability", "revenue_p10",
                     "revenue_p90", "inference_time_ms", "latency_ms"), "double precision"),
    "input_data": "jsonb",
}
# The log as this release writes it.
_LOG_COLUMNS = {**_RELEASE1_COLUMNS, "role": "text"}


class SchemaMismatch(RuntimeError):
    """The database holds a layout this release cannot use or upgrade; nothing was changed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration of this release, in order (files ``NNNN_name.sql`` beside this module)."""
    found = []
    for entry in resources.files("serving.db.migrations").iterdir():
        stem, _, suffix = entry.name.rpartition(".")
        if suffix == "sql" and stem[:4].isdigit():
            found.append(Migration(int(stem[:4]), stem[5:], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 1..n without gaps: {[m.version for m in found]}")
    return found


def latest_version() -> int:
    return migrations()[-1].version


def migrate(connection) -> list[int]:
    """Apply the migrations this database lacks; returns their versions (empty when current).

    Raises ``SchemaMismatch`` (nothing changed) or psycopg2's errors (no right to create, the
    database down: the caller decides whether that is fatal).
    """
    applied_now = []
    try:
        with connection.cursor() as cursor:
            # A migration copies or rebuilds tables that grow with the log: minutes at tens of millions
            # of rows. Cancelled by the connection's statement timeout, it would leave the service on
            # the old layout; waiting for another process's migration is as long.
            cursor.execute("SET LOCAL statement_timeout = 0")
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_LOCK,))
            applied = _applied_versions(cursor)
            known = migrations()
            if applied and max(applied) > known[-1].version:
                raise SchemaMismatch(
                    f"the database's layout is version {max(applied)}, newer than this release's "
                    f"{known[-1].version}: run the newer release, or point DATABASE_URL at another database")
            for migration in known:
                if migration.version in applied:
                    # One number, two migrations (a development build's): what this layout lacks is unknown.
                    if not applied[migration.version].startswith(migration.name):
                        raise SchemaMismatch(
                            f"the database's migration {migration.version} is '{applied[migration.version]}', "
                            f"this release's is '{migration.name}': the layout was made by another build; "
                            "point DATABASE_URL at another database")
                    continue
                cursor.execute(migration.sql)
                cursor.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                               (migration.version, migration.name))
                applied_now.append(migration.version)
            _check_log_shape(cursor)
        connection.commit()
    except BaseException:
        connection.rollback()
        raise
    return applied_now


def _applied_versions(cursor) -> dict[int, str]:
    cursor.execute("SELECT to_regclass('schema_migrations') IS NOT NULL, to_regclass('predictions') IS NOT NULL")
    has_migrations, has_log = cursor.fetchone()
    if has_migrations:
        cursor.execute("SELECT version, name FROM schema_migrations")
        return dict(cursor.fetchall())
    cursor.execute("""CREATE TABLE schema_migrations (
                          version    INTEGER PRIMARY KEY,
                          name       TEXT NOT NULL,
                          applied_at TIMESTAMPTZ NOT NULL DEFAULT now())""")
    if not has_log:
        return {}
    difference = _difference(_columns(cursor), _RELEASE1_COLUMNS)
    if difference:
        raise SchemaMismatch("a table named predictions exists but is not a prediction log of any release "
                             f"({difference}); nothing was changed: point DATABASE_URL at another database "
                             "or rename that table")
    cursor.execute("INSERT INTO schema_migrations (version, name) VALUES (1, 'release1_log (found in place)')")
    return {1: "release1_log (found in place)"}


def _check_log_shape(cursor) -> None:
    """The log has every column this release writes, of the right type (an altered table is refused)."""
    wanted = {c: _LOG_COLUMNS[c] for c in ("id",) + ROW_COLUMNS}
    columns = _columns(cursor)
    wrong = {c: t for c, t in wanted.items() if columns.get(c) != t}
    if wrong:
        raise SchemaMismatch("the predictions table lacks columns this release writes, or has them with other "
                             f"types ({_difference(columns, wrong, only_missing=True)}); nothing was changed")


def _columns(cursor) -> dict[str, str]:
    cursor.execute("""SELECT column_name, data_type FROM information_schema.columns
                      WHERE table_schema = current_schema() AND table_name = 'predictions'""")
    return dict(cursor.fetchall())


def _difference(actual: dict[str, str], expected: dict[str, str], *, only_missing: bool = False) -> str:
    parts = [f"{c} should be {t}, is {actual[c]}" for c, t in expected.items() if c in actual and actual[c] != t]
    parts += [f"no column {c}" for c in expected if c not in actual]
    if not only_missing:
        parts += [f"unexpected column {c}" for c in actual if c not in expected]
    return "; ".join(parts)
