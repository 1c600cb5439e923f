"""Behaviour of the trained model: invariance, direction and calibration tables."""


import numpy as np
import pandas as pd
import pytest

from revenue_model import metrics as M
from revenue_model.contract import OUTPUT_COLUMNS
from revenue_model.fast_booster import FastBooster
from revenue_model.predictor import RevenuePredictor
from revenue_model.validation import InvalidUsers

USER = {"country": "es", "country_region": "Madrid", "source": "Organic", "platform": "iOS",
        "device_family": "Apple iPhone", "os_version": "14.4", "event_1": 100, "event_2": 50,
        "event_3": 10.0}


def test_outputs_are_the_contract_columns_and_sane(predictor, holdout):
    out = predictor.predict(holdout)
    assert list(out.columns) == list(OUTPUT_COLUMNS) and len(out) == len(holdout)
    assert np.isfinite(out.to_numpy()).all()
    assert ((out.payer_probability >= 0) & (out.payer_probability <= 1)).all()
    assert (out.revenue_p10 >= 0).all() and (out.revenue_p10 <= out.revenue_p90).all()
    assert (out.predicted_revenue > 0).all()


@pytest.mark.parametrize("spellings", [
    {"platform": ("iOS", "ios", "IOS", " ios ")},
    {"country": ("es", "ES", " Es")},
    {"source": ("Organic", "organic", "ORGANIC")},
])
def test_spellings_of_one_category_score_the_same(predictor, spellings):
    (field, values), = spellings.items()
    out = predictor.predict([{**USER, field: v} for v in values]).to_numpy()
    np.testing.assert_array_equal(out, np.repeat(out[:1], len(out), axis=0))


@pytest.mark.parametrize("event", ["event_1", "event_2", "event_3"])
def test_more_of_any_event_never_lowers_payer_probability(predictor, holdout, event):
    base = holdout.iloc[:300].drop(columns=["revenue"]).copy()
    base["event_3"] = base["event_3"].fillna(1.0)
    probabilities = []
    for factor in (1, 2, 5, 20):
        more = base.copy()
        more[event] = base[event] * factor + (factor - 1)
        probabilities.append(predictor.predict(more).payer_probability.to_numpy())
    assert (np.diff(np.vstack(probabilities), axis=0) >= -1e-12).all()


@pytest.mark.parametrize("change", [
    {"event_3": None}, {"country": "ZZ"}, {"device_family": "A Phone Nobody Has"},
    {"source": "Brand New Network"}, {"os_version": "unknown"}, {"country_region": ""},
    {"platform": "Windows"},
])
def test_missing_and_unseen_values_still_score(predictor, change):
    out = predictor.predict([{**USER, **change}])
    assert np.isfinite(out.to_numpy()).all()


def test_missing_event_3_is_informative_not_zero(predictor):
    missing, zero = predictor.predict([{**USER, "event_3": None}, {**USER, "event_3": 0.0}]).predicted_revenue
    assert missing != zero


def test_bad_input_raises_the_listing_error(predictor):
    with pytest.raises(InvalidUsers) as error:
        predictor.predict([{**USER, "event_1": -1}, {**USER, "country": None}])
    assert [(p.row, p.field) for p in error.value.problems] == [(0, "event_1"), (1, "country")]


def test_it_ranks_and_sums_like_the_truth_on_a_holdout(predictor, holdout):
    out = predictor.predict(holdout)
    y, truth = holdout["revenue"].to_numpy(), holdout["true_expected_revenue"].to_numpy()
    # The generator's own expected value, using traits no model sees, is the ceiling.
    assert M.normalized_gini(y, out.predicted_revenue) > 0.8 * M.normalized_gini(y, truth)
    assert 0.75 < out.predicted_revenue.sum() / truth.sum() < 1.25
    assert 0.85 <= M.share_at_or_below(y, out.revenue_p90) <= 0.95
    assert M.brier(y > 0, out.payer_probability) < 1.15 * M.brier(y > 0, holdout["true_payer_probability"])


def test_one_row_and_the_batch_path_agree(predictor, holdout):
    """The single-row C API call and the matrix call are the same trees."""
    batch = predictor.predict(holdout.iloc[:50]).to_numpy()
    rows = np.vstack([predictor.predict(holdout.iloc[i:i + 1]).to_numpy() for i in range(50)])
    np.testing.assert_allclose(rows, batch, rtol=1e-12)


def test_fast_booster_equals_lightgbm_predict(predictor, holdout):
    from revenue_model.validation import validate_columns
    X = predictor.plan.transform(validate_columns(holdout))
    booster = predictor.ziln.payer
    np.testing.assert_array_equal(FastBooster(booster).predict(X), booster.predict(X))
    np.testing.assert_array_equal(FastBooster(booster).predict(np.ascontiguousarray(X)), booster.predict(X))


def test_text_round_trip_gives_identical_predictions(predictor, holdout):
    again = RevenuePredictor.from_texts(predictor.to_texts())
    pd.testing.assert_frame_equal(again.predict(holdout), predictor.predict(holdout))
