import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import brier_score_loss, mean_absolute_error, mean_squared_error, r2_score

from revenue_model import metrics as M


@pytest.fixture
def sample():
    rng = np.random.default_rng(0)
    y = np.where(rng.random(5000) < 0.15, rng.lognormal(1, 1.2, 5000), 0.0)
    noisy = y * rng.lognormal(0, 0.8, 5000) + rng.random(5000)
    return y, noisy


def test_error_metrics_match_scikit_learn(sample):
    y, pred = sample
    assert M.mae(y, pred) == pytest.approx(mean_absolute_error(y, pred))
    assert M.rmse(y, pred) == pytest.approx(np.sqrt(mean_squared_error(y, pred)))
    assert M.r2(y, pred) == pytest.approx(r2_score(y, pred))
    assert M.brier(y > 0, np.clip(pred / 10, 0, 1)) == pytest.approx(
        brier_score_loss(y > 0, np.clip(pred / 10, 0, 1)))


def test_spearman_matches_scipy_with_ties(sample):
    y, pred = sample
    assert M.spearman(y, pred) == pytest.approx(spearmanr(y, pred).statistic)


def gini_by_lorenz_area(y, pred):
    """Independent reference: area between the gain curve and the diagonal, by trapezoids.

    Only valid without ties in pred.
    """
    order = np.argsort(-pred)
    x = np.arange(0, len(y) + 1) / len(y)
    gain = np.concatenate([[0.0], np.cumsum(y[order]) / y.sum()])
    area = np.sum((gain[1:] + gain[:-1]) / 2 * np.diff(x))
    return 2 * area - 1


def test_gini_agrees_with_an_independent_lorenz_area():
    rng = np.random.default_rng(1)
    y = rng.lognormal(0, 1, 400)
    pred = y + rng.normal(0, 1, 400)
    # Left Riemann sum vs trapezoids differ by exactly 1/n.
    assert M.gini(y, pred) == pytest.approx(gini_by_lorenz_area(y, pred) + 1 / len(y))


def test_normalized_gini_is_one_for_a_perfect_ranking_and_near_zero_for_random():
    rng = np.random.default_rng(2)
    y = np.where(rng.random(50_000) < 0.2, rng.lognormal(1, 1, 50_000), 0.0)
    assert M.normalized_gini(y, y) == pytest.approx(1.0)
    assert M.normalized_gini(y, 3 * y + 1) == pytest.approx(1.0)  # only the order matters
    assert abs(M.normalized_gini(y, rng.random(50_000))) < 0.03
    assert M.normalized_gini(y, -y) < -0.9


def test_a_constant_prediction_has_zero_gini_whatever_the_row_order():
    y = np.array([0.0, 0.0, 5.0, 1.0])
    assert M.gini(y, np.zeros(4)) == pytest.approx(M.gini(y[::-1], np.zeros(4)))
    assert M.normalized_gini(y, np.ones(4)) == pytest.approx(0.0, abs=0.3)


def test_decile_table_by_hand():
    y = np.arange(20, dtype=float)          # actual 0..19
    pred = np.arange(20, dtype=float)[::-1]  # ranking reversed: top predictions have low actuals
    table = M.decile_table(y, pred, deciles=2)
    assert table["mean_predicted"] == [14.5, 4.5]
    assert table["mean_actual"] == [4.5, 14.5]
    assert M.decile_mape(y, pred, deciles=2) == pytest.approx((10 / 4.5 + 10 / 14.5) / 2)


def test_calibration_shares_and_total_ratio():
    y = np.array([0.0, 1.0, 2.0, 10.0])
    assert M.share_at_or_below(y, np.array([0.0, 1.0, 1.0, 20.0])) == 0.75
    assert M.share_below(y, np.array([0.0, 2.0, 2.0, 1.0])) == 0.25
    assert M.total_ratio(y, np.array([3.0, 3.0, 3.0, 3.0])) == pytest.approx(12 / 13)


# -- groups: ties, the realised metrics and their rounding -----------------------------------------

def reference_gain_mean(y, pred):
    """Independent reference: the per-user gain curve with ties averaged, by sorting."""
    order = np.argsort(-pred, kind="stable")
    sorted_pred, sorted_true = pred[order], y[order]
    smoothed = sorted_true.copy()
    for value in np.unique(sorted_pred):
        tied = sorted_pred == value
        smoothed[tied] = sorted_true[tied].mean()
    return np.mean(np.cumsum(smoothed) / y.sum())


def test_gini_of_groups_equals_the_per_user_gain_curve_with_ties():
    rng = np.random.default_rng(3)
    y = np.where(rng.random(3000) < 0.2, rng.lognormal(1, 1, 3000), 0.0)
    pred = np.round(y + rng.normal(0, 2, 3000))  # many ties
    assert M.gini(y, pred) == pytest.approx(2 * reference_gain_mean(y, pred) - 1, abs=1e-12)


def test_payer_auc_matches_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    payer = rng.random(5000) < 0.1
    probability = np.round(np.clip(0.1 + 0.2 * payer + rng.normal(0, 0.15, 5000), 0, 1), 2)
    assert M.payer_auc(payer, probability) == pytest.approx(roc_auc_score(payer, probability), abs=1e-12)
    assert M.payer_auc(payer, np.ones(5000)) == pytest.approx(0.5)
    assert np.isnan(M.payer_auc(np.zeros(5, bool), np.arange(5.0)))


def test_deciles_without_ties_are_sort_and_split():
    rng = np.random.default_rng(5)
    y, pred = rng.lognormal(0, 1, 1000), rng.random(1000)
    order = np.argsort(-pred)
    table = M.decile_table(y, pred)
    assert table["n"] == [100] * 10
    assert table["mean_actual"] == pytest.approx([y[order[k:k + 100]].mean() for k in range(0, 1000, 100)])
    assert table["mean_predicted"] == pytest.approx([pred[order[k:k + 100]].mean() for k in range(0, 1000, 100)])


def test_deciles_share_a_tied_group_across_the_cut_whatever_the_row_order():
    # Four users tied at 5 straddle the cut between two deciles of 3: each side gets their mean.
    pred = np.array([9.0, 5, 5, 5, 5, 1])
    y = np.array([10.0, 0, 4, 0, 8, 1])
    table = M.decile_table(y, pred, deciles=2)
    assert table["n"] == [3, 3]
    assert table["mean_actual"] == pytest.approx([(10 + 2 * 3) / 3, (2 * 3 + 1) / 3])
    assert table["mean_predicted"] == pytest.approx([(9 + 10) / 3, (10 + 1) / 3])
    shuffled = np.random.default_rng(6).permutation(6)
    assert M.decile_table(y[shuffled], pred[shuffled], deciles=2) == table


def test_realised_metrics_from_exact_groups_match_independent_formulas(sample):
    y, pred = sample
    rng = np.random.default_rng(7)
    out = {"predicted_revenue": pred, "payer_probability": np.clip(pred / 20, 0, 1),
           "revenue_p10": pred * 0.1, "revenue_p90": pred * 3 + rng.random(len(y))}
    got = M.realised_metrics(M.outcomes_of(y, out))
    assert got["mae"] == pytest.approx(mean_absolute_error(y, pred))
    assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, pred)))
    assert got["brier"] == pytest.approx(brier_score_loss(y > 0, out["payer_probability"]))
    assert got["total_ratio"] == pytest.approx(pred.sum() / y.sum())
    assert got["p90_coverage"] == pytest.approx(np.mean(y <= out["revenue_p90"]))
    assert got["p10_below"] == pytest.approx(np.mean(y < out["revenue_p10"]))
    assert got["norm_gini"] == pytest.approx(
        (2 * reference_gain_mean(y, pred) - 1) / (2 * reference_gain_mean(y, y) - 1))
    assert [d["n"] for d in got["deciles"]] == [500] * 10


def test_rounded_groups_approximate_the_ranking_metrics_closely_and_sums_exactly(sample):
    """What the service does: groups of scores rounded to 2% (asinh(1000 x) * 50, as in SQL)."""
    y, pred = sample
    probability = np.clip(pred / 20, 0, 1)
    out = {"predicted_revenue": pred, "payer_probability": probability, "revenue_p10": pred * 0.1,
           "revenue_p90": pred * 3}
    exact = M.outcomes_of(y, out)
    key = lambda x: np.round(np.arcsinh(np.asarray(x) * 1000) * 50)  # noqa: E731
    payer = y > 0
    binned = M.Outcomes(**{**exact.__dict__, "by_prediction": M.groups_of(key(pred), pred, y),
                           "by_probability": M.groups_of(key(probability), payer),
                           "by_actual": M.groups_of(key(y), y)})
    assert len(binned.by_prediction) < len(exact.by_prediction) / 4
    a, b = M.realised_metrics(exact), M.realised_metrics(binned)
    for name in ("mae", "rmse", "brier", "total_ratio", "p90_coverage", "p10_below"):
        assert a[name] == b[name]
    assert b["norm_gini"] == pytest.approx(a["norm_gini"], abs=1e-3)
    assert b["payer_auc"] == pytest.approx(a["payer_auc"], abs=1e-3)
    # Deciles whose mean actual is near zero magnify a cut moved inside a bin.
    assert b["decile_mape"] == pytest.approx(a["decile_mape"], rel=2e-2)
