"""The database's layout by numbered migrations, against a real PostgreSQL (a new database per test)."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path

import psycopg2
import pytest

from serving.db.connection import connect
from serving.db.schema import SchemaMismatch, latest_version, migrate, migrations

RELEASE1_SQL = (Path(__file__).resolve().parents[3] / "serving/db/migrations/0001_release1_log.sql").read_text()


def query(url: str, sql: str, params=()):
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall() if cursor.description else None
    connection.close()
    return rows


def run_migrate(url: str) -> list[int]:
    connection = connect(url)
    try:
        return migrate(connection)
    finally:
        connection.close()


def test_an_empty_database_gets_every_migration_once(fresh_database):
    assert run_migrate(fresh_database) == list(range(1, latest_version() + 1))
    assert run_migrate(fresh_database) == []
    assert query(fresh_database, "SELECT version FROM schema_migrations ORDER BY 1") == \
        [(m.version,) for m in migrations()]
    # The log is partitioned by day, and today's partition and the next two exist already.
    (kind,), = query(fresh_database, "SELECT relkind::text FROM pg_class WHERE relname = 'predictions'")
    assert kind == "p"
    today = datetime.now(timezone.utc).strftime("%Y%m%d")
    assert query(fresh_database, "SELECT to_regclass(%s) IS NOT NULL", (f"predictions_{today}",)) == [(True,)]


def test_release_1s_log_is_upgraded_in_place_with_every_row(fresh_database):
    query(fresh_database, RELEASE1_SQL)
    query(fresh_database, """
        INSERT INTO predictions (row_key, timestamp, request_id, user_index, route, status_code, country,
                                 predicted_revenue, input_data)
        VALUES ('r1:0', '2026-10-01T12:00:00Z', 'r1', 0, '/predict', 200, 'es', 1.5, '{"country": "es"}'),
               ('r2:0', '2026-11-02T08:00:00Z', 'r2', 0, '/batch_predict', 400, NULL, NULL, '{"body": "x"}'),
               ('r2:1', '2026-11-02T08:00:00Z', 'r2', 1, '/batch_predict', 400, 'pe', NULL, '{}')""")
    assert run_migrate(fresh_database) == list(range(2, latest_version() + 1))
    rows = query(fresh_database, """SELECT row_key, request_id, user_index, role, status_code, country,
                                           predicted_revenue, input_data, tableoid::regclass::text
                                    FROM predictions ORDER BY row_key""")
    assert rows == [
        ("r1:0", "r1", 0, "champion", 200, "es", 1.5, {"country": "es"}, "predictions_20261001"),
        ("r2:0", "r2", 0, "champion", 400, None, None, {"body": "x"}, "predictions_20261102"),
        ("r2:1", "r2", 1, "champion", 400, "pe", None, {}, "predictions_20261102"),
    ]
    assert query(fresh_database, "SELECT name FROM schema_migrations WHERE version = 1") == \
        [("release1_log (found in place)",)]
    assert query(fresh_database, "SELECT to_regclass('predictions_release1')") == [(None,)]


def test_a_migration_longer_than_the_connections_statement_timeout_completes(fresh_database):
    """The service migrates on a connection whose statements stop after seconds; an upgrade that
    copies a large log must not be cancelled (it would leave the service on the old layout)."""
    query(fresh_database, RELEASE1_SQL)
    query(fresh_database, """
        INSERT INTO predictions (row_key, timestamp, request_id, user_index, route, status_code, input_data)
        SELECT 'r' || i, TIMESTAMPTZ '2026-10-01T00:00Z' + i * INTERVAL '1 second', 'r' || i, 0, '/predict', 200,
               '{"country": "es"}'
        FROM generate_series(1, 100000) AS i""")
    connection = connect(fresh_database, statement_timeout_ms=20)
    try:
        assert migrate(connection) == list(range(2, latest_version() + 1))
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone() == ("20ms",)  # the connection's own limit is back for what follows
        connection.rollback()
    finally:
        connection.close()
    assert query(fresh_database, "SELECT count(*) FROM predictions") == [(100000,)]


def test_a_predictions_table_of_another_shape_is_refused_and_left_alone(fresh_database):
    query(fresh_database, "CREATE TABLE predictions (id serial, label text)")
    query(fresh_database, "INSERT INTO predictions (label) VALUES ('theirs')")
    with pytest.raises(SchemaMismatch, match="unexpected column label") as refused:
        run_migrate(fresh_database)
    assert "no column row_key" in str(refused.value)
    assert query(fresh_database, "SELECT label FROM predictions") == [("theirs",)]
    assert query(fresh_database, "SELECT to_regclass('schema_migrations')") == [(None,)]


def test_a_log_altered_by_hand_is_refused(fresh_database):
    run_migrate(fresh_database)
    query(fresh_database, "ALTER TABLE predictions DROP COLUMN event_3")
    with pytest.raises(SchemaMismatch, match="no column event_3"):
        run_migrate(fresh_database)


def test_a_newer_releases_layout_is_refused(fresh_database):
    run_migrate(fresh_database)
    query(fresh_database, "INSERT INTO schema_migrations (version, name) VALUES (%s, 'from the future')",
          (latest_version() + 1,))
    with pytest.raises(SchemaMismatch, match="newer than this release"):
        run_migrate(fresh_database)


def test_a_layout_whose_migration_of_one_number_is_another_is_refused(fresh_database):
    run_migrate(fresh_database)
    query(fresh_database, "UPDATE schema_migrations SET name = 'reserved' WHERE version = 3")
    with pytest.raises(SchemaMismatch, match="migration 3 is 'reserved'"):
        run_migrate(fresh_database)


def test_two_processes_starting_together_migrate_once(fresh_database):
    results, errors = [], []

    def start():
        try:
            results.append(run_migrate(fresh_database))
        except Exception as error:  # noqa: BLE001 - the assertion below shows it
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert sorted(map(len, results)) == [0, 0, latest_version()]


def test_no_right_to_create_is_an_error_not_a_silent_pass(fresh_database):
    query(fresh_database, "CREATE ROLE reader_only LOGIN")
    query(fresh_database, "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    url = fresh_database.replace("postgres:@", "reader_only:@", 1)
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        run_migrate(url)
    query(fresh_database, "DROP OWNED BY reader_only")
    query(fresh_database, "DROP ROLE reader_only")
    assert json.dumps(query(fresh_database, "SELECT to_regclass('predictions')")) == "[[null]]"
