"""/stats from the hourly rollup plus the log's tail, and the log's upkeep (partitions ahead,
retention), against a real PostgreSQL. Expected values are computed here from the rows written."""

import math
import random
import statistics
from datetime import datetime, timedelta, timezone

import psycopg2
import psycopg2.errors
import pytest

from serving.db import drift_cells, outcomes, stats_cells
from serving.db.log_rows import ROW_COLUMNS, write_rows
from serving.db.partitions import Partitions, drop_days_before
from serving.db.stats import prediction_stats
from serving.log_upkeep import partitions_pass

NOW = datetime.now(timezone.utc)


@pytest.fixture
def database(migrated_database):
    return migrated_database


def rows_of_request(rng, request, moment, users, *, status=200, route="/batch_predict", role="champion",
                    version="1"):
    latency = rng.uniform(1, 400)
    out = []
    for i in range(users):
        values = dict.fromkeys(ROW_COLUMNS)
        values.update(row_key=f"{request}:{i}", timestamp=moment, request_id=request, user_index=i, role=role,
                      user_id=f"u{request}-{i}", route=route, status_code=status, model_name="revenue_model",
                      model_version=version, country=rng.choice(["us", "US", "de", None, "fr"]),
                      platform=rng.choice(["iOS", "android", "web"]), source=rng.choice(["Organic", " organic", "ads"]),
                      latency_ms=latency, inference_time_ms=latency / 2, input_data={"k": i})
        if status == 200:
            values.update(predicted_revenue=rng.lognormvariate(-2, 2), payer_probability=rng.random())
        out.append(tuple(values[c] for c in ROW_COLUMNS))
    return out


def log(rng, hours_ago: list[float]) -> list[tuple]:
    rows = []
    for k, h in enumerate(hours_ago):
        moment = NOW - timedelta(hours=h)
        status = 400 if k % 7 == 3 else 200
        rows += rows_of_request(rng, f"r{h}-{k}", moment, rng.randint(1, 30), status=status,
                                route=["/predict", "/batch_predict", "/invocations"][k % 3], version=str(1 + k % 2))
        if k % 5 == 0:  # a shadow's rows are not answers: never counted
            rows += rows_of_request(rng, f"r{h}-{k}", moment, 3, role="shadow", version="9")
    return rows


def expected(rows, since):
    rows = [dict(zip(ROW_COLUMNS, r)) for r in rows]
    rows = [r for r in rows if r["role"] == "champion" and r["timestamp"] >= since]
    ok = [r for r in rows if r["status_code"] == 200]
    predicted = [r["predicted_revenue"] for r in rows if r["predicted_revenue"] is not None]
    latencies = sorted(r["latency_ms"] for r in rows if r["user_index"] == 0)
    countries = {}
    for r in ok:
        key = r["country"].upper() if r["country"] else None
        countries[key] = countries.get(key, 0) + 1
    return {
        "total_predictions": len(ok), "total_rows": len(rows),
        "total_requests": sum(r["user_index"] == 0 for r in rows),
        "total_predicted_revenue": math.fsum(predicted), "max_predicted_revenue": max(predicted),
        "last_prediction": max(r["timestamp"] for r in ok).isoformat(),
        "p50": statistics.quantiles(latencies, n=100, method="inclusive")[49],
        "countries": countries,
        "routes": {route: sum(r["route"] == route for r in rows) for route in {r["route"] for r in rows}},
        "errors_400": sum(r["user_index"] == 0 for r in rows if r["status_code"] == 400),
    }


def test_stats_from_the_rollup_and_the_tail_count_every_row_once(database):
    rng = random.Random(7)
    old = log(rng, [0.5 + 0.37 * k for k in range(40)])  # within the last 15 hours
    write_rows(database, old, Partitions())
    assert stats_cells.catch_up(database) == 0
    with database.cursor() as cursor:
        cursor.execute("SELECT count(*), sum(n) FILTER (WHERE dim = 'r') FROM stats_cells")
        cells, summed = cursor.fetchone()
    database.rollback()
    champion = sum(r[ROW_COLUMNS.index("role")] == "champion" for r in old)
    assert summed == champion and cells < len(old)  # the rows are in the rollup, summed
    # Rows written after the refresh (the tail), one of them old, as a replay brings it.
    new = log(rng, [0.1, 0.2, 13.9])
    write_rows(database, new, Partitions())
    for since in (NOW - timedelta(hours=20), NOW - timedelta(hours=7, minutes=13, seconds=5), NOW - timedelta(minutes=50)):
        want, got = expected(old + new, since), prediction_stats(database, since)
        assert got["total_predictions"] == want["total_predictions"]
        assert got["total_rows"] == want["total_rows"]
        assert got["total_requests"] == want["total_requests"]
        assert math.isclose(got["total_predicted_revenue"], want["total_predicted_revenue"], rel_tol=1e-12)
        assert got["max_predicted_revenue"] == want["max_predicted_revenue"]
        assert got["last_prediction"] == want["last_prediction"]
        assert math.isclose(got["latency_ms"]["p50"], want["p50"], rel_tol=0.005)  # the bins' resolution
        assert {c["country"]: c["predictions"] for c in got["top_countries"]} == want["countries"]
        assert {k: v["rows"] for k, v in got["by_route"].items()} == want["routes"]
        assert got["errors"].get("400", {"requests": 0})["requests"] == want["errors_400"]


def day_partition(connection, day):
    with connection.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (f"predictions_{day:%Y%m%d}",))
        (exists,) = cursor.fetchone()
    connection.rollback()
    return exists


def test_retention_drops_whole_old_days_and_their_rollup_hours_and_a_replay_still_lands(database):
    rng = random.Random(3)
    today = NOW.date()
    old, kept = log(rng, [24 * 5 + 1, 24 * 5 + 2]), log(rng, [24 + 1, 1])
    partitions = Partitions()
    write_rows(database, old + kept, partitions)
    stats_cells.catch_up(database)
    outcomes.catch_up(database)
    drift_cells.catch_up(database)
    dropped = drop_days_before(database, today - timedelta(days=3))
    assert f"predictions_{NOW - timedelta(hours=121):%Y%m%d}" in dropped
    assert all(name < f"predictions_{today - timedelta(days=3):%Y%m%d}" for name in dropped)
    assert not day_partition(database, (NOW - timedelta(hours=121)).date())
    assert day_partition(database, (NOW - timedelta(hours=25)).date())
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    assert prediction_stats(database, epoch)["total_rows"] == expected(kept, epoch)["total_rows"]
    # A replay of a dropped day's rows, by a writer that had made that day's partition: stored again.
    again = log(rng, [24 * 5 + 3])
    write_rows(database, again, partitions)
    assert prediction_stats(database, epoch)["total_rows"] == expected(kept + again, epoch)["total_rows"]


def test_retention_keeps_a_day_until_every_rollup_has_read_it(database):
    """/performance and /drift read the log into their rollups on their own schedules: a day dropped
    before such a read would lose its predictions from /performance for good, and /drift's cells
    would miss rows its feed believes it has not reached."""
    rng = random.Random(4)
    today = NOW.date()
    old = log(rng, [24 * 5 + 1])
    write_rows(database, old, Partitions())
    stats_cells.catch_up(database)                      # /stats has read it, /performance and /drift not yet
    assert drop_days_before(database, today - timedelta(days=3)) == []
    assert day_partition(database, (NOW - timedelta(hours=121)).date())
    outcomes.catch_up(database)                         # /drift still not
    assert drop_days_before(database, today - timedelta(days=3)) == []
    assert day_partition(database, (NOW - timedelta(hours=121)).date())
    drift_cells.catch_up(database)
    with database.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM drift_cells")
        assert cursor.fetchone()[0] > 0
    assert drop_days_before(database, today - timedelta(days=3)) == [f"predictions_{NOW - timedelta(hours=121):%Y%m%d}"]
    with database.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM prediction_outcomes")
        assert cursor.fetchone()[0] > 0                 # what was dropped is still in the rollup
        cursor.execute("SELECT count(*) FROM drift_cells")
        assert cursor.fetchone()[0] == 0                # the dropped day's drift hours went with it


@pytest.mark.parametrize("feed", ["outcome_feed", "stats_feed", "drift_feed"])
def test_retention_waits_for_a_refresh_in_progress(database, fresh_database, feed):
    """A refresh holds its feed's row while it reads partitions and rewrites cells: retention must
    not drop under it (a drift recount deleting an hour's cells, then reading its rows, deadlocked
    with a drop that then deleted those cells)."""
    rng = random.Random(5)
    today = NOW.date()
    write_rows(database, log(rng, [24 * 5 + 1]), Partitions())
    for rollup in (stats_cells, outcomes, drift_cells):
        rollup.catch_up(database)
    refresher = psycopg2.connect(fresh_database)
    try:
        with refresher.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {feed} WHERE id = 1 FOR UPDATE")
        with pytest.raises(psycopg2.errors.LockNotAvailable):
            drop_days_before(database, today - timedelta(days=3))
        assert day_partition(database, (NOW - timedelta(hours=121)).date())
    finally:
        refresher.close()
    assert drop_days_before(database, today - timedelta(days=3)) == [f"predictions_{NOW - timedelta(hours=121):%Y%m%d}"]


def test_the_upkeep_makes_partitions_ahead_without_a_row_written(database, fresh_database):
    ahead = NOW.date() + timedelta(days=2)
    with database.cursor() as cursor:
        cursor.execute(f"DROP TABLE predictions_{ahead:%Y%m%d}")
    database.commit()
    assert not day_partition(database, ahead)
    assert partitions_pass(fresh_database, 0) == []  # no retention: nothing dropped
    assert day_partition(database, ahead)
