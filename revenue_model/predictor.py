"""The whole model: validated users in, the contract's four outputs out.

``fit_predictor`` trains features and boosters from two labelled frames;
``RevenuePredictor`` scores; ``to_texts`` / ``from_texts`` turn it into plain
text (JSON and LightGBM's own model format) and back, so a model trained
today loads after a library upgrade: nothing is pickled.
"""

from __future__ import annotations

import json
import lightgbm as lgb
import numpy as np
import pandas as pd

from revenue_model.contract import OUTPUT_COLUMNS, TARGET
from revenue_model.features import FeaturePlan, fit_features
from revenue_model.predictions import Predictions
from revenue_model.validation import validate_columns
from revenue_model.ziln import BOOSTERS, ZilnModel, ZilnParams, fit_ziln, predict_ziln
# Below this many rows one thread is faster: OpenMP start-up costs more than the trees.
_PARALLEL_FROM_ROWS = 5000


class RevenuePredictor:
    def __init__(self, plan: FeaturePlan, ziln: ZilnModel, *, num_threads: int = 2):
        self.plan = plan
        self.ziln = ziln
        self.num_threads = num_threads

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.plan.feature_names

    def predict_columns(self, columns) -> dict[str, np.ndarray]:
        """Validated columns -> {output column: array (USD or probability)}."""
        X = self.plan.transform(columns)
        threads = self.num_threads if len(X) >= _PARALLEL_FROM_ROWS else 1
        return predict_ziln(self.ziln, X, num_threads=threads)

    def predict(self, users) -> Predictions:
        """Raw users (records or DataFrame) -> one row per user with OUTPUT_COLUMNS.

        Raises ``InvalidUsers`` listing every bad field.
        """
        out = self.predict_columns(validate_columns(users))
        # One float block: a tenth of the cost of a DataFrame built from a dict of columns.
        block = np.column_stack([out[c] for c in OUTPUT_COLUMNS])
        return Predictions(block, columns=list(OUTPUT_COLUMNS), copy=False)

    def to_texts(self) -> dict[str, str]:
        texts = {name: getattr(self.ziln, name).model_to_string() for name in BOOSTERS}
        texts["feature_state"] = json.dumps(self.plan.state)
        texts["ziln"] = json.dumps({"mean_shift": self.ziln.mean_shift,
                                    "p90_level": self.ziln.p90_level,
                                    "best_rounds": self.ziln.best_rounds})
        return texts

    @classmethod
    def from_texts(cls, texts: dict[str, str], *, num_threads: int = 2) -> "RevenuePredictor":
        boosters = {name: lgb.Booster(model_str=texts[name]) for name in BOOSTERS}
        ziln = ZilnModel(**boosters, **json.loads(texts["ziln"]))
        return cls(FeaturePlan(json.loads(texts["feature_state"])), ziln, num_threads=num_threads)


def fit_predictor(train: pd.DataFrame, dev: pd.DataFrame, *, params: ZilnParams = ZilnParams(),
                  seed: int = 0) -> RevenuePredictor:
    """Fit on ``train`` (features and boosters), early-stop on ``dev``; both carry revenue (USD)."""
    train_columns = validate_columns(train, with_target=True)
    dev_columns = validate_columns(dev, with_target=True)
    state, X_train = fit_features(train_columns, train_columns[TARGET], seed=seed)
    plan = FeaturePlan(state)
    ziln = fit_ziln(X_train, train_columns[TARGET], plan.transform(dev_columns), dev_columns[TARGET],
                    feature_names=plan.feature_names,
                    categorical_features=state["categorical_features"],
                    payer_increasing=state["payer_increasing"], payer_ignores=state["payer_ignores"],
                    params=params, seed=seed)
    return RevenuePredictor(plan, ziln, num_threads=params.num_threads)
