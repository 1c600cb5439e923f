"""The log writer against a real PostgreSQL: idempotent, poison-proof, spills and replays."""

import math
import uuid
from datetime import datetime, timezone

import psycopg2
import pytest

from serving.db.connection import connect
from serving.db.log_rows import ROW_COLUMNS
from serving.db.schema import migrate
from serving.log_writer import LogWriter
from tests.serving.conftest import wait_until

UNREACHABLE = "postgresql://postgres:@/postgres?host=/nonexistent-socket-dir"


def row(request_id: str, i: int = 0, input_data=None, country="es", timestamp=None):
    values = dict.fromkeys(ROW_COLUMNS)
    values.update(row_key=f"{request_id}:{i}", timestamp=timestamp or datetime.now(timezone.utc),
                  request_id=request_id, user_index=i, role="champion", route="/predict", status_code=200,
                  country=country, input_data=input_data if input_data is not None else {"country": country})
    return tuple(values[c] for c in ROW_COLUMNS)


def stored(url, request_id):
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT user_index, country, input_data FROM predictions WHERE request_id = %s "
                       "ORDER BY user_index", (request_id,))
        rows = cursor.fetchall()
    connection.close()
    return rows


@pytest.fixture
def schema(postgres):
    connection = connect(postgres)
    migrate(connection)
    connection.close()
    return postgres


def test_a_row_submitted_twice_is_stored_once(schema, tmp_path):
    request = uuid.uuid4().hex
    writer = LogWriter(schema, tmp_path).start()
    first, second = row(request, 0), row(request, 1)
    writer.submit([first, second])
    writer.submit([first])
    writer.stop()
    assert [r[0] for r in stored(schema, request)] == [0, 1]


def test_strings_are_stored_verbatim_and_nul_nan_surrogates_do_not_block_other_rows(schema, tmp_path):
    request = uuid.uuid4().hex
    nasty = "x'); DROP TABLE predictions; --\t\n\\ \u00e9 \x01"
    writer = LogWriter(schema, tmp_path).start()
    writer.submit([row(request, 0, {"event_1": math.nan, "event_2": math.inf}),
                   row(request, 1, {"country": "a\x00b"}, country="a\x00b"),
                   row(request, 2, {"country": nasty}, country=nasty),
                   row(request, 3),
                   row(request, 4, {"country": "a\ud800b", "big": 10**30}, country="a\ud800b")])
    writer.stop()
    rows = stored(schema, request)
    assert [r[0] for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0][2] == {"event_1": "NaN", "event_2": "Infinity"}
    assert rows[1][1] == "a\\u0000b" and rows[1][2] == {"country": "a\\u0000b"}
    assert rows[2][1] == nasty and rows[2][2] == {"country": nasty}
    # A lone surrogate (JSON "\ud800" from a client) is kept as its escape text, like NUL.
    assert rows[4][1] == "a\\ud800b" and rows[4][2] == {"country": "a\\ud800b", "big": 10**30}
    assert not (tmp_path / "rejected.jsonl").exists()


def test_rows_spill_while_the_database_is_down_and_are_replayed_once(schema, tmp_path):
    request = uuid.uuid4().hex
    writer = LogWriter(UNREACHABLE, tmp_path, retry_s=0.1).start()
    writer.submit([row(request, i) for i in range(5)])
    assert wait_until(lambda: writer.rows_spilled == 5, 15, 0.05), "timed out"
    assert writer.spilled_rows_pending == 5 and not writer.database_up
    writer.database_url = schema  # the database comes back
    assert wait_until(lambda: writer.spilled_rows_pending == 0, 15, 0.05), "timed out"
    writer.submit([row(request, 5)])
    writer.stop()
    assert [r[0] for r in stored(schema, request)] == [0, 1, 2, 3, 4, 5]


def test_memory_is_bounded_and_excess_rows_go_to_disk(schema, tmp_path):
    request = uuid.uuid4().hex
    writer = LogWriter(UNREACHABLE, tmp_path, max_rows=10, retry_s=0.1)  # not started: nothing drains
    writer.submit([row(request, i) for i in range(8)])
    writer.submit([row(request, i) for i in range(8, 25)])
    assert writer.queued_rows == 8 and writer.spilled_rows_pending == 17
    writer.database_url = schema
    writer.start().stop()
    assert len(stored(schema, request)) == 25


def test_stop_spills_what_it_cannot_write(tmp_path):
    writer = LogWriter(UNREACHABLE, tmp_path, retry_s=0.1).start()
    writer.submit([row(uuid.uuid4().hex, i) for i in range(3)])
    writer.stop()
    assert writer.spilled_rows_pending == 3


def test_rows_of_a_day_without_a_partition_get_one(schema, tmp_path):
    """Replayed rows can be days old: their day's partition is made on demand, not refused."""
    request = uuid.uuid4().hex
    long_ago = datetime(2019, 3, 4, 23, 59, 59, tzinfo=timezone.utc)
    writer = LogWriter(schema, tmp_path).start()
    writer.submit([row(request, 0, timestamp=long_ago), row(request, 1)])
    writer.stop()
    assert [r[0] for r in stored(schema, request)] == [0, 1]
    with psycopg2.connect(schema) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT tableoid::regclass::text FROM predictions WHERE request_id = %s AND user_index = 0",
                       (request,))
        assert cursor.fetchone() == ("predictions_20190304",)
    connection.close()
