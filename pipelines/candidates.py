"""The models training compares: the original system's and the project's.

The original system regressed raw D7 revenue on target-encoded country,
frequency encodings and label codes with Ridge, Lasso, random forests and
gradient boosting (LightGBM won there). Those candidates, LightGBM with a
Tweedie objective, and the project's zero-inflated lognormal model are fitted
on the same split. Only the ZILN model produces all four of the contract's
outputs, so only it can be served; the others are its yardstick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Lasso, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from revenue_model.contract import TARGET
from revenue_model.features import category_key, parse_os_version
from revenue_model.predictor import fit_predictor
from revenue_model.validation import validate_columns, validate_users
from revenue_model.ziln import ZilnParams


@dataclass
class Candidate:
    name: str
    servable: bool           # produces the contract's four outputs
    params: dict
    fit: Callable            # (train, dev) -> predict(frame) -> {output: array}


class OriginalFeatures:
    """The original system's features: events, ratios, frequency, label and target encodings."""

    CATEGORIES = ("country", "source", "platform", "device_family", "country_region")

    def fit(self, train: pd.DataFrame) -> "OriginalFeatures":
        keys = self._keys(train)
        revenue = train[TARGET].to_numpy(float)
        self.frequency = {c: keys[c].value_counts(normalize=True).to_dict() for c in self.CATEGORIES}
        self.labels = {c: {k: i for i, k in enumerate(sorted(keys[c].unique()))} for c in self.CATEGORIES}
        prior, counts = revenue.mean(), keys["country"].value_counts()
        sums = pd.Series(revenue).groupby(keys["country"].to_numpy()).sum()
        self.country_mean = ((sums + 20 * prior) / (counts.reindex(sums.index) + 20)).to_dict()
        self.prior = prior
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        keys = self._keys(frame)
        e1, e2 = frame["event_1"].to_numpy(float), frame["event_2"].to_numpy(float)
        e3 = np.nan_to_num(frame["event_3"].to_numpy(float))
        columns = [e1, e2, e3, e1 + e2 + e3, e2 / (e1 + 1), e3 / (e1 + 1),
                   np.array([parse_os_version(v)[0] for v in frame["os_version"]], float)]
        for c in self.CATEGORIES:
            columns.append(keys[c].map(self.frequency[c]).fillna(0).to_numpy(float))
            columns.append(keys[c].map(self.labels[c]).fillna(-1).to_numpy(float))
        columns.append(keys["country"].map(self.country_mean).fillna(self.prior).to_numpy(float))
        return np.nan_to_num(np.column_stack(columns), nan=-1.0)

    def _keys(self, frame):
        return {c: frame[c].map(lambda v, c=c: category_key(c, v if isinstance(v, str) else None))
                for c in self.CATEGORIES}


def _regressor(make_model):
    """A candidate regressing raw revenue on the original features."""
    def fit(train, dev):
        features = OriginalFeatures().fit(train)
        model = make_model()
        model.fit(features.transform(train), train[TARGET].to_numpy(float))

        def predict(frame):
            return {"predicted_revenue": np.maximum(model.predict(features.transform(frame)), 0.0)}
        return predict
    return fit


def _lightgbm(objective: str, threads: int, seed: int, **extra):
    def fit(train, dev):
        features = OriginalFeatures().fit(train)
        params = {"objective": objective, "learning_rate": 0.05, "num_leaves": 31,
                  "min_data_in_leaf": 40, "num_threads": threads, "seed": seed,
                  "deterministic": True, "force_row_wise": True, "verbosity": -1, **extra}
        data = lgb.Dataset(features.transform(train), train[TARGET].to_numpy(float))
        valid = lgb.Dataset(features.transform(dev), dev[TARGET].to_numpy(float), reference=data)
        booster = lgb.train(params, data, 2000, valid_sets=[valid],
                            callbacks=[lgb.early_stopping(100, verbose=False)])

        def predict(frame):
            X = features.transform(frame)
            return {"predicted_revenue": np.maximum(booster.predict(X, num_threads=threads), 0.0)}
        return predict
    return fit


def _ziln(params: ZilnParams, seed: int):
    def fit(train, dev):
        predictor = fit_predictor(train, dev, params=params, seed=seed)

        def predict(frame):
            return predictor.predict_columns(validate_columns(frame))
        predict.predictor = predictor
        return predict
    return fit


def all_candidates(params: ZilnParams, seed: int) -> list[Candidate]:
    threads = params.num_threads
    return [
        Candidate("ridge", False, {"alpha": 1.0},
                  _regressor(lambda: make_pipeline(StandardScaler(), Ridge(alpha=1.0)))),
        Candidate("lasso", False, {"alpha": 0.01},
                  _regressor(lambda: make_pipeline(StandardScaler(), Lasso(alpha=0.01, max_iter=5000)))),
        Candidate("random_forest", False, {"n_estimators": 100, "max_depth": 12, "min_samples_leaf": 20},
                  _regressor(lambda: RandomForestRegressor(
                      n_estimators=100, max_depth=12, min_samples_leaf=20, n_jobs=threads,
                      random_state=seed))),
        Candidate("gradient_boosting", False, {"n_estimators": 150, "max_depth": 3, "subsample": 0.8},
                  _regressor(lambda: GradientBoostingRegressor(
                      n_estimators=150, max_depth=3, subsample=0.8, random_state=seed))),
        Candidate("lightgbm_l2", False, {"objective": "regression"}, _lightgbm("regression", threads, seed)),
        Candidate("lightgbm_tweedie", False, {"objective": "tweedie", "tweedie_variance_power": 1.5},
                  _lightgbm("tweedie", threads, seed, tweedie_variance_power=1.5)),
        Candidate("ziln", True, {**params.__dict__}, _ziln(params, seed)),
    ]


def clean_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Validated, typed data with revenue (raises InvalidUsers listing every bad field)."""
    return validate_users(frame, with_target=True)
