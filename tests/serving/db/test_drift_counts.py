"""GET /drift's SQL counts against part 1's in-memory counting of the same users, in a real PostgreSQL."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from revenue_model import drift as D
from revenue_model.contract import OUTPUT_COLUMNS
from revenue_model.synthetic import generate_users
from revenue_model.validation import validate_columns
from serving.core import RequestRecord, log_rows
from serving.db.drift import window_counts
from serving.db.log_rows import write_rows
from serving.db.partitions import Partitions
from serving.model_identity import ModelIdentity

NOW = datetime.now(timezone.utc).replace(microsecond=0)


@pytest.fixture(scope="module")
def reference_users():
    return generate_users(4_000, seed=11)


@pytest.fixture(scope="module")
def profile(reference_users):
    columns = validate_columns(reference_users)
    rng = np.random.default_rng(1)
    outputs = {"predicted_revenue": rng.lognormal(0, 1, 4_000), "payer_probability": rng.random(4_000)}
    return D.build_profile(columns, outputs)


@pytest.fixture
def database(migrated_database):
    return migrated_database


def outputs_for(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    values = {"predicted_revenue": rng.lognormal(0.2, 1.2, n), "payer_probability": rng.random(n),
              "revenue_p10": np.zeros(n), "revenue_p90": rng.lognormal(1, 1, n)}
    return [dict(zip(OUTPUT_COLUMNS, row)) for row in zip(*(values[c].tolist() for c in OUTPUT_COLUMNS))]


def logged(connection, users, outputs, *, at: datetime, version: str = "3", status: int = 200,
           role: str = "champion") -> None:
    """Log users as the service does: a validated request, its outputs, one row per user."""
    record = RequestRecord("r", "/batch_predict", timestamp=at)
    record.users = users.to_dict(orient="records")
    record.columns = validate_columns(record.users)
    record.outputs = outputs if status == 200 else None
    identity = ModelIdentity(uri=f"models:/revenue_model/{version}", name="revenue_model", version=version)
    write_rows(connection, log_rows(record, status, 5.0, identity, role=role), Partitions())


def counted(connection, profile, **window):
    edges = {c: profile["columns"][c]["edges"] for c in D.NUMERIC_INPUTS + D.OUTPUTS}
    groups = window_counts(connection, edges=edges, **{"model_version": "3", "since": NOW - timedelta(hours=1),
                                                      "until": NOW + timedelta(hours=1), **window})
    return D.grouped_counts(profile, groups)


def assert_same(actual: dict, expected: dict) -> None:
    assert set(actual) == set(D.COLUMNS)
    for column in D.COLUMNS:
        a, e = actual[column], expected[column]
        assert (a.bins.tolist(), a.missing, a.unseen) == (e.bins.tolist(), e.missing, e.unseen), column


def test_sql_counts_equal_the_in_memory_counts_of_the_same_users(database, profile):
    users = generate_users(1_500, seed=12)
    # Spellings the model folds together, values training never had, and missing values, on purpose.
    users.loc[:99, "platform"] = " IOS "
    users.loc[100:199, "source"] = "BrandNewNetwork"
    users.loc[200:299, "event_3"] = np.nan
    users.loc[300:349, "os_version"] = "unknown"
    outputs = outputs_for(len(users), 13)
    logged(database, users, outputs, at=NOW)

    columns = validate_columns(users)
    expected = D.window_counts(profile, columns, {c: np.array([o[c] for o in outputs]) for c in D.OUTPUTS})
    actual = counted(database, profile)
    assert_same(actual, expected)
    assert actual["source"].unseen >= 100  # the new network: the cases above are really exercised
    assert actual["event_3"].missing >= 100
    assert actual["platform"].unseen == 0  # " IOS " is iOS to the model


def test_only_champion_answers_of_the_version_inside_the_window_are_counted(database, profile):
    users = generate_users(300, seed=14)
    outputs = outputs_for(300, 15)
    logged(database, users, outputs, at=NOW)
    logged(database, users, outputs, at=NOW, role="shadow")                       # a shadow's rows
    logged(database, users, outputs, at=NOW, version="4")                         # another version
    logged(database, users, outputs, at=NOW - timedelta(hours=2))                 # before the window
    logged(database, users, outputs, at=NOW + timedelta(hours=1))                 # at its end: excluded
    logged(database, users, outputs, at=NOW, status=503)                          # not answered
    actual = counted(database, profile)
    assert {column: actual[column].n for column in D.COLUMNS} == dict.fromkeys(D.COLUMNS, 300)
    assert counted(database, profile, model_version="4")["event_1"].n == 300


def test_an_empty_window_counts_nothing(database, profile):
    actual = counted(database, profile, since=datetime(2001, 1, 1, tzinfo=timezone.utc),
                     until=datetime(2001, 1, 2, tzinfo=timezone.utc))
    assert {column: actual[column].n for column in D.COLUMNS} == dict.fromkeys(D.COLUMNS, 0)


def test_a_column_without_edges_counts_every_value_in_one_bin(database, profile):
    users = generate_users(50, seed=16)
    logged(database, users, outputs_for(50, 17), at=NOW)
    flat = {**profile, "columns": {**profile["columns"], "event_1": {**profile["columns"]["event_1"], "edges": []}}}
    assert counted(database, flat)["event_1"].bins.tolist() == [50]

