import json
import math

import numpy as np
import pytest

from revenue_model.features import (
    FEATURE_NAMES, MISSING_KEY, FeaturePlan, category_key, fit_features, parse_os_version,
)
from revenue_model.validation import validate_columns


@pytest.mark.parametrize("column, value, key", [
    ("platform", "iOS", "ios"), ("platform", " IOS ", "ios"), ("platform", "android", "android"),
    ("platform", "ANDROID", "android"), ("platform", "Windows", "other"),
    ("source", "Facebook  Ads", "facebook ads"), ("country", "pe", "pe"), ("country", "PE", "pe"),
    ("device_family", None, MISSING_KEY), ("country_region", "None", MISSING_KEY),
    ("device_family", "nan", MISSING_KEY), ("source", " NULL ", MISSING_KEY),
])
def test_category_keys_fold_spellings(column, value, key):
    assert category_key(column, value) == key


@pytest.mark.parametrize("text, major, minor", [
    ("14.4", 14, 4), ("10", 10, 0), ("15.0.2", 15, 0), ("unknown", None, None), (None, None, None),
    ("v12.1", 12, 1), ("13.x", 13, None),
])
def test_os_versions_parse_to_major_and_minor(text, major, minor):
    got = parse_os_version(text)
    assert (math.isnan(got[0]) if major is None else got[0] == major)
    assert (math.isnan(got[1]) if minor is None else got[1] == minor)


def frame(rows):
    base = {"source": "Organic", "platform": "iOS", "event_1": 1.0, "event_2": 1.0}
    return validate_columns([{**base, **r} for r in rows], with_target=True)


def test_training_rows_never_see_their_own_revenue():
    """A country seen once gets, in training, the prior: its own revenue is out of fold."""
    rows = [{"country": "zz", "revenue": 100.0}] + [{"country": "es", "revenue": 0.0}] * 99
    columns = frame(rows)
    state, X = fit_features(columns, columns["revenue"], smoothing=1.0)
    col = list(FEATURE_NAMES).index("country_payer_rate")
    assert X[0, col] == pytest.approx(state["prior_payer_rate"])
    # The fitted table (used at serving time) does include it.
    table = state["categories"]["country"]
    assert table["payer_rate"][table["keys"].index("zz")] > state["prior_payer_rate"]


def test_unseen_and_missing_categories_get_prior_rates_and_the_other_code():
    columns = frame([{"country": "es", "revenue": float(i % 3 == 0)} for i in range(200)])
    state, _ = fit_features(columns, columns["revenue"], min_count=10)
    plan = FeaturePlan(state)
    X = plan.transform(validate_columns([{"country": "never-seen", "source": "New Network",
                                          "platform": "iOS", "event_1": 1, "event_2": 1}]))
    named = dict(zip(plan.feature_names, X[0]))
    assert named["country_frequency"] == 0
    assert named["country_payer_rate"] == pytest.approx(state["prior_payer_rate"])
    assert named["country_code"] == 0 and named["source_code"] == 0
    assert named["platform_code"] > 0


def test_state_is_plain_json_and_reloads_to_the_same_features(users):
    columns = validate_columns(users.iloc[:3000], with_target=True)
    state, _ = fit_features(columns, columns["revenue"])
    reloaded = FeaturePlan(json.loads(json.dumps(state)))
    fresh = validate_columns(users.iloc[3000:3500])
    np.testing.assert_array_equal(FeaturePlan(state).transform(fresh), reloaded.transform(fresh))


def test_spellings_of_one_category_give_the_same_features(users):
    columns = validate_columns(users.iloc[:3000], with_target=True)
    plan = FeaturePlan(fit_features(columns, columns["revenue"])[0])
    base = {"country": "pe", "source": "Organic", "event_1": 3, "event_2": 1}
    rows = [{**base, "platform": p} for p in ("iOS", "ios", "IOS", " ios ")]
    X = plan.transform(validate_columns(rows))
    np.testing.assert_array_equal(X, np.repeat(X[:1], len(X), axis=0))


def test_arrow_and_object_columns_give_the_same_features(users):
    columns = validate_columns(users.iloc[:3000], with_target=True)
    plan = FeaturePlan(fit_features(columns, columns["revenue"])[0])
    arrow = validate_columns(users.iloc[3000:4000])
    objects = validate_columns(users.iloc[3000:4000].astype(object).where(users.notna(), None))
    np.testing.assert_array_equal(plan.transform(arrow), plan.transform(objects))


def test_event_features():
    columns = frame([{"country": "es", "event_1": 3.0, "event_2": 5.0, "revenue": 0.0}] * 10)
    plan = FeaturePlan(fit_features(columns, columns["revenue"])[0])
    named = dict(zip(plan.feature_names, plan.transform(columns)[0]))
    assert named["events_total"] == 8 and named["event_2_per_event_1"] == 5 / 4
    assert named["event_3_missing"] == 1 and math.isnan(named["event_3"])
    assert named["log_events_total"] == pytest.approx(np.log(9))


def test_a_state_from_another_version_is_refused():
    with pytest.raises(ValueError, match="version"):
        FeaturePlan({"version": 999})
