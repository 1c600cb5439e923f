"""Move alias `champion` (and stage Production) to the challenger if it wins; or roll back.

    mlflow run . -e promote --env-manager local [-P data_path=holdout.csv] [-P min_gain=0.005]
    mlflow run . -e promote --env-manager local -P evidence=shadow [-P since=14d] [-P min_labelled=1000]
    mlflow run . -e rollback --env-manager local

With ``evidence=holdout`` (the default) both models are scored on the same holdout
(by default the test split the challenger's training run logged), each by its own
bundled code in a process of its own (``pipelines.own_code_scoring``, through
``evaluate``). With ``evidence=shadow`` nothing is scored: the challenger, served as
the service's shadow, is judged on live evidence, its realised normalized Gini and
total ratio against the champion's on the same labelled users (those both versions
scored since ``since``: serving/db/shadow_outcomes.py, as GET /performance's
``same_users``), read from the service's database (DATABASE_URL, else the embedded
one in PGDATA_DIR); fewer than ``min_labelled`` such users is a refusal. The rule
is the same either way (``pipelines.selection.challenger_wins``). Every decision is written to the registry:
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
from pipelines.log_database import log_database, parse_time
from pipelines.selection import challenger_wins
from pipelines.train import CHALLENGER, HOLDOUT_ARTIFACT
from serving.db import outcomes
from serving.db.shadow_outcomes import same_users_rows
from serving.performance import MIN_LABELLED, performance_groups

CHAMPION = "champion"
PRODUCTION = "Production"
REFUSED = 3


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-name", default="revenue_model")
    p.add_argument("--data-path", default="", help="holdout; empty: the challenger's own test split")
    p.add_argument("--min-gain", type=float, default=0.0, help="normalized Gini the challenger must gain")
    p.add_argument("--rollback", action="store_true", help="move champion back to the previous one")
    p.add_argument("--evidence", choices=("holdout", "shadow"), default="holdout",
                   help="holdout: both scored on a holdout; shadow: realised metrics on the same labelled users")
    p.add_argument("--since", default="", help="evidence=shadow: users scored since (ISO time or 14d); empty: all")
    p.add_argument("--min-labelled", type=int, default=MIN_LABELLED,
                   help="evidence=shadow: labelled users both scored, at least")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    client = MlflowClient()
    if args.rollback:
        return rollback(client, args.model_name)
    if args.evidence == "shadow":
        since = parse_time(args.since, "since")
        evidence = lambda challenger, champion: shadow_evidence(  # noqa: E731
            challenger, champion, since, args.min_labelled)
    else:
        evidence = lambda challenger, champion: holdout_evidence(  # noqa: E731
            client, args.model_name, args.data_path, challenger, champion)
    return promote(client, args.model_name, args.min_gain, evidence)


def promote(client: MlflowClient, name: str, min_gain: float, evidence) -> int:
    """``evidence(challenger, champion)`` gives (metrics per role, params saying where they come
    from), or raises NoEvidence (a refusal)."""
    challenger = client.get_model_version_by_alias(name, CHALLENGER)
    champion = _version_by_alias(client, name, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        print(f"version {challenger.version} is already the champion")
        return 0
    try:
        scores, source = evidence(challenger, champion)
    except NoEvidence as missing:
        client.set_model_version_tag(name, challenger.version, "promotion_refused", json.dumps(
            {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "reason": str(missing)})[:4900])
        print(f"REFUSED: challenger v{challenger.version} stays challenger: {missing}")
        return REFUSED
    wins, why = challenger_wins(scores["challenger"], scores.get("champion"), min_gain)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    with mlflow.start_run(run_name=f"promote {name} v{challenger.version}"):
        mlflow.log_params({"model_name": name, "challenger": challenger.version, "min_gain": min_gain,
                           "champion": str(champion.version) if champion else "none", **source})
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


class NoEvidence(Exception):
    """Not enough to decide on: a refusal, never a promotion."""


def holdout_evidence(client: MlflowClient, name: str, data_path: str, challenger, champion) -> tuple[dict, dict]:
    frame = clean_frame(read_users(data_path or _holdout_of(client, challenger.run_id)))
    print(f"scoring challenger v{challenger.version}"
          + (f" and champion v{champion.version}" if champion else "") + f" on {len(frame)} users")
    scores = {"challenger": evaluate(f"models:/{name}/{challenger.version}", frame)}
    if champion is not None:
        scores["champion"] = evaluate(f"models:/{name}/{champion.version}", frame)
    return scores, {"evidence": "holdout", "holdout": data_path or f"runs:/{challenger.run_id}/{HOLDOUT_ARTIFACT}"}


def shadow_evidence(challenger, champion, since: datetime | None, min_labelled: int) -> tuple[dict, dict]:
    """Both versions' realised normalized Gini and total ratio on the labelled users both scored
    since ``since``, from the service's rollup (refreshed first)."""
    if champion is None:
        raise NoEvidence("there is no champion, so no shadow evidence: use evidence=holdout")
    since = since or datetime(1970, 1, 1, tzinfo=timezone.utc)
    ours, theirs = str(champion.version), str(challenger.version)  # the registry's are ints
    with log_database() as connection:
        outcomes.catch_up(connection)
        rows = same_users_rows(connection, first=ours, second=theirs, since=since, until=None, by=None)
    groups = {g["model_version"]: g for g in performance_groups(rows, None, min_labelled)}
    n = groups[ours]["n_labelled"] if ours in groups else 0
    print(f"live evidence: {n} labelled users scored by both champion v{champion.version} and "
          f"challenger v{challenger.version} since {since.isoformat()}")
    if n < max(min_labelled, 1):
        raise NoEvidence(f"only {n} labelled users were scored by both champion v{champion.version} and "
                         f"challenger v{challenger.version} since {since.isoformat()}, fewer than "
                         f"min_labelled={min_labelled}")
    scores = {role: {"normalized_gini": groups[v]["metrics"]["norm_gini"],
                     "total_ratio": groups[v]["metrics"]["total_ratio"], "n_labelled": float(n)}
              for role, v in (("challenger", theirs), ("champion", ours))}
    return scores, {"evidence": "shadow", "evidence_since": since.isoformat()}


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
