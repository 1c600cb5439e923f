"""Scoring with a model's own code: a fresh process runs the bundled copy, never this checkout's.

``altered_model`` bundles a copy of revenue_model that doubles predicted_revenue; this
process has imported the unaltered copy. Expected numbers come from the session's
predictor in this process (the unaltered code), doubled by hand where the altered code ran.
"""

import mlflow
import numpy as np
import pandas as pd
import pytest

from pipelines.evaluate import score_model
from pipelines.own_code_scoring import ScoringFailed, score_with_own_code
from revenue_model.code_identity import ForeignCode
from revenue_model.contract import OUTPUT_COLUMNS
from revenue_model.validation import InvalidUsers


@pytest.fixture
def store(champion_store):
    mlflow.set_tracking_uri(champion_store)
    yield champion_store
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="module")
def scored_users(holdout):
    return holdout.drop(columns=["revenue", "install_date", "true_payer_probability",
                                 "true_expected_revenue"]).iloc[:300].reset_index(drop=True)


def doubled(frame: pd.DataFrame) -> np.ndarray:
    out = frame.to_numpy().copy()
    out[:, list(OUTPUT_COLUMNS).index("predicted_revenue")] *= 2
    return out


def test_the_models_bundled_code_scores_not_the_installed_copy(store, altered_model, predictor, scored_users,
                                                                 tmp_path):
    path = tmp_path / "users.csv"
    scored_users.astype({"event_1": int, "event_2": int}).to_csv(path, index=False)  # counts, as files hold them
    out = score_with_own_code(altered_model, path)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    np.testing.assert_array_equal(out.to_numpy(), doubled(predictor.predict(scored_users)))


def test_evaluate_scores_each_model_with_its_own_code(store, altered_model, predictor, scored_users):
    """evaluate (and promote, through it) score in a fresh process too, from a DataFrame."""
    out = score_model(altered_model, scored_users)
    np.testing.assert_array_equal(np.column_stack([out[c] for c in OUTPUT_COLUMNS]),
                                  doubled(predictor.predict(scored_users)))


def test_loading_beside_a_different_installed_copy_is_refused(store, altered_model):
    """In this process revenue_model is already the checkout's: the altered model must not run on it."""
    with pytest.raises(ForeignCode) as error:
        mlflow.pyfunc.load_model(altered_model)
    assert "/code/revenue_model" in str(error.value) and "differ" in str(error.value)


def test_bad_users_come_back_as_one_invalid_users(store, altered_model, scored_users):
    bad = scored_users.head(3).copy()
    bad.loc[0, "event_1"] = -1.0
    bad.loc[2, "platform"] = None
    with pytest.raises(InvalidUsers) as error:
        score_with_own_code(altered_model, bad)
    assert [(p.row, p.field, p.reason) for p in error.value.problems] == [
        (0, "event_1", "must be >= 0"), (2, "platform", "is required")]


def test_an_unknown_model_and_a_timeout_fail_clearly(store, scored_users):
    with pytest.raises(ScoringFailed, match="models:/no_such_model/1 failed"):
        score_with_own_code("models:/no_such_model/1", scored_users.head(2))
    with pytest.raises(ScoringFailed, match="took longer than 0.5 s"):
        score_with_own_code("models:/revenue_model/1", scored_users.head(2), timeout_s=0.5)
