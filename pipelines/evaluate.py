"""Score a data set with any registered model version; log the metric set and charts.

    mlflow run . -e evaluate --env-manager local -P model_uri=models:/revenue_model/3 -P data_path=users.csv
"""

from __future__ import annotations

import argparse

import mlflow
import numpy as np
import pandas as pd

from pipelines import reports
from pipelines.candidates import clean_frame
from pipelines.datasets import read_users
from pipelines.own_code_scoring import score_with_own_code
from revenue_model import metrics as M
from revenue_model.contract import INPUT_COLUMNS, TARGET


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-uri", default="models:/revenue_model@champion")
    p.add_argument("--data-path", required=True, help="CSV or Parquet with the contract's columns and revenue")
    return p.parse_args(argv)


def score_model(model_uri: str, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The pyfunc's outputs for a frame of users, computed by the model's own bundled code."""
    out = score_with_own_code(model_uri, frame[[c for c in INPUT_COLUMNS if c in frame.columns]])
    return {c: out[c].to_numpy() for c in out.columns}


def evaluate(model_uri: str, frame: pd.DataFrame) -> dict[str, float]:
    return M.full_metrics(frame[TARGET].to_numpy(float), score_model(model_uri, frame))


def main(argv=None) -> dict:
    args = parse_args(argv)
    frame = clean_frame(read_users(args.data_path))
    with mlflow.start_run():
        out = score_model(args.model_uri, frame)
        y = frame[TARGET].to_numpy(float)
        metrics = M.full_metrics(y, out)
        mlflow.log_params({"model_uri": args.model_uri, "data_path": args.data_path, "rows": len(frame)})
        mlflow.log_metrics(metrics)
        mlflow.log_dict(M.decile_table(y, out["predicted_revenue"]), "deciles.json")
        mlflow.log_figure(reports.decile_chart(y, out["predicted_revenue"], args.model_uri), "charts/deciles.png")
        mlflow.log_figure(reports.gain_chart(y, {args.model_uri: out["predicted_revenue"]}, "evaluation"),
                          "charts/gain.png")
    for key, value in metrics.items():
        print(f"{key:>24s}  {value:.4f}")
    return metrics


if __name__ == "__main__":
    main()
