import numpy as np
import pandas as pd

from revenue_model.synthetic import generate_users
from revenue_model.validation import validate_users


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = generate_users(500, 3), generate_users(500, 3), generate_users(500, 4)
    pd.testing.assert_frame_equal(a, b)
    assert not a["revenue"].equals(c["revenue"])


def test_documented_properties_of_the_original_data(users):
    revenue = users["revenue"].to_numpy()
    assert 0.80 <= np.mean(revenue == 0) <= 0.90
    top = np.sort(revenue)[::-1][: len(revenue) // 100]
    assert top.sum() / revenue.sum() >= 0.40
    whales = users.loc[revenue >= np.quantile(revenue, 0.99), "country"].str.upper()
    assert "PE" in whales.value_counts().index[:5]
    missing = users["event_3"].isna()
    assert 0.15 <= missing.mean() <= 0.25
    # Its absence is informative: users without event_3 pay less often.
    assert (revenue[missing.to_numpy()] > 0).mean() < 0.8 * (revenue[~missing.to_numpy()] > 0).mean()
    assert {"iOS", "ios", "Android", "android"} <= set(users["platform"])
    assert (users["country_region"].fillna("") == "").mean() > 0.1
    assert users["install_date"].max() - users["install_date"].min() >= pd.Timedelta(weeks=6)


def test_a_new_sample_holds_categories_training_never_saw(users):
    later = generate_users(5000, seed=99)
    for column in ("country", "device_family"):
        seen = set(users[column].dropna().str.lower())
        assert set(later[column].dropna().str.lower()) - seen


def test_generated_data_passes_validation(users):
    assert len(validate_users(users, with_target=True)) == len(users)
