"""Drift: PSI against a textbook implementation written here, profiles, folding, unseen, tiny windows.

Every expected value is computed in this file from the definitions (width_bucket's
"number of edges <= x", PSI = sum (a - e) ln(a / e) with empty bins at 1e-4), never by
the module under test.
"""

import collections
import json
import math

import numpy as np
import pytest

from revenue_model import drift as D
from revenue_model.synthetic import generate_users
from revenue_model.validation import validate_columns


def textbook_psi(expected, actual, eps=1e-4):
    total = 0.0
    for e, a in zip(expected, actual):
        e, a = max(e, eps), max(a, eps)
        total += (a - e) * math.log(a / e)
    return total


def bucket_of(x, edges):
    """PostgreSQL's width_bucket(x, thresholds): how many thresholds are <= x."""
    return sum(1 for t in edges if t <= x)


def outputs_of(columns):
    """Stand-in model outputs: revenue follows event_2, payer probability event_1."""
    return {"predicted_revenue": 0.5 * columns["event_2"] + 0.1,
            "payer_probability": columns["event_1"] / (columns["event_1"] + 20.0)}


@pytest.fixture(scope="module")
def reference():
    return validate_columns(generate_users(20_000, seed=11))


@pytest.fixture(scope="module")
def profile(reference):
    return D.build_profile(reference, outputs_of(reference))


@pytest.fixture(scope="module")
def window():
    return validate_columns(generate_users(3000, seed=12))


def report_of(profile, columns, **kwargs):
    return D.frame_drift(profile, columns, outputs_of(columns), **kwargs)


@pytest.mark.parametrize("seed", range(5))
def test_psi_of_shares_matches_the_textbook_formula(seed):
    rng = np.random.default_rng(seed)
    expected, actual = rng.dirichlet(np.ones(12)), rng.dirichlet(np.ones(12))
    expected[rng.integers(12)] = 0.0  # an empty bin on each side
    actual[rng.integers(12)] = 0.0
    assert D.psi(expected, actual) == pytest.approx(textbook_psi(expected, actual), rel=1e-12)


def test_numeric_column_psi_matches_an_independent_binning():
    rng = np.random.default_rng(3)
    ref = rng.gamma(2.0, 3.0, 4000)
    ref[rng.random(4000) < 0.2] = np.nan
    edges = [1.0, 2.5, 4.0, 8.0, 15.0]
    shares = np.bincount([bucket_of(x, edges) for x in ref[~np.isnan(ref)]], minlength=6) / len(ref)
    column = {"kind": "numeric", "edges": edges, "shares": shares.tolist(),
              "missing_share": float(np.isnan(ref).mean())}
    win = rng.gamma(2.5, 3.0, 900)
    win[:30] = np.nan
    win_shares = np.bincount([bucket_of(x, edges) for x in win[30:]], minlength=6) / len(win)

    result = D.column_drift(column, D.count_numeric(column, win), min_rows=100)

    want = textbook_psi([*shares, column["missing_share"]], [*win_shares, 30 / 900])
    assert result["psi"] == pytest.approx(want, rel=1e-9)
    assert result["missing_share"] == pytest.approx(30 / 900)
    assert result["reference_missing_share"] == pytest.approx(np.isnan(ref).mean())
    assert "unseen_share" not in result


def test_categorical_reference_folds_and_estimates_unseen_with_good_turing():
    values = ["US"] * 50 + ["us "] * 10 + ["BR"] * 30 + ["zz"] * 1 + ["xq"] * 1 + [None] * 8
    column = D.categorical_reference("country", np.array(values, dtype=object), top_k=2)
    assert column["top"] == ["us", "br"]
    assert column["shares"] == pytest.approx([0.60, 0.30, 0.02])  # the last: (other), zz and xq
    assert column["missing_share"] == pytest.approx(0.08)
    assert column["unseen_share"] == pytest.approx(0.02)  # two categories seen once in 100 rows
    assert column["keys"] == ["br", "us", "xq", "zz"]


def test_categorical_psi_has_a_leftover_bin_for_unseen_categories():
    ref = np.array(["a"] * 60 + ["b"] * 30 + ["c"] * 9 + ["d"], dtype=object)
    column = D.categorical_reference("source", ref)
    win = np.array(["A"] * 40 + ["b"] * 20 + ["d"] * 5 + ["new"] * 30 + [None] * 5, dtype=object)

    result = D.column_drift(column, D.count_categorical("source", column, win), min_rows=10)

    u = 1 / 100  # "d" occurs once: the reference's expected unseen share
    expected = [0.6 * (1 - u), 0.3 * (1 - u), 0.09 * (1 - u), 0.01 * (1 - u), 0.0, u]  # a b c d missing unseen
    actual = [0.40, 0.20, 0.0, 0.05, 0.05, 0.30]
    assert result["psi"] == pytest.approx(textbook_psi(expected, actual), rel=1e-9)
    assert result["unseen_share"] == pytest.approx(0.30)
    assert result["missing_share"] == pytest.approx(0.05)
    assert result["status"] == "drift"


def test_identical_distributions_have_psi_near_zero(reference, profile):
    report = report_of(profile, reference)
    for column in D.NUMERIC_INPUTS + D.OUTPUTS:
        assert report["columns"][column]["psi"] == pytest.approx(0.0, abs=1e-12)
    for column in D.CATEGORICAL_INPUTS:
        # Only the leftover bin differs: the reference expects a share u of new categories (its
        # singletons), the reference itself has none: (1e-4 - u) ln(1e-4 / u), plus O(u^2).
        u = profile["columns"][column]["unseen_share"]
        leftover = (u - 1e-4) * math.log(u / 1e-4) if u > 1e-4 else 0.0
        assert report["columns"][column]["psi"] == pytest.approx(leftover, abs=1e-3), column
        assert report["columns"][column]["unseen_share"] == 0.0
    assert report["status"] == "ok"
    assert report["n"] == report["reference_n"] == 20_000


def test_disjoint_distributions_have_a_very_large_psi():
    rng = np.random.default_rng(5)
    numeric = D.numeric_reference(rng.random(5000))
    far = D.column_drift(numeric, D.count_numeric(numeric, 100 + rng.random(1000)))
    # Everything lands in the open top bin, which held a tenth of the reference.
    want = textbook_psi([*numeric["shares"], 0.0], [0.0] * (len(numeric["shares"]) - 1) + [1.0, 0.0])
    assert far["psi"] == pytest.approx(want, rel=1e-9)
    assert far["psi"] > 5 and far["status"] == "drift"

    categorical = D.categorical_reference("source", np.array(["a", "b"] * 500, dtype=object))
    new = D.column_drift(categorical, D.count_categorical("source", categorical,
                                                          np.array(["x", "y"] * 500, dtype=object)))
    assert new["psi"] == pytest.approx(textbook_psi([0.5, 0.5, 0, 0, 0], [0, 0, 0, 0, 1]), rel=1e-9)
    assert new["psi"] > 5 and new["unseen_share"] == 1.0


def test_numeric_edges_survive_heavy_ties_and_split_a_continuous_column_in_tenths():
    rng = np.random.default_rng(1)
    ties = np.where(rng.random(10_000) < 0.9, 0.0, rng.integers(1, 10, 10_000).astype(float))
    column = D.numeric_reference(ties)
    assert np.all(np.diff(column["edges"]) > 0) and column["edges"][0] > 0
    assert column["shares"][0] == pytest.approx(np.mean(ties == 0))  # every zero in the first bin

    smooth = D.numeric_reference(rng.random(10_000))
    assert len(smooth["edges"]) == 9
    assert smooth["shares"] == pytest.approx([0.1] * 10, abs=0.001)

    empty = D.numeric_reference(np.full(50, np.nan))
    assert (empty["edges"], empty["shares"], empty["missing_share"]) == ([], [0.0], 1.0)
    with pytest.raises(ValueError, match="at least one row"):
        D.numeric_reference(np.array([]))


@pytest.mark.parametrize("column, value, key", [
    ("platform", "iOS", "ios"), ("platform", " IOS ", "ios"), ("platform", "iPhone OS", "ios"),
    ("platform", "ANDROID", "android"), ("country", " Pe ", "pe"), ("source", "Facebook  ADS", "facebook ads"),
    ("country", None, "(missing)"), ("country", "null", "(missing)"),
    ("os_version", "15.0.2", "15"), ("os_version", "v15", "15"), ("os_version", "9", "9"),
    ("os_version", "unknown", "(missing)"), ("os_version", None, "(missing)"),
])
def test_drift_key_is_the_models_folding(column, value, key):
    assert D.drift_key(column, value) == key


def test_spelling_variants_are_not_drift(reference, profile, window):
    respelled = dict(window)
    respell = {"iOS": " IOS ", "ios": "iPhone OS", "IOS": "iPad", "Android": "ANDROID ",
               "android": "android phone", "ANDROID": "Android OS"}
    respelled["platform"] = np.array([respell.get(v, v) for v in window["platform"]], dtype=object)
    respelled["country"] = np.array([f" {v.swapcase()} " for v in window["country"]], dtype=object)
    respelled["source"] = np.array([v.upper() for v in window["source"]], dtype=object)
    # A comparison of raw values would see nothing but new platforms.
    assert not set(respelled["platform"]) & set(reference["platform"])

    before, after = report_of(profile, window), report_of(profile, respelled)

    assert after == before
    for column in ("platform", "country", "source"):
        assert after["columns"][column]["status"] == "ok", column


def test_unseen_categories_are_counted(profile, window):
    shifted = dict(window)
    source = window["source"].copy()
    source[: 900] = "NewNet Ads"  # 30% of 3000 from a network training never had
    shifted["source"] = source

    report = report_of(profile, shifted)

    assert report["columns"]["source"]["unseen_share"] == pytest.approx(0.30)
    assert report["columns"]["source"]["status"] == "drift"
    assert report_of(profile, window)["columns"]["source"]["unseen_share"] == 0.0


def test_a_shifted_stream_is_flagged_on_the_shifted_columns_only(reference, profile, window):
    rng = np.random.default_rng(2)
    n = len(window["country"])
    shifted = dict(window)
    shifted["event_2"] = window["event_2"] * 3 + 2
    shifted["country"] = np.where(rng.random(n) < 0.25, "NGA", window["country"]).astype(object)
    shifted["os_version"] = np.where(rng.random(n) < 0.3, "19.1", window["os_version"]).astype(object)
    shifted["platform"] = np.array([v.upper() for v in window["platform"]], dtype=object)  # spelling only

    report = report_of(profile, shifted)

    status = {c: v["status"] for c, v in report["columns"].items()}
    for column in ("event_2", "country", "os_version", "predicted_revenue"):
        assert status[column] == "drift", (column, report["columns"][column])
    for column in ("platform", "source", "device_family", "country_region", "event_1", "event_3",
                   "payer_probability"):
        assert status[column] == "ok", (column, report["columns"][column])
    assert report["status"] == "drift"
    seen = {v.strip().lower() for v in reference["country"]}
    unseen = np.mean([v.strip().lower() not in seen for v in shifted["country"]])
    assert unseen > 0.25 and report["columns"]["country"]["unseen_share"] == pytest.approx(unseen)


def test_in_distribution_windows_are_ok(profile):
    for seed in (21, 22, 23):
        report = report_of(profile, validate_columns(generate_users(2000, seed=seed)))
        assert report["status"] == "ok", {c: v["psi"] for c, v in report["columns"].items()}


def test_empty_and_tiny_windows_are_insufficient_data(profile, window):
    empty = {c: window[c][:0] for c in window}
    report = report_of(profile, empty)
    assert report["status"] == "insufficient_data" and report["n"] == 0
    for entry in report["columns"].values():
        assert entry["psi"] is None and entry["status"] == "insufficient_data"
        assert entry["missing_share"] is None and entry.get("unseen_share") is None

    tiny = {c: window[c][:10] for c in window}
    few = report_of(profile, tiny)
    assert few["status"] == "insufficient_data" and few["n"] == 10
    assert few["columns"]["event_3"]["missing_share"] == pytest.approx(np.isnan(tiny["event_3"]).mean())
    enough = report_of(profile, tiny, min_rows=10)
    assert all(v["psi"] is not None for v in enough["columns"].values())
    assert enough["status"] != "insufficient_data"


def test_counts_in_the_shape_sql_returns_give_the_same_report(profile, window):
    columns = profile["columns"]
    counts = {}
    for c in D.NUMERIC_INPUTS + D.OUTPUTS:
        values = window[c] if c in window else outputs_of(window)[c]
        buckets = collections.Counter(None if math.isnan(x) else bucket_of(x, columns[c]["edges"])
                                      for x in values.tolist())
        counts[c] = D.numeric_counts(columns[c], buckets)
    for c in D.CATEGORICAL_INPUTS:
        counts[c] = D.categorical_counts(c, columns[c], collections.Counter(window[c].tolist()))

    assert D.drift_report(profile, counts) == report_of(profile, window)
    with pytest.raises(ValueError, match="outside"):
        D.numeric_counts(columns["event_1"], {len(columns["event_1"]["edges"]) + 1: 3})


@pytest.mark.parametrize("psi, status", [
    (None, "insufficient_data"), (0.0, "ok"), (0.0999, "ok"), (0.1, "warn"), (0.2499, "warn"),
    (0.25, "drift"), (7.0, "drift"),
])
def test_status_thresholds(psi, status):
    assert D.status_of(psi) == status


def test_the_overall_status_is_the_worst_columns():
    assert D.worst_status(["ok", "warn", "ok"]) == "warn"
    assert D.worst_status(["ok", "insufficient_data"]) == "insufficient_data"
    assert D.worst_status(["insufficient_data", "drift", "warn"]) == "drift"


def test_the_profile_round_trips_through_json(profile, window):
    again = D.profile_from_json(json.dumps(profile))
    assert again == profile
    assert report_of(again, window) == report_of(profile, window)
    assert set(profile["columns"]) == set(D.COLUMNS)
    with pytest.raises(ValueError, match="version"):
        D.profile_from_json(json.dumps({**profile, "version": 99}))
    with pytest.raises(ValueError, match="event_2"):
        D.profile_from_json(json.dumps({**profile, "columns": {
            c: v for c, v in profile["columns"].items() if c != "event_2"}}))
