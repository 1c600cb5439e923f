"""Label validation: every bad (row, field, reason), by the users' rules."""

import numpy as np
import pandas as pd
import pytest

from revenue_model.labels import InvalidLabels, check_label_columns, validate_labels

GOOD = {"user_id": "u-1", "revenue": 12.5}


@pytest.mark.parametrize("label, problems", [
    ({"revenue": 1.0}, [("user_id", "is required")]),
    ({"user_id": "", "revenue": 1.0}, [("user_id", "is required")]),
    ({"user_id": "   ", "revenue": 1.0}, [("user_id", "is required")]),
    ({"user_id": None, "revenue": 1.0}, [("user_id", "is required")]),
    ({"user_id": "x" * 201, "revenue": 1.0}, [("user_id", "is longer than 200 characters")]),
    ({"user_id": True, "revenue": 1.0}, [("user_id", "must be a string")]),
    ({"user_id": ["u"], "revenue": 1.0}, [("user_id", "must be a string")]),
    ({"user_id": "a\x00b", "revenue": 1.0}, [("user_id", "must not contain the NUL character")]),
    ({"user_id": "u"}, [("revenue", "is required")]),
    ({"user_id": "u", "revenue": None}, [("revenue", "is required")]),
    ({"user_id": "u", "revenue": -0.01}, [("revenue", "must be >= 0")]),
    ({"user_id": "u", "revenue": float("nan")}, [("revenue", "is required")]),
    ({"user_id": "u", "revenue": float("inf")}, [("revenue", "must be a finite number")]),
    ({"user_id": "u", "revenue": "12.5"}, [("revenue", "must be a number")]),
    ({"user_id": "u", "revenue": True}, [("revenue", "must be a number")]),
    ({"user_id": "u", "revenue": 1, "observed_at": "yesterday"}, [("observed_at", "is not an ISO 8601 time")]),
    ({"user_id": "u", "revenue": 1, "observed_at": 1700000000}, [("observed_at", "is not an ISO 8601 time")]),
    ({}, [("revenue", "is required"), ("user_id", "is required")]),
    ("u-1", [("label", "must be a JSON object")]),
])
def test_a_bad_label_is_named_with_its_row_and_field(label, problems):
    with pytest.raises(InvalidLabels) as raised:
        validate_labels([GOOD, label])
    assert [(p.row, p.field, p.reason) for p in raised.value.problems] == [(1, f, r) for f, r in problems]


def test_every_problem_of_a_request_is_listed_and_a_duplicate_names_the_first_row():
    labels = [GOOD, {"user_id": "u-2", "revenue": -1}, {"user_id": " u-1 ", "revenue": 3}, {"revenue": "x"}]
    with pytest.raises(InvalidLabels) as raised:
        validate_labels(labels)
    assert [p.as_dict() for p in raised.value.problems] == [
        {"row": 1, "field": "revenue", "reason": "must be >= 0"},
        {"row": 2, "field": "user_id", "reason": "is a duplicate of row 0"},  # stripped, as the log stores it
        {"row": 3, "field": "revenue", "reason": "must be a number"},
        {"row": 3, "field": "user_id", "reason": "is required"},
    ]


def test_good_labels_come_back_as_the_log_stores_user_ids():
    columns = validate_labels([{"user_id": " u-1 ", "revenue": 0}, {"user_id": 17, "revenue": 2},
                               {"user_id": 2.5, "revenue": 1e6, "observed_at": "2026-11-20T10:00:00+02:00"},
                               {"user_id": "z", "revenue": 3, "observed_at": "2026-11-20"}])
    assert columns["user_id"].tolist() == ["u-1", "17", "2.5", "z"]
    assert columns["revenue"].tolist() == [0.0, 2.0, 1e6, 3.0]
    assert columns["observed_at"].astype(str).tolist() == [
        "NaT", "NaT", "2026-11-20T08:00:00.000000", "2026-11-20T00:00:00.000000"]


def test_file_columns_mark_bad_rows_and_keep_the_rest():
    """What ingest_labels does with a chunk: vectorised checks, the good rows kept."""
    n = 1000
    user_ids = pd.array([f"u{i}" for i in range(n)], dtype="string")
    user_ids[10] = None
    revenue = np.arange(n, dtype=float)
    revenue[20], revenue[30] = -5, np.inf
    columns, good, problems = check_label_columns(user_ids, revenue)
    assert [(p.row, p.field, p.reason) for p in problems] == [
        (10, "user_id", "is required"), (20, "revenue", "must be >= 0"), (30, "revenue", "must be a finite number")]
    assert np.flatnonzero(~good).tolist() == [10, 20, 30]
    assert columns["revenue"][good].sum() == sum(range(n)) - 10 - 20 - 30
    assert list(columns["user_id"][good][:3]) == ["u0", "u1", "u2"]


def test_file_columns_take_typed_timestamps_and_numbers_as_user_ids():
    columns, good, problems = check_label_columns(
        np.array([1, 2, 3]), np.array([1.0, 0.0, 2.0]),
        pd.Series(pd.to_datetime(["2026-11-01T00:00:00+01:00", None, "2026-11-03"], utc=True, format="ISO8601")))
    assert problems == [] and good.all()
    assert columns["user_id"].tolist() == ["1", "2", "3"]
    assert columns["observed_at"].astype(str).tolist() == [
        "2026-10-31T23:00:00.000000", "NaT", "2026-11-03T00:00:00.000000"]
