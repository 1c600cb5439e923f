"""The MLproject end to end: real `mlflow run` subprocesses against a throwaway tracking store."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from revenue_model.synthetic import generate_users

PROJECT = Path(__file__).resolve().parents[2]
NAME = "revenue_model"


class Store:
    def __init__(self, root: Path):
        self.root = root
        self.uri = f"sqlite:///{root}/mlflow.db"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.env["MLFLOW_TRACKING_URI"] = self.uri
        # `--env-manager local` runs whatever python comes first on PATH: this one.
        self.env["PATH"] = f"{Path(sys.executable).parent}:{self.env['PATH']}"
        self.client = MlflowClient(self.uri)
        self.client.create_experiment("tests", artifact_location=str(root / "artifacts"))

    def run(self, entry: str, **params) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "mlflow", "run", str(PROJECT), "-e", entry,
                   "--env-manager", "local", "--experiment-name", "tests"]
        for key, value in params.items():
            command += ["-P", f"{key}={value}"]
        return subprocess.run(command, cwd=self.root, env=self.env, capture_output=True, text=True,
                              timeout=600)

    def alias(self, alias: str):
        return self.client.get_model_version_by_alias(NAME, alias)


def ok(result):
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """Train, promote, a worse challenger refused, a forced promotion, a rollback: in that order."""
    root = tmp_path_factory.mktemp("mlproject")
    store = Store(root)
    data = root / "users.csv"
    generate_users(4000, seed=1).to_csv(data, index=False)
    other, holdout = root / "other.parquet", root / "holdout.parquet"
    generate_users(20_000, seed=2).to_parquet(other, index=False)
    generate_users(30_000, seed=3).to_parquet(holdout, index=False)
    chapters = {}
    chapters["train_1"] = ok(store.run("train", data_path=data, seed=1))
    chapters["challenger_1"] = store.alias("challenger")
    # The first promotion has no champion to compare with, and the ±20 % total check applies: on a
    # 600-user test split the total swings too much to judge, so it is judged on the 30,000-user holdout.
    chapters["promote_1"] = ok(store.run("promote", data_path=holdout))
    chapters["champion_1"] = store.alias("champion")
    chapters["train_2"] = ok(store.run("train", data_path=data, seed=1, max_rounds=1,
                                       learning_rate=0.001, candidates="ziln"))
    # v2 was trained on `data`: as a holdout it is refused before any scoring.
    chapters["promote_overlap"] = store.run("promote", data_path=data)
    # force lifts the refusal tag that left, so the comparison itself refuses v2.
    chapters["promote_2"] = store.run("promote", data_path=holdout, force="true")
    chapters["champion_2"] = store.alias("champion")
    chapters["train_3"] = ok(store.run("train", data_path=other, seed=2, candidates="ziln"))
    chapters["promote_3"] = ok(store.run("promote", data_path=holdout, min_gain=-1.0))
    chapters["champion_3"] = store.alias("champion")
    chapters["rollback"] = ok(store.run("rollback"))
    chapters["champion_4"] = store.alias("champion")
    chapters["after_rollback"] = {v: store.client.get_model_version(NAME, v) for v in ("1", "3")}
    chapters["promote_after_rollback"] = store.run("promote")  # no challenger left
    store.client.set_registered_model_alias(NAME, "challenger", "3")  # a person points it back
    chapters["promote_rolled_back"] = store.run("promote", data_path=holdout, min_gain=-1.0)
    chapters["champion_5"] = store.alias("champion")
    chapters["promote_forced"] = ok(store.run("promote", data_path=holdout, min_gain=-1.0, force="true"))
    chapters["champion_6"] = store.alias("champion")
    return store, chapters


def test_train_registers_a_challenger_with_its_test_metrics(story):
    store, chapters = story
    version = chapters["challenger_1"]
    assert str(version.version) == "1"
    assert float(version.tags["test_normalized_gini"]) > 0.3
    assert "normalized Gini" in version.description
    assert f"run id: {version.run_id}" in chapters["train_1"].stdout
    assert "registered: models:/revenue_model/1 (alias @challenger)" in chapters["train_1"].stdout


def test_train_logs_every_candidate_as_a_nested_run_with_full_metrics(story):
    store, chapters = story
    parent = chapters["challenger_1"].run_id
    children = store.client.search_runs([store.client.get_experiment_by_name("tests").experiment_id],
                                        f"tags.mlflow.parentRunId = '{parent}'")
    names = {r.info.run_name for r in children}
    assert names == {"ridge", "lasso", "random_forest", "gradient_boosting", "lightgbm_l2",
                     "lightgbm_tweedie", "ziln"}
    for run in children:
        assert {"fit_seconds", "dev_normalized_gini", "test_rmse", "test_mae"} <= set(run.data.metrics)
    ziln = next(r for r in children if r.info.run_name == "ziln")
    assert {"test_brier", "test_share_at_or_below_p90"} <= set(ziln.data.metrics)
    artifacts = {a.path for a in store.client.list_artifacts(parent)}
    assert {"charts", "data_report", "holdout", "drift", "candidates.json", "candidates.md",
            "feature_importance.json"} <= artifacts
    charts = {a.path for a in store.client.list_artifacts(parent, "charts")}
    assert charts == {"charts/deciles.png", "charts/gain.png", "charts/feature_importance.png",
                      "charts/drift.png"}


def test_first_promotion_makes_the_challenger_champion_and_production(story):
    store, chapters = story
    champion = chapters["champion_1"]
    assert str(champion.version) == "1" and champion.current_stage == "Production"
    assert champion.tags["promoted_from"] == ""
    assert json.loads(champion.tags["promotion"])["reason"] == "there is no champion"


def test_a_worse_challenger_is_refused_and_the_champion_stays(story):
    store, chapters = story
    assert chapters["promote_2"].returncode != 0  # mlflow run reports the refusal as a failed run
    assert "REFUSED" in chapters["promote_2"].stdout
    assert str(chapters["champion_2"].version) == "1"
    refused = store.client.get_model_version(NAME, "2")
    assert "promotion_refused" in refused.tags and refused.current_stage != "Production"


def test_a_promotion_archives_the_old_champion_and_remembers_it(story):
    store, chapters = story
    assert str(chapters["champion_3"].version) == "3"
    assert chapters["champion_3"].tags["promoted_from"] == "1"
    assert chapters["champion_3"].current_stage == "Production"


def test_rollback_restores_the_previous_champion(story):
    store, chapters = story
    assert str(chapters["champion_4"].version) == "1"
    versions = chapters["after_rollback"]
    assert versions["1"].current_stage == "Production"
    assert versions["3"].current_stage == "Archived"
    assert "rolled_back_at" in versions["3"].tags
    assert "challenger" not in versions["3"].aliases  # else the next promote would undo the rollback


def test_a_holdout_sharing_users_with_the_training_data_is_refused(story):
    store, chapters = story
    result = chapters["promote_overlap"]
    assert result.returncode != 0 and "REFUSED" in result.stdout, result.stdout[-2000:]
    assert "training or dev split" in result.stdout
    assert "scoring challenger" not in result.stdout  # refused before any scoring


def test_a_rolled_back_version_is_promoted_again_only_when_forced(story):
    store, chapters = story
    assert chapters["promote_after_rollback"].returncode != 0
    assert "no version has alias @challenger" in chapters["promote_after_rollback"].stdout
    refused = chapters["promote_rolled_back"]
    assert refused.returncode != 0 and "was rolled back" in refused.stdout, refused.stdout[-2000:]
    assert str(chapters["champion_5"].version) == "1"
    assert str(chapters["champion_6"].version) == "3"  # -P force=true


def test_the_champion_predicts_in_a_fresh_process(story, tmp_path):
    store, _ = story
    script = ("import mlflow, pandas as pd\n"
              "m = mlflow.pyfunc.load_model('models:/revenue_model@champion')\n"
              "out = m.predict(pd.DataFrame([{'country': 'pe', 'source': 'Organic', 'platform': 'ios',"
              " 'event_1': 10.0, 'event_2': 3.0}]))\n"
              "print(list(out.columns), float(out.predicted_revenue[0]) > 0)\n")
    result = ok(subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=store.env,
                               capture_output=True, text=True, timeout=300))
    assert result.stdout.strip().splitlines()[-1] == (
        "['predicted_revenue', 'payer_probability', 'revenue_p10', 'revenue_p90'] True")
