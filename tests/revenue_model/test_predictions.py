import numpy as np
import pandas as pd
import pytest

from revenue_model.predictions import Predictions

COLUMNS = ["predicted_revenue", "payer_probability", "revenue_p10", "revenue_p90"]


@pytest.mark.parametrize("rows", [0, 1, 7, 500])
def test_records_are_pandas_own(rows):
    values = np.random.default_rng(rows).exponential(3.0, size=(rows, len(COLUMNS)))
    values[::3, 0] = np.nan  # NaN stays NaN, as pandas gives it
    fast = Predictions(values, columns=COLUMNS).to_dict(orient="records")
    plain = pd.DataFrame(values, columns=COLUMNS).to_dict(orient="records")
    assert len(fast) == len(plain) == rows
    for got, want in zip(fast, plain):
        assert list(got) == list(want) == COLUMNS
        assert all(type(v) is float for v in got.values())
        np.testing.assert_array_equal(list(got.values()), list(want.values()))


def test_other_orients_and_mixed_columns_are_pandas_own():
    frame = Predictions({"a": [1.5, 2.5], "b": ["x", "y"]})
    assert frame.to_dict(orient="records") == [{"a": 1.5, "b": "x"}, {"a": 2.5, "b": "y"}]
    floats = Predictions(np.eye(2), columns=["a", "b"])
    assert floats.to_dict() == pd.DataFrame(np.eye(2), columns=["a", "b"]).to_dict()
    assert floats.to_dict(orient="list") == {"a": [1.0, 0.0], "b": [0.0, 1.0]}


def test_derived_frames_are_plain_dataframes():
    frame = Predictions(np.ones((3, 2)), columns=["a", "b"])
    assert isinstance(frame, pd.DataFrame)
    assert type(frame.head(2)) is pd.DataFrame
    assert type(frame[["a"]]) is pd.DataFrame
