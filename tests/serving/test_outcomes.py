"""Realised performance in PostgreSQL: the outcomes rollup and the day cells against metrics
computed independently here (NumPy, from the rows this test wrote), on a real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone

import numpy as np
import psycopg2
import psycopg2.errors
import pytest

from serving.db import feed, outcomes, schema
from serving.db.connection import connect
from serving.db.labels import upsert_labels
from serving.db.log_rows import ROW_COLUMNS, write_rows
from serving.db.partitions import Partitions
from serving.db.performance import CELL_DIMS, performance_rows, rows_sql
from serving.performance import STATS, performance_groups

NOW = datetime.now(timezone.utc)
TODAY = NOW.date()
MIDNIGHT = datetime.combine(TODAY, datetime.min.time(), tzinfo=timezone.utc)


def log_row(user_id, version, moment, prediction, *, status=200, role="champion", route="/predict",
            country="PE", platform="iOS", source="Organic") -> tuple:
    values = {c: None for c in ROW_COLUMNS}
    values.update({"row_key": f"{uuid.uuid4().hex}:0", "timestamp": moment, "request_id": uuid.uuid4().hex,
                   "user_index": 0, "role": role, "user_id": user_id, "route": route, "status_code": status,
                   "model_name": "revenue_model", "model_version": version, "country": country,
                   "platform": platform, "source": source, "event_1": 1.0, "event_2": 1.0,
                   "input_data": {"user_id": user_id}})
    if status == 200:
        values.update(prediction)
    return tuple(values[c] for c in ROW_COLUMNS)


def prediction(rng) -> dict:
    p = float(rng.uniform(0.01, 0.4))
    mean = float(p * rng.lognormal(1.5, 1.0))
    return {"predicted_revenue": mean, "payer_probability": p, "revenue_p10": 0.0,
            "revenue_p90": float(mean * rng.uniform(1, 6))}


@pytest.fixture
def database(migrated_database):
    return migrated_database


def write(connection, rows):
    write_rows(connection, rows, Partitions())


def store_labels(connection, labels: dict, source="test"):
    upsert_labels(connection, list(labels), list(labels.values()), [None] * len(labels), source)
    connection.commit()


# -- an independent reference: per-user metrics by sorting, written here ---------------------------

def tie_averaged_gini(y, score):
    order = np.argsort(-score, kind="stable")
    s, t = score[order], y[order].astype(float)
    for value in np.unique(s):
        tied = s == value
        t[tied] = t[tied].mean()
    return 2 * np.mean(np.cumsum(t) / y.sum()) - 1


def reference(users: list[dict]) -> dict:
    y = np.array([u["revenue"] for u in users])
    pred = np.array([u["predicted_revenue"] for u in users])
    prob = np.array([u["payer_probability"] for u in users])
    payer = y > 0
    pos, neg = prob[payer], prob[~payer]
    auc = (np.sum(pos[:, None] > neg[None, :]) + 0.5 * np.sum(pos[:, None] == neg[None, :])) / (len(pos) * len(neg))
    return {"n": len(users), "total_ratio": pred.sum() / y.sum(), "mae": np.mean(np.abs(pred - y)),
            "rmse": np.sqrt(np.mean((pred - y) ** 2)), "brier": np.mean((prob - payer) ** 2),
            "p90_coverage": np.mean(y <= np.array([u["revenue_p90"] for u in users])),
            "p10_below": np.mean(y < np.array([u["revenue_p10"] for u in users])),
            "norm_gini": tie_averaged_gini(y, pred) / tie_averaged_gini(y, y), "payer_auc": auc}


def assert_matches(metrics: dict, expected: dict):
    for name in ("total_ratio", "mae", "rmse", "brier", "p90_coverage", "p10_below"):  # sums: exact
        assert metrics[name] == pytest.approx(expected[name], rel=1e-9), name
    # 2% bins: the error shrinks as 1/sqrt(users) (measured at most 0.0046 for 200 of them).
    tolerance = 0.08 / np.sqrt(expected["n"])
    assert metrics["norm_gini"] == pytest.approx(expected["norm_gini"], abs=tolerance)
    assert metrics["payer_auc"] == pytest.approx(expected["payer_auc"], abs=tolerance)
    assert sum(d["n"] for d in metrics["deciles"]) == expected["n"]


@pytest.fixture
def story(database):
    return write_story(database)


def write_story(database):
    """3,000 users over three days (two versions), some predicted twice, some failed or anonymous,
    70% labelled (one label replaced); the expected matched users, computed from what was written."""
    rng = np.random.default_rng(11)
    rows, served = [], []
    for i in range(3000):
        user = f"perf-{i}"
        day = i % 3  # 2 days ago, yesterday, today
        moment = MIDNIGHT - timedelta(days=2 - day) + timedelta(seconds=int(rng.integers(0, 3600 * 6)))
        for version in ("1", "2") if i % 2 == 0 else ("1",):
            out = prediction(rng)
            country = ["PE", "pe", "ES", "us"][i % 4]
            platform = ["iOS", "ios ", "Android", "android"][i % 4]
            rows.append(log_row(user, version, moment, out, country=country, platform=platform))
            served.append({"user_id": user, "version": version, "timestamp": moment, "country": country,
                           "platform": platform, **out})
            if i % 10 == 0:  # predicted again later the same day: the later one counts
                later = prediction(rng)
                rows.append(log_row(user, version, moment + timedelta(minutes=30), later, country=country,
                                    platform=platform))
                served.append({"user_id": user, "version": version, "timestamp": moment + timedelta(minutes=30),
                               "country": country, "platform": platform, **later})
    rows.append(log_row("perf-0", "1", MIDNIGHT - timedelta(hours=1), {}, status=400))  # failed: never counts
    rows += [log_row(None, "1", MIDNIGHT - timedelta(days=1), prediction(rng)) for _ in range(50)]  # anonymous
    write(database, rows)
    first = {}
    for row in served:
        first.setdefault(row["user_id"], row)
    # Revenue drawn from the first prediction's distribution (payer with its probability).
    labels = {u: float(r["predicted_revenue"] / r["payer_probability"] * rng.lognormal(-0.125, 0.5))
              if rng.random() < r["payer_probability"] else 0.0
              for u, r in first.items() if rng.random() < 0.7}
    store_labels(database, labels)
    labels["perf-1"] = 55.0  # replaced by a later label
    store_labels(database, {"perf-1": 55.0})
    latest = {}
    for row in served:
        key = (row["user_id"], row["version"])
        if key not in latest or row["timestamp"] > latest[key]["timestamp"]:
            latest[key] = row
    matched = [{**row, "revenue": labels.get(row["user_id"])} for row in latest.values()]
    return database, matched


def built_spans(connection) -> list:
    return sorted(outcomes.build_spans(connection, today=TODAY, max_spans=100))


def expected_spans() -> list:
    """The two days before today, then the aligned 2-day spans both halves of which are built or
    hold no rows (days before the first row)."""
    days = [TODAY - timedelta(days=2), TODAY - timedelta(days=1)]
    number = lambda d: (d - date(1970, 1, 1)).days  # noqa: E731
    spans = [(d, 1) for d in days]
    length = 2
    while length <= 512:
        for start in {number(d) // length * length for d in days}:
            if start + length <= number(TODAY):
                spans.append((date(1970, 1, 1) + timedelta(days=start), length))
        length *= 2
    return sorted(spans)


def expected_groups(matched, keep=lambda u: True, key=lambda u: None):
    out = {}
    for user in matched:
        if keep(user):
            out.setdefault((user["version"], key(user)), []).append(user)
    return out


def check(groups, expected):
    assert {(g["model_version"], g["value"]) for g in groups} == set(expected)
    for group in groups:
        users = expected[(group["model_version"], group["value"])]
        labelled = [u for u in users if u["revenue"] is not None]
        assert (group["n_predicted"], group["n_labelled"]) == (len(users), len(labelled))
        assert_matches(group["metrics"], reference(labelled))


def test_per_version_metrics_equal_an_independent_computation_with_and_without_day_cells(story):
    connection, matched = story
    assert outcomes.catch_up(connection).pending_log_rows == 0
    read = lambda: performance_groups(  # noqa: E731
        performance_rows(connection, since=MIDNIGHT - timedelta(days=30), until=None, by=None, today=TODAY),
        None, min_labelled=200)
    from_rows = read()
    check(from_rows, expected_groups(matched))
    assert built_spans(connection) == expected_spans()
    from_cells = read()
    check(from_cells, expected_groups(matched))
    assert [g["metrics"]["norm_gini"] for g in from_cells] == pytest.approx(
        [g["metrics"]["norm_gini"] for g in from_rows], abs=1e-12)


@pytest.mark.parametrize("by, key", [
    ("country", lambda u: u["country"].lower()),
    ("platform", lambda u: "ios" if "ios" in u["platform"].lower() else "android"),
    ("day", lambda u: u["timestamp"].date().isoformat()),
    ("route", lambda u: "/predict"),
])
def test_groups_by_a_column_fold_spellings_and_match(story, by, key):
    connection, matched = story
    outcomes.catch_up(connection)
    outcomes.build_spans(connection, today=TODAY, max_spans=100)
    groups = performance_groups(performance_rows(connection, since=MIDNIGHT - timedelta(days=30), until=None,
                                                 by=by, today=TODAY), by, min_labelled=200)
    assert all(g["by"] == by for g in groups)
    check(groups, expected_groups(matched, key=key))


def test_a_window_with_partial_days_reads_cells_and_rows_and_matches(story):
    connection, matched = story
    outcomes.catch_up(connection)
    outcomes.build_spans(connection, today=TODAY, max_spans=100)
    since, until = MIDNIGHT - timedelta(days=2, hours=-3), MIDNIGHT + timedelta(hours=2)
    groups = performance_groups(performance_rows(connection, since=since, until=until, by=None, today=TODAY),
                                None, min_labelled=200)
    check(groups, expected_groups(matched, keep=lambda u: since <= u["timestamp"] < until))


def test_a_group_under_min_labelled_has_null_metrics_and_a_reason(story):
    connection, matched = story
    outcomes.catch_up(connection)
    groups = performance_groups(performance_rows(connection, since=MIDNIGHT - timedelta(days=30), until=None,
                                                 by=None, today=TODAY), None, min_labelled=1500)
    version_1, version_2 = groups
    n = sum(1 for u in matched if u["version"] == "2" and u["revenue"] is not None)
    assert n < 1500 <= version_1["n_labelled"] and version_2["n_labelled"] == n
    assert version_1["metrics"] is not None and version_1["reason"] is None
    assert version_2["metrics"] is None and version_2["reason"] == f"{n} labelled users, fewer than min_labelled=1500"


def test_changes_after_cells_were_built_reach_the_answer(story):
    """A later prediction moves a user out of yesterday; a replaced label changes a built day."""
    connection, matched = story
    outcomes.catch_up(connection)
    outcomes.build_spans(connection, today=TODAY, max_spans=100)
    yesterday_user = next(u for u in matched if u["timestamp"].date() == TODAY - timedelta(days=1)
                          and u["version"] == "1" and u["revenue"] is not None)
    rng = np.random.default_rng(12)
    later = prediction(rng)
    write(connection, [log_row(yesterday_user["user_id"], "1", NOW - timedelta(minutes=1), later)])
    two_days_ago = next(u for u in matched if u["timestamp"].date() == TODAY - timedelta(days=2)
                        and u["revenue"] is not None)
    store_labels(connection, {two_days_ago["user_id"]: 999.0})
    result = outcomes.refresh(connection)
    assert (result.predictions, result.pending_log_rows, result.pending_labels) == (1, 0, 0)
    assert result.labels == sum(1 for u in matched if u["user_id"] == two_days_ago["user_id"])
    updated = []
    for user in matched:
        if (user["user_id"], user["version"]) == (yesterday_user["user_id"], "1"):
            user = {**user, **later, "timestamp": NOW - timedelta(minutes=1)}
        if user["user_id"] == two_days_ago["user_id"]:
            user = {**user, "revenue": 999.0}
        updated.append(user)
    groups = performance_groups(performance_rows(connection, since=MIDNIGHT - timedelta(days=30), until=None,
                                                 by="day", today=TODAY), "day", min_labelled=200)
    check(groups, expected_groups(updated, key=lambda u: u["timestamp"].date().isoformat()))
    assert built_spans(connection) == expected_spans()


def test_a_log_row_committed_late_is_not_skipped(database, fresh_database, monkeypatch):
    """A writer that took an id, then a second writer that took a later one and committed first:
    the refresh waits (here: gives up) rather than read past the first one's id for good."""
    monkeypatch.setattr(feed, "LOCK_TIMEOUT", "300ms")
    rng = np.random.default_rng(13)
    slow, known = psycopg2.connect(fresh_database, connection_factory=HeldCommit), Partitions()
    known.ensure(slow, [TODAY])  # today's partition made and committed beforehand, as on any busy day
    slow.held = False
    slow.commit()
    slow.held = True
    write_rows(slow, [log_row("late-1", "1", NOW, prediction(rng))], known)  # not committed yet
    write(database, [log_row("early-2", "1", NOW, prediction(rng))])  # a later id, committed first
    assert outcomes.refresh(database) is None  # the first writer is still between its id and its commit
    slow.held = False
    slow.commit()
    slow.close()
    outcomes.refresh(database)
    with database.cursor() as cursor:
        cursor.execute("SELECT user_id FROM prediction_outcomes ORDER BY 1")
        assert [u for (u,) in cursor.fetchall()] == ["early-2", "late-1"]
    database.rollback()


class HeldCommit(psycopg2.extensions.connection):
    """A writer paused between its insert and its commit (until ``held`` is False)."""

    held = True

    def commit(self):
        if not self.held:
            super().commit()


def test_a_database_with_cells_of_the_previous_layout_upgrades_in_place(fresh_database, monkeypatch):
    """Cells built before migration 0007 (a row per bin in outcome_cells) become arrays: the answers
    stay those of an independent computation, and no built day is rebuilt."""
    every = schema.migrations()
    monkeypatch.setattr(schema, "migrations", lambda: [m for m in every if m.version < 7])
    connection = connect(fresh_database)
    schema.migrate(connection)
    connection, matched = write_story(connection)
    outcomes.catch_up(connection)
    days = [TODAY - timedelta(days=2), TODAY - timedelta(days=1)]
    with connection.cursor() as cursor:  # what the previous release's build_spans wrote for a day
        for day in days:
            moment = datetime.combine(day, datetime.min.time(), tzinfo=timezone.utc)
            for dim in CELL_DIMS:
                cursor.execute(f"INSERT INTO outcome_cells SELECT %(day)s, 1, %(dim)s, model_version, value, kind, bin, "
                               f"{', '.join(STATS)} FROM ({rows_sql(dim, 1)}) AS s(value, model_version, kind, bin, "
                               f"{', '.join(STATS)})", {"day": day, "dim": dim, "start_0": moment,
                                                        "end_0": moment + timedelta(days=1)})
            cursor.execute("INSERT INTO outcome_spans (start, days) VALUES (%s, 1)", (day,))
    connection.commit()
    monkeypatch.setattr(schema, "migrations", lambda: every)
    assert schema.migrate(connection) == [7]
    with connection.cursor() as cursor:
        cursor.execute("SELECT DISTINCT kind FROM outcome_cells")
        assert cursor.fetchall() == [("c",)]
        cursor.execute("SELECT count(*), count(DISTINCT (start, days, dim, model_version, value, kind)) "
                       "FROM outcome_bins")
        rows, keys = cursor.fetchone()
        assert rows == keys > 0  # a row per span, grouping value, version and kind
    connection.rollback()
    with pytest.raises(psycopg2.errors.CheckViolation), connection.cursor() as cursor:
        # A process of the previous release building a span now fails loudly, not silently unread.
        cursor.execute("UPDATE outcome_cells SET kind = 'p', bin = 3 WHERE ctid = (SELECT min(ctid) FROM outcome_cells)")
    connection.rollback()
    for by, key in [(None, lambda u: None), ("country", lambda u: u["country"].lower()),
                    ("day", lambda u: u["timestamp"].date().isoformat())]:
        groups = performance_groups(performance_rows(connection, since=MIDNIGHT - timedelta(days=2), until=None,
                                                     by=by, today=TODAY), by, min_labelled=200)
        check(groups, expected_groups(matched, key=key))
    assert all(days > 1 for _, days in built_spans(connection))  # the days were kept, not rebuilt
    groups = performance_groups(performance_rows(connection, since=MIDNIGHT - timedelta(days=2), until=None,
                                                 by="country", today=TODAY), "country", min_labelled=200)
    check(groups, expected_groups(matched, key=lambda u: u["country"].lower()))  # 2-day span from arrays
    connection.close()
