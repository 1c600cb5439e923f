"""GET /drift's counts from the hourly rollup (drift_cells) plus the rows it does not answer,
against a real PostgreSQL: equal to the row scan and to counts computed here from the rows written."""

import bisect
import random
from collections import Counter
from datetime import datetime, timedelta, timezone

import psycopg2
import psycopg2.errors
import pytest

from revenue_model import drift as D
from serving.db import drift_cells
from serving.db.connection import connect
from serving.db.drift import scan_counts, window_counts
from serving.db.log_rows import ROW_COLUMNS, write_rows
from serving.db.partitions import Partitions

# Whole hours, so that the windows below start and end where the test says (partial or not).
NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
EDGES = {"1": {c: [0.5, 1.5, 2.5, 4.0] for c in D.NUMERIC_INPUTS} | {"predicted_revenue": [0.1, 1.0, 10.0],
                                                                      "payer_probability": [0.2, 0.5, 0.8]},
         "2": {c: [1.0, 3.0] for c in D.NUMERIC_INPUTS} | {"predicted_revenue": [0.5, 5.0],
                                                         "payer_probability": [0.1, 0.9]}}
COUNTRIES = ["US", "us ", "DE", None, "Atlantis"]          # a spelling variant, missing, unseen
SOURCES = ["Organic", "ads", "BrandNewNetwork", None]
OS_VERSIONS = ["15.0.2", "16.1", "unknown", None]


@pytest.fixture
def database(migrated_database):
    return migrated_database


def rows_at(rng, moment, n, *, version, status=200, role="champion", tag=""):
    out = []
    for i in range(n):
        values = dict.fromkeys(ROW_COLUMNS)
        key = f"{tag}{moment.timestamp()}-{version}-{i}"
        values.update(row_key=key, timestamp=moment + timedelta(seconds=i), request_id=key, user_index=0,
                      role=role, route="/predict", status_code=status, model_name="revenue_model",
                      model_version=version, country=rng.choice(COUNTRIES), country_region=rng.choice(["a", "b"]),
                      source=rng.choice(SOURCES), platform=rng.choice(["iOS", " ios", "android"]),
                      device_family=rng.choice(["phone", "tablet"]), os_version=rng.choice(OS_VERSIONS),
                      event_1=float(rng.randint(0, 5)), event_2=rng.choice([None, 0.5, 1.0, 2.75, 9.0]),
                      event_3=rng.uniform(0, 5), latency_ms=3.0, inference_time_ms=1.0)
        if status == 200:
            # Now and then an answer without a prediction: not counted, as the row scan does.
            values.update(predicted_revenue=None if rng.random() < 0.05 else rng.lognormvariate(0, 2),
                          payer_probability=rng.random())
        out.append(tuple(values[c] for c in ROW_COLUMNS))
    return out


def log(rng, hours_ago, *, tag=""):
    """Rows of both versions at the given hours, with rows never counted (errors, a shadow) among them."""
    rows = []
    for k, h in enumerate(hours_ago):
        moment = NOW - timedelta(hours=h)
        rows += rows_at(rng, moment, rng.randint(3, 12), version=str(1 + k % 2), tag=tag)
        rows += rows_at(rng, moment, 2, version="1", status=400, tag=tag + "e")
        rows += rows_at(rng, moment, 2, version="1", role="shadow", tag=tag)
    return rows


def expected(rows, version, since, until):
    """{column: {key: rows}} computed from the rows as written: width_bucket is bisect_right."""
    rows = [dict(zip(ROW_COLUMNS, r)) for r in rows]
    counted = [r for r in rows if r["role"] == "champion" and r["status_code"] == 200 and r["model_version"] == version
               and r["predicted_revenue"] is not None and since <= r["timestamp"] < until]
    out = {c: Counter(r[c] for r in counted) for c in D.CATEGORICAL_INPUTS}
    for c in D.NUMERIC_INPUTS + D.OUTPUTS:
        out[c] = Counter(None if r[c] is None else bisect.bisect_right(EDGES[version][c], r[c]) for r in counted)
    return {c: dict(v) for c, v in out.items()}


def cells_held(connection, version, column_name=None):
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(sum(n), 0) FROM drift_cells WHERE model_version = %s"
                       " AND (%s::text IS NULL OR column_name = %s)", (version, column_name, column_name))
        (n,) = cursor.fetchone()
    connection.rollback()
    return n


WINDOWS = [(NOW - timedelta(hours=30), NOW + timedelta(hours=1)),                       # everything
           (NOW - timedelta(hours=20, minutes=17), NOW - timedelta(hours=2, minutes=41)),  # partial both ends
           (NOW - timedelta(hours=9), NOW - timedelta(hours=3)),                          # whole hours only
           (NOW - timedelta(hours=5, minutes=50), NOW - timedelta(hours=5, minutes=10)),  # inside one hour
           (NOW - timedelta(hours=13, minutes=30), NOW + timedelta(minutes=5))]


def test_the_rollup_and_the_rows_it_lacks_count_exactly_what_the_row_scan_counts(database):
    rng = random.Random(5)
    first = log(rng, [h + rng.random() for h in range(24)])
    for h in range(5, 10):  # version 2 in consecutive hours too: its unbucketed hours form a run
        first += rows_at(rng, NOW - timedelta(hours=h, minutes=20), 4, version="2", tag="v2-")
    write_rows(database, first, Partitions())
    drift_cells.register(database, "1", EDGES["1"])       # version 2's edges are not known yet
    assert drift_cells.catch_up(database, batch_rows=97, backfill_hours=0) == 0
    assert cells_held(database, "2", drift_cells.UNBUCKETED) > 0 and cells_held(database, "1", "event_1") > 0
    # Version 2's first /drift stores its edges; rows rolled up after that are bucketed, the hours
    # rolled up before stay unbucketed (the hour 2 to 1 hours ago gets both kinds), some rows stay in the tail.
    window_counts(database, model_version="2", since=NOW - timedelta(hours=2), until=NOW, edges=EDGES["2"])
    second = log(rng, [3.5, 2.2, 1.5, 1.7, 0.3], tag="b")
    write_rows(database, second, Partitions())
    assert drift_cells.catch_up(database, backfill_hours=0) == 0   # the recount is the next test's
    assert cells_held(database, "2", "event_1") > 0
    tail = log(rng, [0.1, 6.6, 11.2], tag="c")              # not refreshed yet; two of them in old hours
    write_rows(database, tail, Partitions())
    rows = first + second + tail
    assert_every_window_exact(database, rows)
    everything = expected(rows, "1", NOW - timedelta(hours=30), NOW + timedelta(hours=1))
    # The cases above are really exercised: missing and unseen values, a variant spelling.
    assert everything["country"][None] > 0 and everything["country"]["Atlantis"] > 0
    assert everything["country"]["us "] > 0 and everything["event_2"][None] > 0


def assert_every_window_exact(database, rows):
    for since, until in WINDOWS:
        for version in ("1", "2"):
            window = {"model_version": version, "since": since, "until": until, "edges": EDGES[version]}
            want = expected(rows, version, since, until)
            assert window_counts(database, **window) == want, (version, since, until)
            assert scan_counts(database, **window) == want, (version, since, until)


def test_the_refresher_recounts_a_versions_unbucketed_hours_once_its_edges_are_stored(database):
    rng = random.Random(8)
    rows = log(rng, [h + rng.random() for h in range(16)])
    write_rows(database, rows, Partitions())
    drift_cells.catch_up(database)                       # no edges stored: every hour unbucketed
    unbucketed = cells_held(database, "1", drift_cells.UNBUCKETED) + cells_held(database, "2", drift_cells.UNBUCKETED)
    everything = (NOW - timedelta(hours=17), NOW)
    assert unbucketed == sum(sum(expected(rows, v, *everything)["event_3"].values()) for v in ("1", "2"))
    drift_cells.register(database, "1", EDGES["1"])
    drift_cells.register(database, "2", EDGES["2"])
    later = log(rng, [0.4, 2.6], tag="b")                 # new rows, bucketed, in hours being recounted
    write_rows(database, later, Partitions())
    drift_cells.refresh(database, backfill_hours=3)      # the 3 newest unbucketed hours
    assert cells_held(database, "1", drift_cells.UNBUCKETED) + cells_held(database, "2", drift_cells.UNBUCKETED) > 0
    assert_every_window_exact(database, rows + later)    # half recounted: still exact
    for _ in range(8):
        drift_cells.refresh(database, backfill_hours=3)
    assert cells_held(database, "1", drift_cells.UNBUCKETED) + cells_held(database, "2", drift_cells.UNBUCKETED) == 0
    assert cells_held(database, "2", "event_1") == sum(expected(rows + later, "2", *everything)["event_1"].values())
    assert_every_window_exact(database, rows + later)


def test_a_version_whose_rollup_edges_differ_is_counted_from_the_rows(database):
    rng = random.Random(6)
    rows = log(rng, [h + 0.5 for h in range(6)])
    write_rows(database, rows, Partitions())
    drift_cells.register(database, "1", EDGES["2"])       # bucketed with other edges than asked below
    drift_cells.catch_up(database)
    window = {"model_version": "1", "since": NOW - timedelta(hours=7), "until": NOW, "edges": EDGES["1"]}
    assert window_counts(database, **window) == expected(rows, "1", window["since"], window["until"])
    drift_cells.register(database, "1", EDGES["1"])       # the first edges stored stay
    assert drift_cells.stored_edges(database.cursor(), "1") == EDGES["2"]


def test_a_first_count_that_times_out_still_stores_the_versions_edges(database, fresh_database):
    """Otherwise every later count of that version scans its rows again, and times out again."""
    blocker = psycopg2.connect(fresh_database)
    counting = connect(fresh_database, statement_timeout_ms=500)
    try:
        with blocker.cursor() as cursor:
            cursor.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")  # the count cannot finish
        with pytest.raises(psycopg2.errors.QueryCanceled):
            window_counts(counting, model_version="1", since=NOW - timedelta(hours=24), until=NOW, edges=EDGES["1"])
    finally:
        blocker.close()
        counting.close()
    with database.cursor() as cursor:
        assert drift_cells.stored_edges(cursor, "1") is not None
    database.rollback()
