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
