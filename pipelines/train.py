"""Train every candidate, compare them in MLflow, register the winner as challenger.

    mlflow run . -e train --env-manager local -P data_path=users.csv
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import mlflow
import pandas as pd
from mlflow import MlflowClient

from pipelines import reports
from pipelines.candidates import all_candidates, clean_frame
from pipelines.datasets import load_or_generate, split_users, write_users
from pipelines.drift_logging import inputs_of, log_drift
from pipelines.model_logging import log_revenue_model
from pipelines.reference_profiles import HOLDOUT_ARTIFACT
from pipelines.selection import PRIMARY, pick_winner
from revenue_model import drift as D
from revenue_model import metrics as M
from revenue_model.contract import INSTALL_DATE, TARGET
from revenue_model.ziln import BOOSTERS, ZilnParams

CHALLENGER = "challenger"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-path", default="", help="CSV or Parquet with the contract's columns; empty: generate")
    p.add_argument("--rows", type=int, default=60_000, help="rows to generate when no data_path")
    p.add_argument("--model-name", default="revenue_model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--candidates", default="all", help="comma-separated names, or 'all'")
    p.add_argument("--learning-rate", type=float, default=ZilnParams.learning_rate)
    p.add_argument("--num-leaves", type=int, default=ZilnParams.num_leaves)
    p.add_argument("--min-data-in-leaf", type=int, default=ZilnParams.min_data_in_leaf)
    p.add_argument("--max-rounds", type=int, default=ZilnParams.max_rounds)
    p.add_argument("--num-threads", type=int, default=ZilnParams.num_threads)
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    params = ZilnParams(learning_rate=args.learning_rate, num_leaves=args.num_leaves,
                        min_data_in_leaf=args.min_data_in_leaf, max_rounds=args.max_rounds,
                        num_threads=args.num_threads)
    with mlflow.start_run() as run:
        frame = clean_frame(load_or_generate(args.data_path, args.rows, args.seed))
        train, dev, test = split_users(frame, args.seed)
        split_by = "install_date" if INSTALL_DATE in frame.columns else "random"
        print(f"data: {len(frame)} users ({'from ' + args.data_path if args.data_path else 'generated'}); "
              f"split {len(train)}/{len(dev)}/{len(test)} by {split_by}", flush=True)
        mlflow.log_params({**vars(args), "split_by": split_by, "train_rows": len(train),
                           "dev_rows": len(dev), "test_rows": len(test)})
        _log_data(train, test)

        results, test_predictions, fitted = {}, {}, {}
        chosen = [c for c in all_candidates(params, args.seed)
                  if args.candidates == "all" or c.name in args.candidates.split(",")]
        for i, candidate in enumerate(chosen, 1):
            print(f"[{i}/{len(chosen)}] {candidate.name} ...", end=" ", flush=True)
            with mlflow.start_run(run_name=candidate.name, nested=True):
                started = time.perf_counter()
                predict = candidate.fit(train, dev)
                fit_seconds = time.perf_counter() - started
                test_out = predict(test)
                metrics = {"fit_seconds": fit_seconds,
                           **{f"dev_{k}": v for k, v in _scores(dev, predict(dev)).items()},
                           **{f"test_{k}": v for k, v in _scores(test, test_out).items()}}
                mlflow.log_params({**candidate.params, "servable": candidate.servable})
                mlflow.log_metrics(metrics)
            results[candidate.name] = {"servable": candidate.servable, **metrics}
            test_predictions[candidate.name] = test_out["predicted_revenue"]
            fitted[candidate.name] = predict
            print(f"{fit_seconds:.1f}s, dev normalized Gini {metrics[f'dev_{PRIMARY}']:.4f}, "
                  f"total ratio {metrics['dev_total_ratio']:.3f}", flush=True)

        servable = {c.name for c in chosen if c.servable}
        winner = pick_winner({n: _prefixed(r, "dev_") for n, r in results.items()}, servable)
        best_overall = max(results, key=lambda n: results[n][f"dev_{PRIMARY}"])
        if best_overall != winner:
            print(f"note: {best_overall} ranks best on dev but cannot serve the contract's outputs")
        table = pd.DataFrame(results).T.rename_axis("candidate").reset_index()
        mlflow.log_table(table, "candidates.json")
        mlflow.log_text(table.to_markdown(index=False, floatfmt=".4f"), "candidates.md")
        winner_test = _prefixed(results[winner], "test_")
        mlflow.log_metrics({f"winner_test_{k}": v for k, v in winner_test.items()})
        mlflow.set_tags({"winner": winner, "holdout_artifact": HOLDOUT_ARTIFACT})

        predictor = fitted[winner].predictor
        profile = _reference_profile(train, dev, test, fitted[winner])
        y_test = test[TARGET].to_numpy(float)
        mlflow.log_figure(reports.decile_chart(y_test, test_predictions[winner], winner), "charts/deciles.png")
        mlflow.log_figure(reports.gain_chart(y_test, test_predictions, "test split"), "charts/gain.png")
        importance = {name: dict(zip(predictor.feature_names, getattr(predictor.ziln, name)
                                     .feature_importance(importance_type="gain").tolist()))
                      for name in BOOSTERS}
        mlflow.log_dict(importance, "feature_importance.json")
        mlflow.log_figure(reports.importance_chart(importance), "charts/feature_importance.png")

        example = test.drop(columns=[TARGET, INSTALL_DATE], errors="ignore").head(3)
        info = log_revenue_model(predictor, example, reference_profile=profile)
        version = _register(info.model_uri, args.model_name, run.info.run_id, winner_test, len(frame))
    _print_where_to_look(run.info.run_id, run.info.experiment_id, args.model_name, version, winner_test)
    return {"run_id": run.info.run_id, "version": version, "winner": winner, "metrics": winner_test}


def _scores(frame: pd.DataFrame, out: dict) -> dict:
    y = frame[TARGET].to_numpy(float)
    return M.full_metrics(y, out) if "payer_probability" in out else M.regression_metrics(y, out["predicted_revenue"])


def _prefixed(result: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in result.items() if k.startswith(prefix)}


def _log_data(train: pd.DataFrame, test: pd.DataFrame) -> None:
    summary, figure = reports.data_report(train)
    mlflow.log_dict(summary, "data_report/summary.json")
    mlflow.log_figure(figure, "data_report/data_report.png")
    with tempfile.TemporaryDirectory() as directory:
        # The holdout travels with the run, so promote scores champion and challenger on it.
        path = write_users(test, Path(directory) / Path(HOLDOUT_ARTIFACT).name)
        mlflow.log_artifact(str(path), str(Path(HOLDOUT_ARTIFACT).parent))


def _reference_profile(train: pd.DataFrame, dev: pd.DataFrame, test: pd.DataFrame, predict) -> dict:
    """The winner's drift reference (training inputs, its dev outputs); logs the test split against it."""
    profile = D.build_profile(inputs_of(train), predict(dev))
    log_drift(profile, test, predict(test), title="test split vs training split", reference="training split")
    return profile


def _register(model_uri: str, name: str, run_id: str, test_metrics: dict, rows: int) -> str:
    client = MlflowClient()
    version = str(mlflow.register_model(model_uri, name).version)
    client.set_registered_model_alias(name, CHALLENGER, version)
    for key, value in test_metrics.items():
        client.set_model_version_tag(name, version, f"test_{key}", f"{value:.6g}")
    client.set_model_version_tag(name, version, "training_run_id", run_id)
    client.update_model_version(name, version, description=(
        f"Zero-inflated lognormal LightGBM, trained on {rows} users. Test split: normalized Gini "
        f"{test_metrics['normalized_gini']:.4f}, total predicted/actual {test_metrics['total_ratio']:.3f}, "
        f"RMSE {test_metrics['rmse']:.3f} USD, share at or below p90 "
        f"{test_metrics['share_at_or_below_p90']:.3f}, Brier {test_metrics['brier']:.4f}."))
    return version


def _print_where_to_look(run_id, experiment_id, name, version, test_metrics) -> None:
    print(f"\nwinner test metrics: normalized Gini {test_metrics['normalized_gini']:.4f}, "
          f"total ratio {test_metrics['total_ratio']:.3f}, RMSE {test_metrics['rmse']:.3f}")
    print(f"run id: {run_id}")
    print(f"registered: models:/{name}/{version} (alias @{CHALLENGER})")
    print(f"look: mlflow ui --port 5005, then http://127.0.0.1:5005/#/experiments/{experiment_id}/runs/{run_id}")


if __name__ == "__main__":
    main()
