"""Move alias `champion` (and stage Production) to the challenger if it wins; or roll back.

    mlflow run . -e promote --env-manager local [-P data_path=holdout.csv] [-P min_gain=0.005]
    mlflow run . -e rollback --env-manager local

Both models are scored on the same holdout (by default the test split the
challenger's training run logged), each by its own bundled code in a process of
its own (``pipelines.own_code_scoring``, through ``evaluate``). Every decision is written to the registry:
the promoted version gets tags saying when, from which version, why, and the
metrics of both; a refused challenger gets the reason. A refusal exits with
status 3 (``mlflow run`` reports it as a failed run), so a scheduled retrain
stops there.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime, timezone

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines.candidates import clean_frame
from pipelines.datasets import read_users
from pipelines.evaluate import evaluate
from pipelines.selection import challenger_wins
from pipelines.train import CHALLENGER, HOLDOUT_ARTIFACT

CHAMPION = "champion"
PRODUCTION = "Production"
REFUSED = 3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-name", default="revenue_model")
    p.add_argument("--data-path", default="", help="holdout; empty: the challenger's own test split")
    p.add_argument("--min-gain", type=float, default=0.0, help="normalized Gini the challenger must gain")
    p.add_argument("--rollback", action="store_true", help="move champion back to the previous one")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    client = MlflowClient()
    code = rollback(client, args.model_name) if args.rollback else promote(
        client, args.model_name, args.data_path, args.min_gain)
    return code


def promote(client: MlflowClient, name: str, data_path: str, min_gain: float) -> int:
    challenger = client.get_model_version_by_alias(name, CHALLENGER)
    champion = _version_by_alias(client, name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        print(f"version {challenger.version} is already the champion")
        return 0
    frame = clean_frame(read_users(data_path or _holdout_of(client, challenger.run_id)))
    print(f"scoring challenger v{challenger.version}"
          + (f" and champion v{champion.version}" if champion else "") + f" on {len(frame)} users")
    scores = {"challenger": evaluate(f"models:/{name}/{challenger.version}", frame)}
    if champion is not None:
        scores["champion"] = evaluate(f"models:/{name}/{champion.version}", frame)
    wins, why = challenger_wins(scores["challenger"], scores.get("champion"), min_gain)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with mlflow.start_run(run_name=f"promote {name} v{challenger.version}"):
        mlflow.log_params({"model_name": name, "challenger": challenger.version, "min_gain": min_gain,
                           "champion": str(champion.version) if champion else "none",
                           "holdout": data_path or f"runs:/{challenger.run_id}/{HOLDOUT_ARTIFACT}"})
        mlflow.log_metrics({f"{role}_{k}": v for role, m in scores.items() for k, v in m.items()})
        mlflow.set_tags({"decision": "promoted" if wins else "refused", "reason": why})
    record = json.dumps({"at": now, "reason": why, "metrics": scores})
    if not wins:
        client.set_model_version_tag(name, challenger.version, "promotion_refused", record[:4900])
        print(f"REFUSED: challenger v{challenger.version} stays challenger: {why}")
        return REFUSED
    client.set_registered_model_alias(name, CHAMPION, challenger.version)
    client.transition_model_version_stage(name, challenger.version, PRODUCTION, archive_existing_versions=True)
    client.set_model_version_tag(name, challenger.version, "promoted_at", now)
    client.set_model_version_tag(name, challenger.version, "promoted_from", str(champion.version) if champion else "")
    client.set_model_version_tag(name, challenger.version, "promotion", record[:4900])
    print(f"PROMOTED: v{challenger.version} is now @{CHAMPION} and {PRODUCTION}: {why}")
    return 0


def rollback(client: MlflowClient, name: str) -> int:
    current = _version_by_alias(client, name, CHAMPION)
    previous = (current.tags.get("promoted_from") if current else "") or ""
    if not previous:
        print("ROLLBACK REFUSED: there is no previous champion to return to")
        return REFUSED
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.transition_model_version_stage(name, previous, PRODUCTION, archive_existing_versions=True)
    client.set_model_version_tag(name, current.version, "rolled_back_at", now)
    client.set_model_version_tag(name, previous, "restored_at", now)
    print(f"ROLLED BACK: @{CHAMPION} is v{previous} again (was v{current.version})")
    return 0


def _version_by_alias(client: MlflowClient, name: str, alias: str):
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def _holdout_of(client: MlflowClient, run_id: str) -> str:
    return client.download_artifacts(run_id, HOLDOUT_ARTIFACT, tempfile.mkdtemp(prefix="holdout-"))


if __name__ == "__main__":
    sys.exit(main())
