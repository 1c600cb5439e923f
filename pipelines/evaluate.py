"""Score a data set with any registered model version; log the metric set and charts.

    mlflow run . -e evaluate --env-manager local -P model_uri=models:/revenue_model/3 -P data_path=users.csv

The run also shows the data set's drift against the model's reference profile
(``drift_psi_<column>``, drift/drift.json, charts/drift.png). A model logged
before profiles existed gets one computed now from its training run's test
split; without that either, the run says there is no reference.
"""

from __future__ import annotations

import argparse

import mlflow
import numpy as np
import pandas as pd

from pipelines import reports
from pipelines.candidates import clean_frame
from pipelines.datasets import read_users
from pipelines.drift_logging import inputs_of, log_drift
from pipelines.reference_profiles import HOLDOUT_ARTIFACT, load_reference_profile, logged_holdout
from revenue_model import drift as D
from pipelines.own_code_scoring import score_with_own_code
from revenue_model import metrics as M
from revenue_model.contract import INPUT_COLUMNS, TARGET

NO_REFERENCE = "none"


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
        log_model_drift(args.model_uri, frame, out)
    for key, value in metrics.items():
        print(f"{key:>24s}  {value:.4f}")
    return metrics


def log_model_drift(model_uri: str, frame: pd.DataFrame, out: dict[str, np.ndarray]) -> dict | None:
    """Log the drift of ``frame`` (and the model's ``out`` for it) against the model's reference."""
    profile, reference = model_reference(model_uri)
    if profile is None:
        print(f"drift: no reference for {model_uri}: it has no reference profile and its training run "
              f"no {HOLDOUT_ARTIFACT}", flush=True)
        mlflow.set_tag("drift_reference", NO_REFERENCE)
        return None
    return log_drift(profile, frame, out, title=f"data set vs {model_uri}", reference=reference)


def model_reference(model_uri: str) -> tuple[dict | None, str]:
    """(profile, where it came from): the model's own; else one computed now from the test split its
    training run logged (models logged before profiles existed); else (None, NO_REFERENCE)."""
    profile = load_reference_profile(model_uri)
    if profile is not None:
        return profile, "model reference profile"
    run_id = mlflow.models.get_model_info(model_uri).run_id
    holdout = _holdout_of(run_id) if run_id else None
    if holdout is None:
        return None, NO_REFERENCE
    frame = clean_frame(read_users(holdout))
    print(f"drift: {model_uri} has no reference profile; computing one from runs:/{run_id}/{HOLDOUT_ARTIFACT} "
          f"({len(frame)} users)", flush=True)
    profile = D.build_profile(inputs_of(frame), score_model(model_uri, frame))
    return profile, f"computed on demand from runs:/{run_id}/{HOLDOUT_ARTIFACT}"


def _holdout_of(run_id: str) -> str | None:
    """The local path of a run's logged test split, or None when the run has none."""
    if not logged_holdout(run_id):
        return None
    return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=HOLDOUT_ARTIFACT)


if __name__ == "__main__":
    main()
