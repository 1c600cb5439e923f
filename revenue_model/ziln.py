"""A zero-inflated lognormal (ZILN) model of D7 revenue, built from three LightGBM boosters.

After Wang, Liu and Miao (2019), "A Deep Probabilistic Model for Customer
Lifetime Value Prediction": revenue Y is 0 with probability 1 - p, and
lognormal(mu, sigma) otherwise. Instead of one network with three heads,
three boosters each fit one part:

- ``payer``: p = P(Y > 0), binary log loss on all users;
- ``log_mean``: mu = E[log Y | Y > 0], squared error on payers;
- ``log_spread``: sigma^2 = E[(log Y - mu)^2 | Y > 0], a gamma regression on
  out-of-fold squared residuals of payers (in-fold residuals are too small).

From these, for every user (all in USD):
- ``mean_correction``: log of E[Y | Y > 0] / exp(mu + sigma^2 / 2), Poisson
  deviance on payers started from the lognormal mean. Real spend has a
  heavier tail than one lognormal (whales are a second mode, more common in
  some countries), so the lognormal mean alone comes out 20-30% short.

From these, for every user (all in USD):
- predicted_revenue = p * exp(mu + sigma^2 / 2 + mean_shift + correction), the mean, so it
  sums to cohort totals;
- revenue_p10 / revenue_p90: quantiles of the mixture. The atom at zero means
  a user with p < 0.1 has a 90th percentile of 0 and is at or below it with
  probability 1 - p > 0.9, so per-user 90th percentiles cover far more than
  90% of a cohort. ``p90_level`` is the level at which a cohort like the dev
  split has exactly 90% of users at or below their revenue_p90.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property

import lightgbm as lgb
import numpy as np
from scipy.special import ndtri

from revenue_model import compiled_trees
from revenue_model.fast_booster import FastBooster

log = logging.getLogger(__name__)

MIN_SPREAD = 0.05  # log-USD; keeps quantiles finite when a leaf saw identical payments


@dataclass(frozen=True)
class ZilnParams:
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 40
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.9
    lambda_l2: float = 1.0
    max_rounds: int = 2000
    early_stopping_rounds: int = 100
    spread_folds: int = 3
    num_threads: int = 2

    def booster_params(self, objective: str, seed: int) -> dict:
        return {
            "objective": objective, "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves, "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction, "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1, "lambda_l2": self.lambda_l2, "num_threads": self.num_threads,
            "seed": seed, "deterministic": True, "force_row_wise": True, "verbosity": -1,
            "cat_smooth": 20, "min_data_per_group": 50,
        }


@dataclass
class ZilnModel:
    payer: lgb.Booster
    log_mean: lgb.Booster
    log_spread: lgb.Booster
    mean_correction: lgb.Booster | None = None
    mean_shift: float = 0.0
    p90_level: float = 0.9
    best_rounds: dict = field(default_factory=dict)
    # {booster name: its trees compiled (revenue_model.compiled_trees)}, set by whoever loaded
    # them; used for calls of more than one row. None: LightGBM for every call.
    compiled: dict | None = None

    @cached_property
    def fast(self) -> dict[str, FastBooster]:
        return {name: FastBooster(getattr(self, name), raw_score=compiled_trees.raw_score(name))
                for name in BOOSTERS}


BOOSTERS = ("payer", "log_mean", "log_spread", "mean_correction")


def fit_ziln(X_train: np.ndarray, revenue_train: np.ndarray, X_dev: np.ndarray,
             revenue_dev: np.ndarray, *, feature_names, categorical_features=(),
             payer_increasing=(), payer_ignores=(), params: ZilnParams = ZilnParams(),
             seed: int = 0) -> ZilnModel:
    """Fit the boosters with early stopping on the dev split (rows x features, USD).

    The payer booster is constrained to be non-decreasing in ``payer_increasing``
    and never splits on ``payer_ignores`` (they are held constant while it trains).
    """
    names = list(feature_names)
    cats = [c for c in categorical_features if c in names]
    fit = lambda X, y, Xd, yd, objective: _fit_booster(  # noqa: E731
        X, y, Xd, yd, names, cats, params.booster_params(objective, seed), params)

    ignored = [names.index(c) for c in payer_ignores]
    payer_params = dict(params.booster_params("binary", seed),
                        monotone_constraints=[int(n in payer_increasing) for n in names],
                        monotone_constraints_method="intermediate")  # "advanced" broke it here
    payer = _fit_booster(_constant_columns(X_train, ignored), revenue_train > 0,
                         _constant_columns(X_dev, ignored), revenue_dev > 0, names, cats,
                         payer_params, params)

    paying, paying_dev = revenue_train > 0, revenue_dev > 0
    log_y, log_y_dev = np.log(revenue_train[paying]), np.log(revenue_dev[paying_dev])
    Xp, Xp_dev = X_train[paying], X_dev[paying_dev]
    log_mean = fit(Xp, log_y, Xp_dev, log_y_dev, "regression")

    mu_oof = _out_of_fold_mean(Xp, log_y, names, cats, params, seed, log_mean.best_iteration)
    residual2 = (log_y - mu_oof) ** 2
    residual2_dev = (log_y_dev - log_mean.predict(Xp_dev, num_threads=params.num_threads)) ** 2
    log_spread = fit(Xp, np.maximum(residual2, 1e-6), Xp_dev, np.maximum(residual2_dev, 1e-6), "gamma")

    # The correction starts from each payer's lognormal mean (out-of-fold for training rows).
    threads = params.num_threads
    offset = mu_oof + 0.5 * _spread2(log_spread.predict(Xp, num_threads=threads))
    offset_dev = (log_mean.predict(Xp_dev, num_threads=threads)
                  + 0.5 * _spread2(log_spread.predict(Xp_dev, num_threads=threads)))
    # A constant first (all training payers' total over their lognormal total), then trees for its shape.
    mean_shift = float(np.log(revenue_train[paying].sum() / np.exp(offset).sum()))
    offset, offset_dev = offset + mean_shift, offset_dev + mean_shift
    correction_params = dict(params.booster_params("poisson", seed), learning_rate=0.02,
                             min_data_in_leaf=max(4 * params.min_data_in_leaf, 100), num_leaves=15)
    mean_correction = _fit_booster(Xp, revenue_train[paying], Xp_dev, revenue_dev[paying_dev], names,
                                   cats, correction_params, params, offset, offset_dev)

    best_rounds = {"payer": payer.best_iteration, "log_mean": log_mean.best_iteration,
                   "log_spread": log_spread.best_iteration,
                   "mean_correction": mean_correction.best_iteration}
    # Keep only the trees up to each best round, exactly as a saved and reloaded model has them.
    frozen = [lgb.Booster(model_str=b.model_to_string())
              for b in (payer, log_mean, log_spread, mean_correction)]
    model = ZilnModel(*frozen, mean_shift=mean_shift, best_rounds=best_rounds)
    model.p90_level = coverage_level(model.fast["payer"].predict(X_dev, num_threads=threads), 0.9)
    return model


def _constant_columns(X: np.ndarray, columns: list[int]) -> np.ndarray:
    if not columns:
        return X
    X = X.copy()
    X[:, columns] = 0.0
    return X


def _fit_booster(X, y, X_dev, y_dev, names, cats, booster_params, params: ZilnParams,
                 init_score=None, init_score_dev=None) -> lgb.Booster:
    train = lgb.Dataset(X, label=np.asarray(y, dtype=np.float64), feature_name=names,
                        categorical_feature=cats, init_score=init_score, free_raw_data=True)
    dev = lgb.Dataset(X_dev, label=np.asarray(y_dev, dtype=np.float64), reference=train,
                      init_score=init_score_dev)
    return lgb.train(booster_params, train, num_boost_round=params.max_rounds, valid_sets=[dev],
                     callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)])


def _out_of_fold_mean(X, log_y, names, cats, params: ZilnParams, seed: int, rounds: int) -> np.ndarray:
    fold = np.random.default_rng(seed + 1).integers(0, params.spread_folds, len(log_y))
    out = np.empty(len(log_y))
    booster_params = params.booster_params("regression", seed)
    for f in range(params.spread_folds):
        rows = fold == f
        data = lgb.Dataset(X[~rows], label=log_y[~rows], feature_name=names, categorical_feature=cats)
        booster = lgb.train(booster_params, data, num_boost_round=max(rounds, 1))
        out[rows] = booster.predict(X[rows], num_threads=params.num_threads)
    return out


def _spread2(raw: np.ndarray) -> np.ndarray:
    return np.maximum(raw, MIN_SPREAD ** 2)


def predict_ziln(model: ZilnModel, X: np.ndarray, *, num_threads: int = 1) -> dict[str, np.ndarray]:
    """The contract's outputs (USD and probabilities) for each row of X."""
    raw = _booster_outputs(model, X, num_threads)
    p, mu, correction = raw["payer"], raw["log_mean"], raw["mean_correction"]
    sigma = np.sqrt(_spread2(raw["log_spread"]))
    return {
        "predicted_revenue": ziln_mean(p, mu, sigma) * np.exp(correction + model.mean_shift),
        "payer_probability": p,
        "revenue_p10": ziln_quantile(0.1, p, mu, sigma),
        "revenue_p90": ziln_quantile(model.p90_level, p, mu, sigma),
    }


def _booster_outputs(model: ZilnModel, X: np.ndarray, num_threads: int) -> dict[str, np.ndarray]:
    """Each booster's output per row: compiled trees for many rows when the model has them, else
    LightGBM. The compiled outputs are LightGBM's to the bit; the first and last rows are checked
    against LightGBM's own at every call, and a model whose compiled trees ever disagree scores
    with LightGBM from then on (it would be a build of lleaves or LLVM that sums differently)."""
    fast, compiled = model.fast, model.compiled  # read once: another thread may drop it meanwhile
    if compiled is None or len(X) < 2:
        return {name: fast[name].predict(X, num_threads=num_threads) for name in BOOSTERS}
    out = {name: compiled_trees.predict(compiled[name], X, num_threads) for name in BOOSTERS}
    ends = X[[0, -1]]
    for name in BOOSTERS:
        expected = np.concatenate([fast[name].predict(ends[k:k + 1]) for k in (0, 1)])
        if not np.array_equal(out[name][[0, -1]], expected, equal_nan=True):
            log.error("the compiled %s gave %s where LightGBM gives %s: scoring with LightGBM from now on",
                      name, out[name][[0, -1]], expected)
            model.compiled = None
            return _booster_outputs(model, X, num_threads)
    return out


def ziln_mean(p, mu, sigma):
    """E[Y] of the mixture: p * exp(mu + sigma^2 / 2)."""
    return p * np.exp(mu + 0.5 * sigma ** 2)


def ziln_quantile(q, p, mu, sigma):
    """The q-quantile of the mixture: 0 when q <= 1 - p, else a lognormal quantile."""
    p = np.asarray(p, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        level = (q - (1.0 - p)) / p
        value = np.exp(mu + sigma * ndtri(np.clip(level, 1e-12, 1 - 1e-12)))
    return np.where(level > 0, value, 0.0)


def coverage_level(p: np.ndarray, target: float) -> float:
    """The level tau at which mean(max(tau, 1 - p)) == target: a cohort's P(Y <= q_tau).

    Needs only payer probabilities, not outcomes. When even tau = 0 covers more
    than the target (almost no payers), returns 0.
    """
    p = np.asarray(p, dtype=np.float64)
    coverage = lambda tau: np.maximum(tau, 1.0 - p).mean()  # noqa: E731
    if coverage(0.0) >= target:
        return 0.0
    lo, hi = 0.0, target
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if coverage(mid) < target else (lo, mid)
    return 0.5 * (lo + hi)
