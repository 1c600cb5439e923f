"""The body the service sends its scorer: Parquet from PARQUET_FROM_ROWS users, MLflow's "inputs" JSON below."""

import io
import json
import math

import mlflow
import numpy as np
import orjson
from mlflow.pyfunc import scoring_server

from revenue_model.contract import FEATURE_INPUTS
from revenue_model.validation import validate_columns
from serving.scorer import PARQUET, PARQUET_FROM_ROWS, scorer_body, to_scorer_body, to_scorer_columns

# Strings a text format could turn into something else: CSV readers take "NA" and "nan" for missing
# and "10.0" for a number; "" is how to_scorer_columns sends a missing string.
_TRICKY = ["NA", "nan", "None", "", "10.0", "Zürich", "  padded  ", "日本", "null"]


def _columns(rows: int) -> dict[str, list]:
    columns = {c: [_TRICKY[(i + k) % len(_TRICKY)] for i in range(rows)]
               for k, c in enumerate(FEATURE_INPUTS) if not c.startswith("event_")}
    numbers = [0.7, math.nan, 1e300, 0.0, None, 5e-324, 3.0]
    for k, c in enumerate(("event_1", "event_2", "event_3")):
        columns[c] = [numbers[(i + k) % len(numbers)] for i in range(rows)]
    return columns


def test_a_call_of_many_users_goes_as_parquet_that_mlflow_reads_back_value_for_value():
    columns = _columns(PARQUET_FROM_ROWS)
    body, content_type = scorer_body(columns)
    assert content_type == PARQUET
    frame = scoring_server.parse_parquet_input(io.BytesIO(body))  # what MLflow's scoring server does with it
    assert list(frame.columns) == list(FEATURE_INPUTS)
    for c in FEATURE_INPUTS:
        got = frame[c].tolist()
        if c.startswith("event_"):
            expected = [math.nan if v is None else v for v in columns[c]]
            np.testing.assert_array_equal(np.array(got, dtype=np.float64), np.array(expected))
            assert frame[c].dtype == np.float64
        else:
            assert got == columns[c], c


def test_a_call_of_few_users_stays_mlflows_inputs_json():
    columns = _columns(PARQUET_FROM_ROWS - 1)
    body, content_type = scorer_body(columns)
    assert content_type == "application/json"
    sent = json.loads(body)["inputs"]
    assert sent["country"] == columns["country"] and len(sent["event_1"]) == PARQUET_FROM_ROWS - 1


def test_the_model_answers_a_parquet_call_as_it_answers_the_json_one(champion_store, holdout):
    mlflow.set_tracking_uri(champion_store)
    try:
        model = scoring_server.load_model_with_mlflow_config("models:/revenue_model@champion")
    finally:
        mlflow.set_tracking_uri(None)
    users = holdout[list(FEATURE_INPUTS)].iloc[:PARQUET_FROM_ROWS + 7].copy()
    users.loc[users.index[::5], "country_region"] = None  # missing strings travel as "" in both
    users.loc[users.index[::3], "event_3"] = np.nan
    columns = validate_columns(users)
    body, content_type = to_scorer_body(columns)
    assert content_type == PARQUET
    as_parquet = scoring_server.invocations(body, content_type, model, None)
    as_json = scoring_server.invocations(orjson.dumps({"inputs": to_scorer_columns(columns)}),
                                         "application/json", model, None)
    assert as_parquet.status == as_json.status == 200
    assert json.loads(as_parquet.response) == json.loads(as_json.response)
    assert len(json.loads(as_parquet.response)["predictions"]) == len(users)
