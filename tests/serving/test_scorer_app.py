import asyncio
import io
import json
import math
import threading

import numpy as np
import pandas as pd
import pytest
from mlflow.pyfunc import scoring_server

from revenue_model.contract import OUTPUT_COLUMNS
from revenue_model.predictions import Predictions
from serving import scorer_app
from serving.scorer_app import in_this_thread


def _served(inner):
    """Run ``inner``'s HTTP call as uvicorn would: lifespan first, then a request."""
    app = in_this_thread(inner)

    async def main():
        await app({"type": "lifespan"}, None, None)
        await app({"type": "http"}, None, None)
        return threading.get_ident()

    return asyncio.run(main())


def test_mlflows_worker_thread_call_runs_on_the_loops_thread():
    seen = {}

    async def inner(scope, receive, send):  # what MLflow's /invocations does with the model
        if scope["type"] == "http":
            seen["thread"] = await asyncio.to_thread(threading.get_ident)

    loop_thread = _served(inner)
    assert seen["thread"] == loop_thread


def test_an_error_in_the_call_reaches_the_handler_that_awaited_it():
    caught = []

    def invocations():
        raise ValueError("bad input")

    async def inner(scope, receive, send):
        if scope["type"] == "http":
            try:
                await asyncio.to_thread(invocations)
            except ValueError as error:
                caught.append(str(error))

    _served(inner)
    assert caught == ["bad input"]


def test_the_models_answer_is_written_by_orjson_with_mlflows_values_to_the_bit():
    values = np.array([[1.5, 0.25, 0.0, 1e-320], [1e-05, 5e-324, -0.0, 1e300], [0.1 + 0.2, 2.0**60, 7.0, 123456.789]])
    raw = Predictions(values, columns=list(OUTPUT_COLUMNS))
    ours, mlflows = io.StringIO(), io.StringIO()
    scorer_app.predictions_to_json(raw, ours)
    scorer_app._mlflow_predictions_to_json(raw, mlflows)
    assert ours.getvalue().startswith('{"predictions":[{"predicted_revenue":1.5,"payer_probability":0.25,'
                                      '"revenue_p10":0.0,"revenue_p90":1e-320},{"predicted_revenue":0.00001,')
    assert json.loads(ours.getvalue()) == json.loads(mlflows.getvalue())  # every float read back equal
    assert [[math.copysign(1, v) for v in r.values()] for r in json.loads(ours.getvalue())["predictions"]] == \
        [[math.copysign(1, v) for v in row] for row in values.tolist()]  # -0.0 kept


@pytest.mark.parametrize("raw", [
    Predictions(np.array([[1.5, 0.25, 0.0, 1e-320], [np.nan, np.inf, -np.inf, 1e300], [0.1 + 0.2, -0.0, 7.0, 2.0**60]]),
                columns=list(OUTPUT_COLUMNS)),
    pd.DataFrame({"a": np.array([1, 2], dtype=np.int64), "b": ["x", "é\u2028"], "c": [np.float32(0.1), None]}),
    np.array([[1.0, np.nan], [3.0, 4.0]]),
    {"n": np.int64(3), "f": np.float64(0.3), "x": [np.arange(2)]},
])
def test_answers_other_than_finite_floats_are_mlflows_json_byte_for_byte(raw):
    """The one-shot encoding writes what MLflow's own predictions_to_json writes, NaN and numpy included."""
    ours, mlflows = io.StringIO(), io.StringIO()
    scorer_app.predictions_to_json(raw, ours)
    scorer_app._mlflow_predictions_to_json(raw, mlflows)
    assert ours.getvalue() == mlflows.getvalue()


def test_mlflows_invocations_answers_through_the_one_shot_encoding(monkeypatch):
    class Model:
        def predict(self, data):
            return Predictions(np.array([[1.0, 0.5, 0.0, np.nan]] * len(data)), columns=list(OUTPUT_COLUMNS))

    monkeypatch.setattr(scoring_server, "predictions_to_json", scoring_server.predictions_to_json)  # undone after
    scorer_app.install_one_shot_json()
    assert scoring_server.predictions_to_json is scorer_app.predictions_to_json
    answer = scoring_server.invocations(b"event_1\n1\n", "text/csv", Model(), None)
    assert answer.status == 200
    assert answer.response == ('{"predictions": [{"predicted_revenue": 1.0, "payer_probability": 0.5, '
                               '"revenue_p10": 0.0, "revenue_p90": NaN}]}')
