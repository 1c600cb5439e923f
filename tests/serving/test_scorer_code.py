"""The scorer process runs the model's own bundled code, and MLflow's scoring server keeps 3.7 as 3.7.

``altered_model`` bundles a copy of revenue_model that doubles predicted_revenue; the
copy installed here (which the service imports) does not. The scorer is started as the
service starts it (``ScorerProcess``: uvicorn on ``serving.scorer_app``).
"""

from pathlib import Path

import mlflow
import numpy as np
import pytest

from revenue_model.contract import FEATURE_INPUTS, OUTPUT_COLUMNS
from revenue_model.validation import validate_columns
from serving.scorer import to_scorer_columns
from serving.scorer_process import ScorerProcess
from tests.serving.conftest import Http, wait_until


@pytest.fixture(scope="module")
def altered_scorer(champion_store, altered_model, tmp_path_factory):
    mlflow.set_tracking_uri(champion_store)
    try:
        model_dir = Path(mlflow.artifacts.download_artifacts(
            altered_model, dst_path=str(tmp_path_factory.mktemp("altered-download"))))
    finally:
        mlflow.set_tracking_uri(None)
    scorer = ScorerProcess(model_dir, port=0, workers=1, threads=1).start()
    http = Http(f"http://127.0.0.1:{scorer.port}")

    def answers() -> bool:
        assert scorer.alive(), "the scorer exited (its output is above)"
        try:
            return http.get("/ping", timeout=2)[0] == 200
        except OSError:
            return False

    try:
        assert wait_until(answers, 300, 0.3), "the scorer did not answer /ping"
        yield http
    finally:
        scorer.stop()


def _outputs(body) -> np.ndarray:
    return np.array([[p[c] for c in OUTPUT_COLUMNS] for p in body["predictions"]])


def test_the_scorer_runs_the_models_bundled_code_not_the_installed_copy(altered_scorer, predictor, holdout):
    users = holdout[list(FEATURE_INPUTS)].iloc[:50]
    status, _, body = altered_scorer.post("/invocations", {"inputs": to_scorer_columns(validate_columns(users))})
    assert status == 200, body
    expected = predictor.predict(users).to_numpy().copy()
    expected[:, list(OUTPUT_COLUMNS).index("predicted_revenue")] *= 2  # what the bundled copy does
    np.testing.assert_allclose(_outputs(body), expected, rtol=1e-12)


def test_a_csv_body_with_a_missing_column_is_a_400_listing_every_row(altered_scorer):
    csv = b"country,platform,event_1,event_2\nes,ios,3,1\npe,android,0,0\n"
    status, _, body = altered_scorer.post("/invocations", raw=csv, headers={"Content-Type": "text/csv"})
    assert status == 400
    assert body["error_code"] == "INVALID_PARAMETER_VALUE"
    assert body["problems"] == [{"row": 0, "field": "source", "reason": "is required"},
                                {"row": 1, "field": "source", "reason": "is required"}]


def _fractional_point(predictor, field: str) -> float:
    """A value k + 0.7 whose answer differs from k's: truncating it to k would show."""
    base = {"country": "us", "source": "Organic", "platform": "ios", "event_1": 5.0, "event_2": 2.0, "event_3": 1.0}
    for k in (1, 2, 3, 5, 8, 13, 21, 34, 55):
        out = predictor.predict([{**base, field: float(k)}, {**base, field: k + 0.7}]).to_numpy()
        if not np.allclose(out[0], out[1], rtol=1e-9, atol=0):
            return {**base, field: k + 0.7}, {**base, field: float(k)}
    raise AssertionError(f"the model answers k and k + 0.7 alike for every k tried in {field}")


@pytest.mark.parametrize("field", ["event_1", "event_2", "event_3"])
def test_a_fractional_event_stays_fractional_through_the_scoring_server(http, predictor, field):
    """Through the service's /invocations to MLflow's scoring server, with the "inputs" JSON
    its own proxy sends: 3.7 must reach the model as 3.7 (a `long` column would make it 3)."""
    fractional, truncated = _fractional_point(predictor, field)
    body = {"inputs": {c: [fractional.get(c)] for c in FEATURE_INPUTS}}
    status, _, answer = http.post("/invocations", body)
    assert status == 200, answer
    got = _outputs(answer)[0]
    np.testing.assert_allclose(got, predictor.predict([fractional]).to_numpy()[0], rtol=1e-12)
    assert not np.allclose(got, predictor.predict([truncated]).to_numpy()[0], rtol=1e-9, atol=0)
