"""Shared fixtures: small seeded data and one model trained per test session."""

import pytest

from revenue_model.predictor import fit_predictor
from revenue_model.synthetic import generate_users


@pytest.fixture(scope="session")
def users():
    """20,000 synthetic installs with revenue and the generator's truth columns."""
    return generate_users(20_000, seed=7, with_truth=True)


@pytest.fixture(scope="session")
def predictor(users):
    return fit_predictor(users.iloc[:14_000], users.iloc[14_000:17_000], seed=7)


@pytest.fixture(scope="session")
def holdout(users):
    return users.iloc[17_000:].reset_index(drop=True)
