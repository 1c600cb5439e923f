"""The common way to build this service, rebuilt here as the benchmark's yardstick.

A pyfunc whose feature engineering runs pandas on every request (lower-casing,
dict maps, string splits, fillna), in front of one LightGBM regressor on raw
revenue; logged in the usual cloudpickle form and served by the same
`mlflow models serve`. It gets one fix the common version often lacks,
LightGBM predicting on one thread, so the comparison isolates the feature
path and the proxy rather than OpenMP oversubscription.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd

from revenue_model.pyfunc_model import model_signature

FEATURES = ["event_1", "event_2", "event_3", "event_3_missing", "total_events", "event_ratio",
            "os_major", "country_freq", "country_te", "device_freq", "platform_code", "source_code"]


def add_features(df: pd.DataFrame, enc: dict) -> pd.DataFrame:
    df = df.copy()
    df["platform"] = df["platform"].astype(str).str.strip().str.lower()
    df["country"] = df["country"].astype(str).str.strip().str.upper()
    df["source"] = df["source"].astype(str).str.strip().str.lower()
    df["device_family"] = df["device_family"].fillna("unknown").astype(str).str.lower()
    df["os_major"] = pd.to_numeric(df["os_version"].astype(str).str.split(".").str[0], errors="coerce")
    df["event_3_missing"] = df["event_3"].isna().astype(int)
    df["event_3"] = df["event_3"].fillna(0)
    df["total_events"] = df["event_1"] + df["event_2"] + df["event_3"]
    df["event_ratio"] = df["event_2"] / (df["event_1"] + 1)
    df["country_freq"] = df["country"].map(enc["country_freq"]).fillna(0)
    df["country_te"] = df["country"].map(enc["country_te"]).fillna(enc["prior"])
    df["device_freq"] = df["device_family"].map(enc["device_freq"]).fillna(0)
    df["platform_code"] = df["platform"].map(enc["platform_code"]).fillna(-1)
    df["source_code"] = df["source"].map(enc["source_code"]).fillna(-1)
    return df[FEATURES]


def fit_encodings(train: pd.DataFrame) -> dict:
    country = train["country"].astype(str).str.strip().str.upper()
    device = train["device_family"].fillna("unknown").astype(str).str.lower()
    revenue = train["revenue"]
    prior = float(revenue.mean())
    stats = revenue.groupby(country).agg(["sum", "count"])
    return {
        "prior": prior,
        "country_freq": country.value_counts(normalize=True).to_dict(),
        "country_te": ((stats["sum"] + 20 * prior) / (stats["count"] + 20)).to_dict(),
        "device_freq": device.value_counts(normalize=True).to_dict(),
        "platform_code": {"ios": 0, "android": 1},
        "source_code": {s: i for i, s in enumerate(sorted(train["source"].astype(str).str.strip().str.lower().unique()))},
    }


class PandasFeatureModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.booster = lgb.Booster(model_file=context.artifacts["booster"])
        self.enc = json.loads(Path(context.artifacts["encodings"]).read_text())

    def predict(self, context, model_input, params=None):
        X = add_features(model_input, self.enc)
        return pd.DataFrame({"predicted_revenue": np.maximum(self.booster.predict(X, num_threads=1), 0)})


def train_and_log(train: pd.DataFrame, dev: pd.DataFrame, input_example: pd.DataFrame, seed: int = 0):
    """Fit the common model and log it under the active run; returns ModelInfo."""
    enc = fit_encodings(train)
    params = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 31, "verbosity": -1,
              "seed": seed, "num_threads": 2}
    booster = lgb.train(params, lgb.Dataset(add_features(train, enc), train["revenue"]), 2000,
                        valid_sets=[lgb.Dataset(add_features(dev, enc), dev["revenue"])],
                        callbacks=[lgb.early_stopping(50, verbose=False)])
    with tempfile.TemporaryDirectory() as directory:
        booster_path = Path(directory) / "booster.txt"
        booster.save_model(str(booster_path))
        enc_path = Path(directory) / "encodings.json"
        enc_path.write_text(json.dumps(enc))
        return mlflow.pyfunc.log_model(
            name="common_model", python_model=PandasFeatureModel(),
            artifacts={"booster": str(booster_path), "encodings": str(enc_path)},
            code_paths=[__file__], input_example=input_example,
            signature=model_signature(),  # the same schema enforcement as this project's model
            pip_requirements=["mlflow", "lightgbm", "pandas"])
