"""Retrain from what was served: export the log with its labels, train, promote through the gate.

    mlflow run . -e retrain --env-manager local [-P since=28d] [-P min_gain=0.0]
    python -m pipelines.retrain --since 28d        # the same, with the exit status below

One command a scheduler runs weekly. Exit status: 0 the new model was promoted, 3 the gate refused
it (the champion stays), 4 too few labelled users to train (nothing trained), anything else: a
failure. ``mlflow run`` itself exits 1 for every status but 0; the decision is also the tag
``decision`` of the retrain run. The retrain run records the log window it trained on (params
since/until and the exported users' first and last predicted_at) and the runs it started; the
training run is tagged with the window and the retrain run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from pipelines import promote, train
from pipelines.export_training_data import EPOCH, MIN_USERS, TooFewUsers, export
from pipelines.log_database import parse_time

PROMOTED, REFUSED, TOO_FEW = 0, promote.REFUSED, 4


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--since", default="", help="ISO 8601 time or 30m, 6h, 7d back from now; empty: the whole log")
    p.add_argument("--until", default="", help="the same; empty: now")
    p.add_argument("--model-name", default="revenue_model")
    p.add_argument("--min-users", type=int, default=MIN_USERS, help="labelled users needed to train")
    p.add_argument("--min-gain", type=float, default=0.0, help="normalized Gini the challenger must gain")
    p.add_argument("--candidates", default="all", help="passed to train: comma-separated names, or 'all'")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    now = datetime.now(timezone.utc)
    since = parse_time(args.since, "since", now) or EPOCH
    until = parse_time(args.until, "until", now) or now
    client = MlflowClient()
    with tempfile.TemporaryDirectory(prefix="retrain-") as directory:
        with mlflow.start_run(run_name="retrain") as run:
            retrain_id = run.info.run_id
            mlflow.log_params({"window_since": since.isoformat(), "window_until": until.isoformat(), "model_name": args.model_name,
                               "min_users": args.min_users, "min_gain": args.min_gain})
            try:
                summary = export(Path(directory) / "served.parquet", since=since, until=until,
                                 min_users=args.min_users)
            except TooFewUsers as refused:
                mlflow.set_tags({"decision": "too_few_users", "reason": refused.message})
                print(refused.message, flush=True)
                return TOO_FEW
            window = {"log_window_since": summary["since"], "log_window_until": summary["until"],
                      "first_predicted_at": summary["first_predicted_at"],
                      "last_predicted_at": summary["last_predicted_at"]}
            mlflow.log_metric("exported_users", summary["rows"])
            mlflow.set_tags({**window, "exported_versions": str(summary["versions"])})
        print(f"exported {summary['rows']:,} labelled users served from {summary['first_predicted_at']} "
              f"to {summary['last_predicted_at']}", flush=True)
        trained = train.main(["--data-path", summary["output"], "--model-name", args.model_name,
                              "--candidates", args.candidates])
    for key, value in {**window, "retrain_run_id": retrain_id}.items():
        client.set_tag(trained["run_id"], key, value)
    code = promote.main(["--model-name", args.model_name, "--min-gain", str(args.min_gain)])
    decision = {PROMOTED: "promoted", REFUSED: "refused"}.get(code, "failed")
    for key, value in {"decision": decision, "training_run_id": trained["run_id"],
                       "challenger_version": trained["version"]}.items():
        client.set_tag(retrain_id, key, value)
    print(f"retrain: version {trained['version']} {decision}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
