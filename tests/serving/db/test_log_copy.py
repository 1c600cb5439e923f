"""A batch's first write by COPY stores exactly what the INSERT of one JSONB document stores.

Nasty rows are written by COPY (``fresh=True``) into one database and by the INSERT (independent
code: orjson's document parsed by PostgreSQL) into another; every column is read back as
PostgreSQL's text and compared. A few cases are also checked against literal expectations.
"""

import math
from datetime import datetime, timedelta, timezone

import psycopg2.extensions
import pytest

from serving.db.log_rows import ROW_COLUMNS, write_rows
from serving.db.partitions import Partitions
from serving.db.schema import migrate
from serving.db.connection import connect
from tests.conftest import new_database

NOW = datetime.now(timezone.utc).replace(microsecond=123456)
NASTY_TEXT = ["tab\there", "new\nline", "carriage\rreturn", "back\\slash", "\\N", "\\.", "", "a\x00b",
              "\\u0000 as text", "quote\"'", "comma,semi;", "null", "},{", "\u00e9\u4e2d\U0001f600", "\\\t\\n",
              " padded ", "\x01\x1f\x7f", "end\\"]
FLOATS = [0.1, 1 / 3, 1e16, 5e-324, 1.7976931348623157e308, -0.0, 2.5, 123456789.125, 1e-7, -1e300, 7]


def make_row(key, i, timestamp=NOW, **values):
    row = dict.fromkeys(ROW_COLUMNS)
    row.update(row_key=f"{key}:{i}", timestamp=timestamp, request_id=key, user_index=i, role="champion",
               user_id=f"u{i}", route="/batch_predict", status_code=200, model_name="revenue_model",
               model_version="3", country="us", inference_time_ms=12.5, latency_ms=30.25,
               input_data={"country": "us", "event_1": 1.5})
    row.update(values)
    return tuple(row[c] for c in ROW_COLUMNS)


def shared_nasty_batch():
    """Columns shared by all rows (encoded once) holding what needs escaping; inputs all dicts."""
    request = "req\t\n\r\\id"
    common = dict(request_id=request, error="line1\nline2\\ \x00", model_name="m\x00\tn", route="/p\\",
                  inference_time_ms=math.nan, latency_ms=0.1)
    inputs = [{"a": "x\ty\nz\\", "n": None}, {"nan": math.nan, "inf": -math.inf, "n": None},
              {"nested": [{"a": 1}, {"b": [math.nan]}]}, {}, {"s": "},{", "t": "null", "k\x00": "\x00"},
              {"big": 2**63 - 1, "neg": -(2**63)}, {"float": 0.1, "e": 1e16, "tiny": 5e-324},
              {"\\": "\\u0000", "q": "\""}, {"n": None, "text": "null null"}]
    return [make_row(request, i, input_data=data, **common) for i, data in enumerate(inputs)]


def varied_batch():
    """Every value different per row: text columns with each nasty string, None and ''; floats at
    their edges; distinct timestamps (offsets, no microseconds, the ISO text a spill file keeps);
    inputs that are not all dicts."""
    key = "varied"
    moments = [NOW, NOW + timedelta(seconds=1), datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=5, minutes=30))),
               (NOW - timedelta(days=1)).isoformat(), NOW.replace(microsecond=0)]
    inputs = [None, [1, math.nan, "x"], "just\ta string", 42, {"big": 10**30, "x": math.inf}, {"k": [None]},
              {"ok": 1}]
    rows = []
    for i, text in enumerate(NASTY_TEXT + [None, None]):
        number = FLOATS[i % len(FLOATS)]
        rows.append(make_row(key, i, timestamp=moments[i % len(moments)], user_id=text,
                             country=NASTY_TEXT[-1 - i % len(NASTY_TEXT)], country_region=None if i % 2 else text,
                             source=text, platform="", device_family=f"d{i}", os_version=text, error=text,
                             status_code=200 + i, event_1=number, event_2=None if i % 3 else math.nan,
                             event_3=-number, predicted_revenue=math.inf if i == 4 else number * 3,
                             payer_probability=i / 7, revenue_p10=float(i), revenue_p90=number,
                             inference_time_ms=i, latency_ms=number, input_data=inputs[i % len(inputs)]))
    return rows


def surrogate_batch():
    """Lone surrogates (a client's "\\ud800") anywhere: both ways keep their escape text."""
    key = "surrogates"
    return [make_row(key, 0, user_id="a\ud800b", input_data={"k\udfff": "v\ud800", "n": math.nan}),
            make_row(key, 1, country="\udc00\t", error="e\ud800\n", input_data={"ok": "fine\\"}),
            make_row(key, 2, input_data=None)]


def single_row_batch():
    return [make_row("single\tone", 0, error="\\", input_data={"x": math.nan})]


BATCHES = {"shared": shared_nasty_batch, "varied": varied_batch, "surrogates": surrogate_batch,
           "single": single_row_batch}


class CountingCursor(psycopg2.extensions.cursor):
    copies = 0

    def copy_expert(self, *args, **kwargs):
        CountingCursor.copies += 1
        return super().copy_expert(*args, **kwargs)


@pytest.fixture
def two_databases(postgres):
    connections = []
    for _ in range(2):
        connection = connect(new_database(postgres))
        migrate(connection)
        connections.append(connection)
    connections[0].cursor_factory = CountingCursor
    yield connections
    for connection in connections:
        connection.close()


def stored_text(connection):
    """Every row, every column as PostgreSQL's text (exact: floats in shortest exact form, jsonb
    normalized), by row_key."""
    columns = ", ".join(f"{c}::text" for c in ROW_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM predictions ORDER BY row_key")
        return {row[0]: row for row in cursor.fetchall()}


@pytest.mark.parametrize("batch", list(BATCHES))
def test_copy_stores_what_the_insert_stores(two_databases, batch):
    by_copy, by_insert = two_databases
    rows = BATCHES[batch]()
    before = CountingCursor.copies
    assert write_rows(by_copy, rows, Partitions(), fresh=True) == len(rows)
    assert CountingCursor.copies == before + 1, "not written by COPY"
    assert write_rows(by_insert, rows, Partitions()) == len(rows)
    copied, inserted = stored_text(by_copy), stored_text(by_insert)
    assert len(copied) == len(rows)
    for key, expected in inserted.items():
        for column, got, want in zip(ROW_COLUMNS, copied[key], expected):
            assert got == want, f"row {key!r}, column {column}"


def test_literal_values_of_the_nasty_cases(two_databases):
    by_copy, _ = two_databases
    write_rows(by_copy, shared_nasty_batch() + varied_batch() + surrogate_batch(), Partitions(), fresh=True)
    with by_copy.cursor() as cursor:
        cursor.execute("SELECT row_key, user_id, request_id, error, model_name, event_2, inference_time_ms, "
                       "latency_ms, input_data, event_1 FROM predictions")
        got = {row[0]: row[1:] for row in cursor.fetchall()}
    shared = got["req\t\n\r\\id:1"]
    assert shared[1:4] == ("req\t\n\r\\id", "line1\nline2\\ \\u0000", "m\\u0000\tn")
    assert shared[5] is None and shared[6] == 0.1  # NaN stored as NULL, 0.1 exact
    assert shared[7] == {"nan": "NaN", "inf": "-Infinity", "n": None}
    assert got["req\t\n\r\\id:2"][7] == {"nested": [{"a": 1}, {"b": ["NaN"]}]}
    assert got["req\t\n\r\\id:4"][7] == {"s": "},{", "t": "null", "k\\u0000": "\\u0000"}
    assert got["req\t\n\r\\id:7"][7] == {"\\": "\\u0000", "q": "\""}
    assert [got[f"varied:{i}"][0] for i in range(len(NASTY_TEXT) + 2)] == \
        [t.replace("\x00", "\\u0000") for t in NASTY_TEXT] + [None, None]
    assert got["varied:0"][7] is None and got["varied:4"][7] == {"big": 10**30, "x": "Infinity"}
    assert [got[f"varied:{i}"][8] for i in range(len(FLOATS))] == FLOATS
    assert got["surrogates:0"][0] == "a\\ud800b" and got["surrogates:0"][7] == {"k\\udfff": "v\\ud800", "n": "NaN"}


def test_copy_stores_non_ascii_text_right_in_a_database_of_another_encoding(postgres):
    """COPY sends UTF-8 bytes: the connection must say so, whatever the database's encoding."""
    connection = connect(new_database(postgres, "latin1", "ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' "
                                                           "TEMPLATE template0"))
    try:
        migrate(connection)
        write_rows(connection, [make_row("enc", 0, country="café", input_data={"country": "españa"})],
                   Partitions(), fresh=True)
        with connection.cursor() as cursor:
            cursor.execute("SELECT country, input_data->>'country' FROM predictions")
            assert cursor.fetchall() == [("café", "españa")]
    finally:
        connection.close()
