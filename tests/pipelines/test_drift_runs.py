"""Drift in MLflow runs: train logs a profile with the model and its test split's drift; evaluate
logs a data set's drift against the model's profile, a profile rebuilt from the training run's test
split for older models, or says there is no reference. In-process runs on a throwaway SQLite store."""

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from pipelines import evaluate, train
from revenue_model.drift import COLUMNS
from tests.conftest import tracking_store
from revenue_model.synthetic import generate_users

NAME = "revenue_model"
# One training run and a fresh MLflow store: 37 to 63 s on the shared 2 cores (load average 8 to 12).
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift-runs")
    with tracking_store(root, "drift") as (uri, client, experiment):
        mlflow.set_experiment(experiment_id=experiment)
        result = train.main(["--rows", "4000", "--candidates", "ziln", "--max-rounds", "30", "--seed", "1"])
        yield {"root": root, "client": client, "train": result, "experiment": experiment}


def run_of(client, run_id):
    run = client.get_run(run_id)
    return run.data.metrics, run.data.tags, run.data.params


def artifact_json(client, run_id, path, root):
    return json.loads(Path(client.download_artifacts(run_id, path, str(root))).read_text())


def evaluate_file(store, frame, model_uri, name):
    path = store["root"] / f"{name}.parquet"
    frame.to_parquet(path, index=False)
    evaluate.main(["--model-uri", model_uri, "--data-path", str(path)])
    return mlflow.last_active_run().info.run_id


def old_model(store, with_holdout: bool):
    """A model version logged the way models were before profiles, with or without a holdout in its run."""
    from pipelines.model_logging import log_revenue_model

    predictor = mlflow.pyfunc.load_model(f"models:/{NAME}/{store['train']['version']}").unwrap_python_model().predictor
    holdout = generate_users(800, seed=31)
    with mlflow.start_run(experiment_id=store["experiment"]):
        if with_holdout:
            path = store["root"] / "test.parquet"
            holdout.to_parquet(path, index=False)
            mlflow.log_artifact(str(path), str(Path(train.HOLDOUT_ARTIFACT).parent))
        info = log_revenue_model(predictor, holdout.drop(columns=["revenue"]).head(3), registered_model_name=NAME)
    return f"models:/{NAME}/{info.registered_model_version}", holdout


def test_train_logs_the_reference_profile_inside_the_model(store):
    version = store["train"]["version"]
    path = mlflow.artifacts.download_artifacts(f"models:/{NAME}/{version}/artifacts/reference_profile.json")
    profile = json.loads(Path(path).read_text())
    _, _, params = run_of(store["client"], store["train"]["run_id"])
    assert profile["reference_n"] == int(params["train_rows"]) == 2800
    assert set(profile["columns"]) == set(COLUMNS)
    assert profile["columns"]["predicted_revenue"]["n"] == int(params["dev_rows"])  # outputs: the dev split

    from pipelines.reference_profiles import load_reference_profile
    assert load_reference_profile(f"models:/{NAME}/{version}") == profile


def test_train_logs_the_test_splits_drift_against_the_training_split(store):
    client, run_id = store["client"], store["train"]["run_id"]
    metrics, tags, params = run_of(client, run_id)
    report = artifact_json(client, run_id, "drift/drift.json", store["root"] / "train-drift")
    assert set(report["columns"]) == set(COLUMNS)
    assert report["n"] == int(params["test_rows"]) and report["reference_n"] == int(params["train_rows"])
    for column, entry in report["columns"].items():
        assert metrics[f"drift_psi_{column}"] == pytest.approx(entry["psi"])
        # The generator draws install dates independently of everything else: no drift by date.
        assert entry["status"] == "ok", (column, entry)
    assert tags["drift_status"] == "ok"
    artifacts = {a.path for a in client.list_artifacts(run_id, "charts")} | {
        a.path for a in client.list_artifacts(run_id, "drift")}
    assert {"charts/drift.png", "drift/drift.json", "drift/bins.json"} <= artifacts


def test_evaluate_flags_a_shifted_data_set_against_the_models_profile(store, capsys):
    frame = generate_users(2000, seed=41)
    frame["event_2"] = frame["event_2"] * 3 + 2
    frame.loc[: 599, "source"] = "NewNet Ads"  # 30% from a network training never had
    frame["platform"] = frame["platform"].str.upper()  # spelling only: not drift
    run_id = evaluate_file(store, frame, f"models:/{NAME}/{store['train']['version']}", "shifted")

    metrics, tags, _ = run_of(store["client"], run_id)
    report = artifact_json(store["client"], run_id, "drift/drift.json", store["root"] / "eval-drift")
    assert tags["drift_reference"] == "model reference profile"
    assert tags["drift_status"] == "drift"
    assert metrics["drift_psi_event_2"] >= 0.25 and metrics["drift_psi_source"] >= 0.25
    assert report["columns"]["source"]["unseen_share"] == pytest.approx(0.30)
    assert report["columns"]["platform"]["status"] == "ok"
    assert report["columns"]["event_1"]["status"] == "ok"
    assert "drift, data set vs" in capsys.readouterr().out


def test_evaluate_rebuilds_a_profile_from_the_test_split_of_an_older_model(store, capsys):
    model_uri, holdout = old_model(store, with_holdout=True)
    run_id = evaluate_file(store, holdout, model_uri, "holdout")  # the test split against itself

    metrics, tags, _ = run_of(store["client"], run_id)
    source_run = mlflow.models.get_model_info(model_uri).run_id
    assert tags["drift_reference"] == f"computed on demand from runs:/{source_run}/{train.HOLDOUT_ARTIFACT}"
    for column in ("event_1", "event_2", "event_3", "predicted_revenue", "payer_probability"):
        assert metrics[f"drift_psi_{column}"] == pytest.approx(0.0, abs=1e-12)  # identical rows
    assert "computing one from runs:/" in capsys.readouterr().out


def test_evaluate_says_there_is_no_reference_when_it_has_neither(store, capsys):
    model_uri, holdout = old_model(store, with_holdout=False)

    from pipelines.reference_profiles import load_reference_profile
    assert load_reference_profile(model_uri) is None
    assert mlflow.pyfunc.load_model(model_uri).predict(holdout.head(5)).shape == (5, 4)  # it still loads

    run_id = evaluate_file(store, holdout, model_uri, "no-reference")
    metrics, tags, _ = run_of(store["client"], run_id)
    assert tags["drift_reference"] == "none"
    assert not [k for k in metrics if k.startswith("drift_")]
    assert "normalized_gini" in metrics  # the evaluation itself still ran
    assert f"drift: no reference for {model_uri}" in capsys.readouterr().out
    assert np.isfinite(metrics["normalized_gini"])
