"""The logged pyfunc takes the data people really have: every reasonable dtype, the same numbers.

The reference is what the model gave before any of this: the users with float64 events,
scored by the session's predictor in this process. Each shape below goes through
``mlflow.pyfunc.load_model(...).predict`` (MLflow's own path, schema handling included).
"""

import io

import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from revenue_model.contract import EVENT_COLUMNS, OUTPUT_COLUMNS
from revenue_model.validation import InvalidUsers

STRINGS = ["user_id", "country", "country_region", "source", "platform", "device_family", "os_version"]


@pytest.fixture(scope="module")
def model(champion_store):
    mlflow.set_tracking_uri(champion_store)
    try:
        return mlflow.pyfunc.load_model("models:/revenue_model@champion")
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def natural(holdout):
    """40 users as a file would hold them: counts as integers, some event_3 and regions missing."""
    frame = holdout.drop(columns=["revenue", "install_date", "true_payer_probability",
                                  "true_expected_revenue"]).iloc[:40].reset_index(drop=True)
    frame = frame.astype({"event_1": np.int64, "event_2": np.int64})
    frame.loc[[3, 7, 11], "event_3"] = np.nan
    frame.loc[[2, 5], "country_region"] = None
    assert frame["event_3"].isna().sum() >= 3 and frame["country_region"].isna().sum() >= 2
    return frame


def reference(predictor, frame: pd.DataFrame) -> np.ndarray:
    floats = frame.copy()
    for c in EVENT_COLUMNS:
        if c in floats:
            floats[c] = floats[c].astype(float)
    return predictor.predict(floats).to_numpy()


def _csv(frame, tmp_path):
    path = tmp_path / "users.csv"
    frame.to_csv(path, index=False)
    return pd.read_csv(path)


def _parquet(frame, tmp_path):
    path = tmp_path / "users.parquet"
    frame.to_parquet(path, index=False)
    return pd.read_parquet(path)


SHAPES = {
    "int64 events": lambda f, tmp: f,
    "float64 events": lambda f, tmp: f.astype({"event_1": float, "event_2": float}),
    "nullable Int64 events": lambda f, tmp: f.astype({"event_1": "Int64", "event_2": "Int64", "event_3": "Float64"}),
    "nullable Float64 events": lambda f, tmp: f.astype({c: "Float64" for c in EVENT_COLUMNS}),
    "object events holding None": lambda f, tmp: f.assign(
        event_3=pd.Series([None if np.isnan(v) else v for v in f["event_3"]], dtype=object),
        event_1=f["event_1"].astype(object)),
    "string dtype": lambda f, tmp: f.astype({c: "string" for c in STRINGS}),
    "string[pyarrow]": lambda f, tmp: f.astype({c: "string[pyarrow]" for c in STRINGS}),
    "Arrow-backed strings (ArrowDtype)": lambda f, tmp: f.astype({c: pd.ArrowDtype(pa.string()) for c in STRINGS}),
    "Arrow-backed numbers (ArrowDtype)": lambda f, tmp: f.astype(
        {"event_1": pd.ArrowDtype(pa.int64()), "event_3": pd.ArrowDtype(pa.float64())}),
    "numeric user_id": lambda f, tmp: f.assign(user_id=np.arange(len(f), dtype=np.int64) + 10**9),
    "extra columns": lambda f, tmp: f.assign(install_date="2026-01-01", campaign=7, score=np.linspace(0, 1, len(f))),
    "pd.read_csv": _csv,
    "pd.read_csv, regions all empty": lambda f, tmp: _csv(f.assign(country_region=None), tmp),
    "pd.read_parquet": _parquet,
    "records": lambda f, tmp: f.to_dict(orient="records"),
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_gives_the_float_cast_numbers(model, predictor, natural, shape, tmp_path):
    given = SHAPES[shape](natural, tmp_path)
    expected = reference(predictor, natural.assign(country_region=None)
                         if shape == "pd.read_csv, regions all empty" else natural)
    out = model.predict(given)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    np.testing.assert_array_equal(out.to_numpy(), expected)


@pytest.mark.parametrize("missing", [["event_3"], ["country_region", "device_family", "os_version", "user_id"]])
def test_missing_optional_columns_are_missing_values(model, predictor, natural, missing):
    out = model.predict(natural.drop(columns=missing))
    expected = reference(predictor, natural.assign(**{c: np.nan if c in EVENT_COLUMNS else None for c in missing}))
    np.testing.assert_array_equal(out.to_numpy(), expected)


def test_bad_values_in_natural_dtypes_are_one_error_listing_each(model, natural):
    bad = natural.head(4).astype({"event_1": "Int64", "event_2": "Float64", "country": "string"})
    bad.loc[0, "event_1"] = -3
    bad.loc[1, "event_2"] = pd.NA
    bad.loc[2, "country"] = "x" * 201
    bad.loc[3, "country"] = pd.NA
    bad["platform"] = bad["platform"].astype(object)
    bad.loc[3, "platform"] = 5
    with pytest.raises(InvalidUsers) as error:
        model.predict(bad)
    assert [(p.row, p.field, p.reason) for p in error.value.problems] == [
        (0, "event_1", "must be >= 0"),
        (1, "event_2", "is required"),
        (2, "country", "is longer than 200 characters"),
        (3, "country", "is required"),
        (3, "platform", "must be a string"),
    ]


def test_a_missing_required_column_is_named_for_every_row(model, natural):
    with pytest.raises(InvalidUsers) as error:
        model.predict(natural.head(3).drop(columns=["event_2"]))
    assert [(p.row, p.field, p.reason) for p in error.value.problems] == [
        (i, "event_2", "is required") for i in range(3)]
