import numpy as np
import pytest
from scipy.stats import lognorm

from revenue_model.ziln import coverage_level, ziln_mean, ziln_quantile

P = np.array([0.05, 0.3, 0.9, 0.5])
MU = np.array([1.0, 0.0, 2.0, -1.0])
SIGMA = np.array([0.5, 1.0, 1.5, 0.2])


def test_mean_matches_scipy_lognormal():
    expected = P * lognorm.mean(s=SIGMA, scale=np.exp(MU))
    np.testing.assert_allclose(ziln_mean(P, MU, SIGMA), expected, rtol=1e-12)


@pytest.mark.parametrize("q", [0.1, 0.5, 0.8, 0.9, 0.99])
def test_quantile_inverts_the_mixture_cdf(q):
    value = ziln_quantile(q, P, MU, SIGMA)
    cdf = np.where(value > 0, (1 - P) + P * lognorm.cdf(value, s=SIGMA, scale=np.exp(MU)), 1 - P)
    inside = q > 1 - P  # where the quantile falls in the lognormal part
    np.testing.assert_allclose(cdf[inside], q, rtol=1e-9)
    assert (value[~inside] == 0).all()


def test_quantile_by_monte_carlo():
    rng = np.random.default_rng(0)
    draws = np.where(rng.random(400_000) < 0.6, rng.lognormal(1.0, 0.7, 400_000), 0.0)
    assert np.quantile(draws, 0.9) == pytest.approx(ziln_quantile(0.9, 0.6, 1.0, 0.7), rel=0.01)
    assert draws.mean() == pytest.approx(ziln_mean(0.6, 1.0, 0.7), rel=0.01)


def test_coverage_level_gives_the_target_share_of_a_cohort():
    rng = np.random.default_rng(1)
    p = rng.beta(0.5, 3, 10_000)  # mostly unlikely payers, like real installs
    tau = coverage_level(p, 0.9)
    assert np.maximum(tau, 1 - p).mean() == pytest.approx(0.9, abs=1e-9)
    assert tau < 0.9  # the atom at zero over-covers unlikely payers, so payers get a lower level


def test_coverage_level_is_zero_when_zero_already_covers_enough():
    assert coverage_level(np.full(100, 0.05), 0.9) == 0.0
