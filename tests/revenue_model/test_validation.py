import math

import numpy as np
import pandas as pd
import pytest

from revenue_model.validation import InvalidUsers, Problem, validate_columns, validate_users

GOOD = {"country": "es", "country_region": "Madrid", "source": "Organic", "platform": "iOS",
        "device_family": "Apple iPhone", "os_version": "14.4", "event_1": 100, "event_2": 50,
        "event_3": 10.0}


def problems_of(records, **kwargs):
    with pytest.raises(InvalidUsers) as error:
        validate_columns(records, **kwargs)
    return [(p.row, p.field, p.reason) for p in error.value.problems]


def test_valid_record_becomes_typed_columns():
    columns = validate_columns([GOOD])
    assert columns["country"][0] == "es"
    assert columns["event_1"].dtype == np.float64 and columns["event_1"][0] == 100.0
    assert columns["user_id"][0] is None


@pytest.mark.parametrize("change, field, reason", [
    ({"country": None}, "country", "is required"),
    ({"country": "   "}, "country", "is required"),
    ({"source": 5}, "source", "must be a string"),
    ({"platform": ["iOS"]}, "platform", "must be a string"),
    ({"event_1": None}, "event_1", "is required"),
    ({"event_1": -1}, "event_1", "must be >= 0"),
    ({"event_2": math.inf}, "event_2", "must be a finite number"),
    ({"event_2": math.nan}, "event_2", "is required"),
    ({"event_1": "3"}, "event_1", "must be a number"),
    ({"event_1": True}, "event_1", "must be a number"),
    ({"event_3": -0.5}, "event_3", "must be >= 0"),
    ({"event_1": 10 ** 400}, "event_1", "must be a finite number"),
    ({"device_family": "x" * 201}, "device_family", "is longer than 200 characters"),
    ({"os_version": True}, "os_version", "must be a string"),
    ({"country_region": "Lima \ud800"}, "country_region", "is not valid Unicode (a lone surrogate)"),
    ({"source": "\x00"}, "source", "must not contain the NUL character"),
    ({"device_family": "a\x00b"}, "device_family", "must not contain the NUL character"),
])
def test_each_bad_field_is_named_with_its_reason(change, field, reason):
    assert problems_of([{**GOOD, **change}]) == [(0, field, reason)]


def test_a_missing_key_is_a_missing_field():
    record = {k: v for k, v in GOOD.items() if k != "event_2"}
    assert problems_of([record]) == [(0, "event_2", "is required")]


def test_every_problem_of_every_row_is_listed_at_once():
    records = [GOOD, {**GOOD, "country": None, "event_1": -2}, "not an object", {**GOOD, "event_3": "x"}]
    found = problems_of(records)
    assert (1, "country", "is required") in found
    assert (1, "event_1", "must be >= 0") in found
    assert (2, "user", "must be a JSON object") in found
    assert (3, "event_3", "must be a number") in found
    assert len([p for p in found if p[0] == 0]) == 0


@pytest.mark.parametrize("value, expected", [(10, "10"), (14.4, "14.4"), ("15.0.2", "15.0.2"),
                                             (" 16 ", "16"), ("", None), (None, None)])
def test_os_version_accepts_numbers_and_strings(value, expected):
    assert validate_columns([{**GOOD, "os_version": value}])["os_version"][0] == expected


def test_optional_fields_may_be_missing_and_event_3_stays_missing():
    record = {k: GOOD[k] for k in ("country", "source", "platform", "event_1", "event_2")}
    columns = validate_columns([record])
    assert math.isnan(columns["event_3"][0])
    assert columns["country_region"][0] is None


def test_target_is_required_only_for_data_sets():
    assert problems_of([GOOD], with_target=True) == [(0, "revenue", "is required")]
    assert problems_of([{**GOOD, "revenue": -1.0}], with_target=True) == [(0, "revenue", "must be >= 0")]
    assert validate_columns([{**GOOD, "revenue": 2.5}], with_target=True)["revenue"][0] == 2.5


def test_install_date_is_parsed_or_named():
    ok = validate_columns([{**GOOD, "revenue": 0, "install_date": "2026-10-01"}], with_target=True)
    assert pd.Timestamp(ok["install_date"][0]) == pd.Timestamp("2026-10-01")
    assert problems_of([{**GOOD, "revenue": 0, "install_date": "not a date"}], with_target=True) == [
        (0, "install_date", "is not a date")]


def test_a_missing_required_column_in_a_frame_names_every_row():
    frame = pd.DataFrame([GOOD, GOOD]).drop(columns=["source"])
    assert problems_of(frame) == [(0, "source", "is required"), (1, "source", "is required")]


MESSY = ["es", " PE ", "", None, "x" * 201, " " * 201, "Lima", "us", "Li\x00ma", "\x00"]


@pytest.mark.parametrize("rows", [len(MESSY), 40 * len(MESSY)])
def test_frames_and_records_agree_whatever_the_column_type(rows):
    """The dict path (few rows), the factorize path and the vectorised Arrow path give one answer."""
    regions = (MESSY * (rows // len(MESSY)))[:rows]
    records = [{**GOOD, "country_region": r, "event_1": float(i)} for i, r in enumerate(regions)]
    as_strings = pd.DataFrame(records).astype({"country_region": "string[pyarrow]"})
    as_objects = pd.DataFrame(records).astype({"country_region": object})
    outcomes = []
    for data in (records, as_strings, as_objects):
        with pytest.raises(InvalidUsers) as error:
            validate_columns(data)
        outcomes.append(error.value.problems)
    assert outcomes[0] == outcomes[1] == outcomes[2]
    assert {p.reason for p in outcomes[0]} == {"is longer than 200 characters", "must not contain the NUL character"}


def test_valid_frames_and_records_give_the_same_frame():
    records = [GOOD, {**GOOD, "country_region": "", "platform": "ios", "event_3": None}] * 20
    from_records = validate_users(records)
    from_frame = validate_users(pd.DataFrame(records))
    for column in from_records.columns:
        left = pd.Series(from_records[column], dtype=object).where(lambda s: s.notna(), None)
        right = pd.Series(from_frame[column], dtype=object).where(lambda s: s.notna(), None)
        assert left.tolist() == right.tolist(), column


def test_the_error_message_summarises_the_problems():
    error = InvalidUsers([Problem(0, "country", "is required")])
    assert str(error) == "1 invalid field(s): row 0: country is required"


@pytest.mark.parametrize("rows", [2, 40])
def test_lists_and_objects_as_values_are_named_not_crashed(rows):
    records = [{}, {"country": None, "event_3": [], "event_1": [1], "source": {"a": 1}}] * (rows // 2)
    found = problems_of(records)
    assert (1, "event_3", "must be a number") in found
    assert (1, "event_1", "must be a number") in found
    assert (1, "source", "must be a string") in found


def test_nullable_pandas_columns_are_accepted():
    frame = pd.DataFrame([GOOD, {**GOOD, "event_3": None}]).astype({"event_3": "Float64", "event_1": "Int64"})
    columns = validate_columns(frame)
    assert math.isnan(columns["event_3"][1]) and columns["event_1"][0] == 100.0


@pytest.mark.parametrize("rows", [2, 40])
def test_a_boolean_and_a_number_are_not_taken_for_each_other(rows):
    """True == 1 and False == 0 in Python: a number after a boolean (or before) keeps its own verdict."""
    users = [{**GOOD, "os_version": False}, {**GOOD, "os_version": 0}, {**GOOD, "os_version": 1},
             {**GOOD, "os_version": True}] * (rows // 2)
    problems = problems_of(users)
    assert {(row % 4, field, reason) for row, field, reason in problems} == {
        (0, "os_version", "must be a string"), (3, "os_version", "must be a string")}
    assert len(problems) == len(users) // 2


def test_few_users_are_judged_as_many_are():
    """Up to 16 users are checked value by value, more with NumPy: the same answers either way."""
    from hypothesis import given, settings, strategies as st

    value = (st.none() | st.booleans() | st.integers(-10, 10**20) | st.text(max_size=5)
             | st.floats(allow_nan=True, allow_infinity=True) | st.lists(st.integers(), max_size=1))
    user = st.fixed_dictionaries({}, optional={c: value for c in GOOD})

    def outcome(records, rows):
        try:
            columns = validate_columns(records)
        except InvalidUsers as error:
            return sorted((p.row, p.field, p.reason) for p in error.problems if p.row < rows)
        return {c: [None if isinstance(v, float) and math.isnan(v) else v for v in a[:rows]]
                for c, a in columns.items()}

    @settings(max_examples=300, deadline=None)
    @given(st.lists(user, min_size=1, max_size=16))
    def check(users):
        assert outcome(users, len(users)) == outcome(users + [GOOD] * 17, len(users))

    check()


@pytest.mark.parametrize("rows", [3, 40])
def test_columns_as_a_dict_are_judged_as_records_are(rows):
    """{column: values}, as MLflow's scoring server hands "inputs" to a model without an input schema."""
    records = [GOOD, {**GOOD, "event_1": -1, "country": None}, {**GOOD, "event_3": None, "os_version": 10}]
    records = (records * rows)[:rows]
    as_dict = {c: np.array([r.get(c) for r in records]) for c in GOOD}
    as_dict["event_3"] = [r["event_3"] for r in records]  # a list holding None, as JSON gives it
    assert problems_of(as_dict) == problems_of(records)
    good = [r for r in records if r["event_1"] >= 0]
    from_dict = validate_users({c: [r.get(c) for r in good] for c in GOOD})
    pd.testing.assert_frame_equal(from_dict, validate_users(good))


def test_a_dict_of_single_values_is_one_user():
    columns = validate_columns({**GOOD, "event_1": np.array(7)})
    assert columns["event_1"].tolist() == [7.0] and columns["country"].tolist() == ["es"]


def test_columns_of_unequal_length_are_named():
    data = {c: [v, v, v] for c, v in GOOD.items()}
    data["event_2"] = [1.0]
    data["country"] = [None, None, None]  # not judged: which user a value belongs to is unknown
    assert problems_of(data) == [(1, "event_2", "has 1 values where other columns have 3")]
