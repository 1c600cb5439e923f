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


# -- round 2: the writer never dies and never loses what it holds ---------------------------------

NASTY_INPUTS = [  # (input_data, country) -> what PostgreSQL keeps of each
    ({"event_1": math.nan, "event_2": math.inf}, "es"),
    ({"country": "a\x00b"}, "a\x00b"),
    ({"country": "x'); DROP TABLE predictions; --\t\n\\ \u00e9 \x01"}, "x'); DROP TABLE predictions; --"),
    ({"country": "a\ud800b", "big": 10**30, "nested": [math.nan, {"k\udfff": -math.inf}]}, "a\ud800b"),
]
NASTY_STORED = [
    ({"event_1": "NaN", "event_2": "Infinity"}, "es"),
    ({"country": "a\\u0000b"}, "a\\u0000b"),
    ({"country": "x'); DROP TABLE predictions; --\t\n\\ \u00e9 \x01"}, "x'); DROP TABLE predictions; --"),
    ({"country": "a\\ud800b", "big": 10**30, "nested": ["NaN", {"k\\udfff": "-Infinity"}]}, "a\\ud800b"),
]


@pytest.mark.parametrize("path", ["direct", "through the spill file"])
def test_what_can_be_json_is_stored_alike_directly_and_after_a_spill(schema, tmp_path, path):
    """A lone surrogate spilled while PostgreSQL was down once killed the writer thread."""
    request = uuid.uuid4().hex
    writer = LogWriter(schema if path == "direct" else UNREACHABLE, tmp_path, retry_s=0.1).start()
    writer.submit([row(request, i, data, country) for i, (data, country) in enumerate(NASTY_INPUTS)])
    if path != "direct":
        assert wait_until(lambda: writer.rows_spilled == 4, 15, 0.05), "not spilled"
        writer.submit([row(request, 4)])  # the thread still works after them
        assert wait_until(lambda: writer.rows_spilled == 5, 15, 0.05), "the writer stopped spilling"
        writer.database_url = schema
        assert wait_until(lambda: writer.spilled_rows_pending == 0, 15, 0.05), "not replayed"
    writer.stop()
    rows = stored(schema, request)
    assert [(r[2], r[1]) for r in rows[:4]] == NASTY_STORED
    assert not (tmp_path / "rejected.jsonl").exists()


def spill_rows(tmp_path, request, n, start=0, **data):
    """n rows of `request` written to the spill file by a writer that cannot reach the database."""
    writer = LogWriter(UNREACHABLE, tmp_path, max_rows=0)  # not started: every row goes to disk
    for first in range(start, start + n, 1000):
        writer.submit([row(request, i, {"country": "es", **data}) for i in range(first, min(first + 1000, start + n))])


def test_a_torn_or_damaged_spill_line_is_set_aside_and_the_rest_replayed(schema, tmp_path):
    request = uuid.uuid4().hex
    spill = tmp_path / "predictions.jsonl"
    spill_rows(tmp_path, request, 3)
    with spill.open("ab") as f:
        f.write(b"not json at all\n[1, 2]\n")
    spill_rows(tmp_path, request, 2, start=3)
    torn = spill.read_bytes().splitlines(keepends=True)[0][:40]
    with spill.open("ab") as f:  # a kill -9 in the middle of a write
        f.write(torn)
    spill_rows(tmp_path, request, 2, start=5)  # the next process appends after the torn line
    writer = LogWriter(schema, tmp_path).start()
    assert wait_until(lambda: len(stored(schema, request)) == 7, 15), stored(schema, request)
    writer.stop()
    assert [r[0] for r in stored(schema, request)] == list(range(7))
    assert writer.spilled_rows_pending == 0
    assert (tmp_path / "corrupt.jsonl").read_bytes() == b"not json at all\n[1, 2]\n" + torn + b"\n"


def test_replay_streams_the_spill_file_with_bounded_memory(schema, tmp_path):
    import tracemalloc

    request = uuid.uuid4().hex
    spill_rows(tmp_path, request, 20_000, note="x" * 1000)
    size_mb = (tmp_path / "predictions.jsonl").stat().st_size / 2**20
    assert size_mb > 20
    tracemalloc.start()
    try:
        writer = LogWriter(schema, tmp_path, batch_rows=1000).start()
        assert wait_until(lambda: writer.spilled_rows_pending == 0, 120, 0.5), "not replayed"
        writer.stop()
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    assert len(stored(schema, request)) == 20_000
    print(f"replayed a {size_mb:.0f} MB spill file with a Python memory peak of {peak_mb:.1f} MB")
    assert peak_mb < 12


def waiting_on_a_lock(url) -> bool:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND query LIKE 'INSERT INTO predictions%%'")
        (n,), = cursor.fetchall()
    connection.close()
    return n > 0


def test_a_replay_waiting_on_the_database_never_blocks_submit(schema, tmp_path):
    import threading
    import time

    request = uuid.uuid4().hex
    writer = LogWriter(schema, tmp_path, max_rows=10, batch_rows=100, linger_s=0.05, retry_s=0.2).start()
    writer.submit([row(request, 0)])
    assert wait_until(lambda: len(stored(schema, request)) == 1, 15)
    locker = psycopg2.connect(schema)
    locker.cursor().execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
    release = threading.Timer(8, locker.rollback)  # ends the test's wait even if submit blocks
    release.start()
    try:
        writer.submit([row(request, i) for i in range(1, 51)])  # over max_rows: to the spill file
        assert wait_until(lambda: waiting_on_a_lock(schema), 6, 0.1), "the replay did not start"
        started = time.monotonic()
        writer.submit([row(request, i) for i in range(51, 101)])  # spilled while the replay waits
        blocked_s = time.monotonic() - started
    finally:
        release.join()
        locker.close()
    assert wait_until(lambda: len(stored(schema, request)) == 101, 20)
    writer.stop()
    assert blocked_s < 1, f"submit waited {blocked_s:.1f} s for the replay"


class DiesInWrite(LogWriter):
    """A writer whose thread ends in the middle of a batch (SystemExit is not an Exception)."""

    deaths_left = 1_000_000

    def _write(self, rows, *, fresh=False):
        if self.deaths_left > 0:
            self.deaths_left -= 1
            raise SystemExit("the writer thread ends here")
        return super()._write(rows, fresh=fresh)


def test_stop_spills_what_it_holds_when_the_thread_is_dead(schema, tmp_path):
    request = uuid.uuid4().hex
    writer = DiesInWrite(schema, tmp_path, linger_s=0.05).start()
    writer.submit([row(request, i) for i in range(3)])
    assert wait_until(lambda: not writer._thread.is_alive(), 15, 0.05), "the thread did not end"
    writer.submit([row(request, i) for i in range(3, 5)])
    writer.stop()
    LogWriter(schema, tmp_path).start().stop()  # the next start replays what was spilled
    assert [r[0] for r in stored(schema, request)] == [0, 1, 2, 3, 4]


def test_a_dead_writer_thread_is_restarted_and_its_batch_written(schema, tmp_path):
    request = uuid.uuid4().hex
    writer = DiesInWrite(schema, tmp_path, linger_s=0.05)
    writer.deaths_left = 1
    writer.start()
    writer.submit([row(request, i) for i in range(3)])
    assert wait_until(lambda: len(stored(schema, request)) == 3, 15), "the batch was not written"
    assert writer.restarts == 1 and writer.alive
    writer.stop()


def test_an_error_in_a_cycle_is_retried_with_backoff_and_loses_nothing(schema, tmp_path):
    request = uuid.uuid4().hex
    blocked = tmp_path / "predictions.jsonl"
    blocked.mkdir()  # the spill file cannot be opened: IsADirectoryError on every attempt
    writer = LogWriter(UNREACHABLE, tmp_path, retry_s=0.05, max_backoff_s=0.4).start()
    writer.submit([row(request, i) for i in range(3)])
    assert wait_until(lambda: writer.errors >= 3, 15, 0.05), "no retries"
    assert writer.alive and writer.rows_spilled == 0
    blocked.rmdir()
    assert wait_until(lambda: writer.spilled_rows_pending == 3, 15, 0.05), "not spilled after the fix"
    writer.database_url = schema
    assert wait_until(lambda: writer.spilled_rows_pending == 0, 15, 0.05), "not replayed"
    writer.stop()
    assert [r[0] for r in stored(schema, request)] == [0, 1, 2]


@pytest.fixture
def own_database(postgres):
    """A database of its own, owned by a role of its own (not a superuser): (admin URL, role's URL)."""
    name = "t_" + uuid.uuid4().hex[:12]
    admin = psycopg2.connect(postgres)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {name} LOGIN")
        cursor.execute(f"CREATE DATABASE {name} OWNER {name}")
    base = postgres.split("@", 1)[1]  # /postgres?host=...
    admin_url = "postgresql://postgres:@" + base.replace("/postgres?", f"/{name}?", 1)
    role_url = f"postgresql://{name}:@" + base.replace("/postgres?", f"/{name}?", 1)
    connection = connect(role_url)
    migrate(connection)
    connection.close()
    yield name, admin_url, role_url
    with admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        cursor.execute(f"DROP ROLE IF EXISTS {name}")
    admin.close()


def count_stored(url, request_id) -> int:
    try:
        return len(stored(url, request_id))
    except psycopg2.errors.UndefinedTable:
        return 0


def as_admin(url, *statements):
    connection = psycopg2.connect(url)
    connection.autocommit = True
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    connection.close()


BREAK_AND_FIX = {  # how the whole log is refused, the SQLSTATE, and the person's fix
    "no INSERT right": ("REVOKE INSERT ON predictions FROM {role}", "42501",
                        "GRANT INSERT ON predictions TO {role}"),
    "a read-only database": ("ALTER DATABASE {role} SET default_transaction_read_only = on; "
                             "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE usename = '{role}'", "25006",
                             "SET default_transaction_read_only = off; "
                             "ALTER DATABASE {role} RESET default_transaction_read_only"),
    # 42P01 while connected, then the schema check's refusal (SchemaMismatch) at each reconnection.
    "a missing table": ("ALTER TABLE predictions RENAME TO predictions_away", None,
                        "ALTER TABLE predictions_away RENAME TO predictions"),
}


@pytest.mark.parametrize("fault", list(BREAK_AND_FIX))
def test_whole_database_errors_keep_rows_in_the_spill_file_and_raise_an_alarm(own_database, tmp_path, fault):
    role, admin_url, role_url = own_database
    breaks, sqlstate, fix = BREAK_AND_FIX[fault]
    request = uuid.uuid4().hex
    writer = LogWriter(role_url, tmp_path, retry_s=0.1, max_backoff_s=0.5, linger_s=0.05).start()
    writer.submit([row(request, 0)])
    assert wait_until(lambda: count_stored(admin_url, request) == 1, 15)
    as_admin(admin_url, *breaks.format(role=role).split("; "))
    writer.submit([row(request, i) for i in range(1, 4)])
    assert wait_until(lambda: writer.alarms > 0, 15, 0.05), "no alarm"
    assert wait_until(lambda: writer.spilled_rows_pending == 3, 15, 0.05), "rows not kept on disk"
    assert sqlstate is None or sqlstate in writer.alarm
    as_admin(admin_url, *fix.format(role=role).split("; "))
    assert wait_until(lambda: count_stored(admin_url, request) == 4, 20), "rows not written after the fix"
    assert wait_until(lambda: writer.alarm is None, 5, 0.05)
    writer.stop()
    assert not (tmp_path / "rejected.jsonl").exists()
    assert writer.spilled_rows_pending == 0


def test_a_row_postgresql_refuses_for_its_own_content_is_set_aside_alone(schema, tmp_path):
    request = uuid.uuid4().hex
    bad = list(row(request, 1))
    bad[ROW_COLUMNS.index("status_code")] = 10**12  # 22003 out of range for integer: the row's own fault
    writer = LogWriter(schema, tmp_path).start()
    writer.submit([row(request, 0), tuple(bad), row(request, 2)])
    writer.stop()
    assert [r[0] for r in stored(schema, request)] == [0, 2]
    assert str(10**12) in (tmp_path / "rejected.jsonl").read_text()
    assert writer.alarm is None


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


# -- issue 17: a batch's first write by COPY, anything that may be stored already by INSERT ------

# Counts the rows offered to the log by COPY and by anything else, even in a statement that fails
# (sequences are not rolled back): which way the writer stored a batch, seen from PostgreSQL.
COUNT_ROWS = """
    CREATE SEQUENCE rows_copied; CREATE SEQUENCE rows_inserted;
    CREATE FUNCTION count_row() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF current_query() LIKE 'COPY predictions%' THEN PERFORM nextval('rows_copied');
        ELSE PERFORM nextval('rows_inserted'); END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER count_row BEFORE INSERT ON predictions FOR EACH ROW EXECUTE FUNCTION count_row();
"""


@pytest.fixture
def counted(fresh_database):
    """A database of its own whose log counts the rows offered by COPY and by INSERT; its URL."""
    connection = connect(fresh_database)
    migrate(connection)
    with connection.cursor() as cursor:
        cursor.execute(COUNT_ROWS)
    connection.commit()
    connection.close()
    return fresh_database


def offered(url) -> tuple[int, int]:
    """(rows offered by COPY, by INSERT) so far."""
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM rows_copied), "
                       "(SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM rows_inserted)")
        counts = cursor.fetchone()
    connection.close()
    return counts


def test_a_batch_is_written_by_copy(counted, tmp_path):
    request = uuid.uuid4().hex
    writer = LogWriter(counted, tmp_path).start()
    writer.submit([row(request, i) for i in range(5)])
    writer.stop()
    assert [r[0] for r in stored(counted, request)] == [0, 1, 2, 3, 4]
    assert offered(counted) == (5, 0)


class LosesAnAcknowledgement(LogWriter):
    """The first batch's commit succeeds but the writer hears of an error (the acknowledgement lost)."""

    lost = False

    def _write(self, rows, *, fresh=False):
        written = super()._write(rows, fresh=fresh)
        if not self.lost:
            self.lost = True
            raise ConnectionResetError("the commit's acknowledgement was lost")
        return written


def test_a_batch_retried_after_an_error_is_inserted_not_copied_again(counted, tmp_path):
    request = uuid.uuid4().hex
    writer = LosesAnAcknowledgement(counted, tmp_path, retry_s=0.05).start()
    writer.submit([row(request, i) for i in range(5)])
    assert wait_until(lambda: writer.errors == 1 and writer._in_hand is None, 15, 0.05), "not retried"
    writer.stop()
    assert [r[0] for r in stored(counted, request)] == [0, 1, 2, 3, 4]
    assert offered(counted) == (5, 5)  # copied once; the retry skipped the 5 stored rows
    assert writer.rows_spilled == 0 and not (tmp_path / "rejected.jsonl").exists()


def test_a_batch_copy_refuses_is_inserted_whole_and_stored_once(counted, tmp_path):
    """COPY refuses a batch holding a row already stored (23505, a row's fault): the batch goes
    again by the INSERT, which skips that row, not row by row nor to the spill file."""
    request = uuid.uuid4().hex
    rows = [row(request, i) for i in range(5)]
    from serving.db.log_rows import write_rows
    from serving.db.partitions import Partitions

    connection = connect(counted)
    write_rows(connection, rows[2:3], Partitions())
    connection.close()
    writer = LogWriter(counted, tmp_path).start()
    writer.submit(rows)
    writer.stop()
    assert [r[0] for r in stored(counted, request)] == [0, 1, 2, 3, 4]
    copied, inserted = offered(counted)
    assert copied == 3 and inserted == 1 + 5  # COPY stopped at the stored row; one INSERT of the batch
    assert writer.rows_spilled == 0 and writer.alarm is None and not (tmp_path / "rejected.jsonl").exists()
