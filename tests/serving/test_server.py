"""The service's start: a database it cannot log to stops it with the reason, before it takes a request."""

from __future__ import annotations

import psycopg2

from tests.serving.conftest import Service


def test_a_foreign_predictions_table_stops_the_start_with_the_reason(champion_store, fresh_database, tmp_path):
    with psycopg2.connect(fresh_database) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE predictions (id serial, label text)")
    connection.close()
    service = Service(tmp_path, champion_store, fresh_database).start(wait=False)
    try:
        status = service.process.wait(120)
    finally:
        service.stop()
    assert status != 0
    output = service.output()
    assert "cannot hold the prediction log" in output and "unexpected column label" in output
    assert "Traceback" not in output
