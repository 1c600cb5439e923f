"""GET /drift and the drift gauges end to end: a real service, scorer, PostgreSQL and MLflow registry.

The registry holds three versions of the session's predictor: 1 (champion) with its reference
profile inside, 2 without one but with its training run's test split (the profile is computed on
demand), 3 with neither.
"""

import json
import re
import urllib.parse
from datetime import datetime, timedelta, timezone

import mlflow
import numpy as np
import pandas as pd
import psycopg2
import pytest
from mlflow import MlflowClient

from pipelines.datasets import write_users
from pipelines.model_logging import log_revenue_model
from pipelines.reference_profiles import HOLDOUT_ARTIFACT
from revenue_model import drift as D
from revenue_model.synthetic import generate_users
from revenue_model.validation import validate_columns
from serving.core import RequestRecord, log_rows
from serving.db.connection import connect
from serving.db.log_rows import write_rows
from serving.db.partitions import Partitions
from serving.model_identity import ModelIdentity
from tests.conftest import new_database
from tests.serving.conftest import Service, wait_until

SENT = ["country", "country_region", "source", "platform", "device_family", "os_version",
        "event_1", "event_2", "event_3"]
NEW_NETWORK = "NewAdNetwork2027"


@pytest.fixture(scope="module")
def profile(users, predictor):
    """The reference train logs with a model: training inputs, the model's dev outputs."""
    train, dev = users.iloc[:14_000], users.iloc[14_000:17_000]
    return D.build_profile(validate_columns(train), predictor.predict_columns(validate_columns(dev)))


@pytest.fixture(scope="module")
def drift_store(predictor, holdout, profile, tmp_path_factory):
    root = tmp_path_factory.mktemp("drift-store")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("drift-tests", artifact_location=str(root / "artifacts"))
    example = holdout.drop(columns=["revenue"]).iloc[:3]
    mlflow.set_tracking_uri(uri)
    try:
        for reference, with_holdout in ((profile, False), (None, True), (None, False)):
            with mlflow.start_run(experiment_id=experiment):
                log_revenue_model(predictor, example, registered_model_name="revenue_model",
                                  reference_profile=reference)
                if with_holdout:
                    path = write_users(holdout, root / "holdout" / "test.parquet")
                    mlflow.log_artifact(str(path), HOLDOUT_ARTIFACT.rsplit("/", 1)[0])
    finally:
        mlflow.set_tracking_uri(None)
    client.set_registered_model_alias("revenue_model", "champion", "1")
    return uri


@pytest.fixture(scope="module")
def drift_database(postgres):
    return new_database(postgres, "drift")


@pytest.fixture(scope="module")
def drift_service(drift_store, drift_database, tmp_path_factory):
    running = Service(tmp_path_factory.mktemp("drift-service"), drift_store, drift_database,
                      DRIFT_REFRESH_S=1).start()
    yield running
    running.stop()


def shifted(users):
    """An app update halves event_1 and event_2, a new network brings 30% of installs, and an SDK
    release respells every platform (which the model folds back: not drift)."""
    out = users.copy()
    rng = np.random.default_rng(5)
    out["event_1"] = np.floor(out["event_1"] / 2)
    out["event_2"] = np.floor(out["event_2"] / 2)
    out.loc[rng.random(len(out)) < 0.3, "source"] = NEW_NETWORK
    out["platform"] = out["platform"].map(lambda p: p.upper() if "ios" in p.lower() else f" {p.lower()} ")
    return out


def send(http, frame, batch=1_000) -> list[dict]:
    """Users through /batch_predict; the predictions the service answered, in order."""
    records = json.loads(frame[SENT].to_json(orient="records"))
    predictions = []
    for start in range(0, len(records), batch):
        status, _, body = http.post("/batch_predict", {"users": records[start:start + batch]})
        assert status == 200, body
        predictions += body["predictions"]
    return predictions


def in_memory(profile, frame, predictions, min_rows=D.MIN_ROWS) -> dict:
    """Part 1's drift of the users sent and the answers received, counted in memory."""
    outputs = {c: np.array([p[c] for p in predictions]) for c in D.OUTPUTS}
    return D.frame_drift(profile, validate_columns(frame[SENT]), outputs, min_rows)


def query(**parameters) -> str:
    return "/drift?" + urllib.parse.urlencode({k: v.isoformat() if isinstance(v, datetime) else v
                                              for k, v in parameters.items()})


def scalar(url: str, sql: str, *parameters):
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(sql, parameters)
        (value,) = cursor.fetchone()
    connection.close()
    return value


def logged_rows(url: str, version: str) -> int:
    return scalar(url, "SELECT count(*) FROM predictions WHERE model_version = %s AND status_code = 200 "
                       "AND role = 'champion'", version)


@pytest.fixture(scope="module")
def traffic(drift_service):
    """2,000 new users like the training data, then 2,000 shifted ones; the times around each."""
    http, url = drift_service.http, drift_service.database_url
    calm, moved = generate_users(2_000, seed=101), shifted(generate_users(2_000, seed=102))
    t0 = datetime.now(timezone.utc)
    calm_answers = send(http, calm)
    t1 = datetime.now(timezone.utc)
    moved_answers = send(http, moved)
    t2 = datetime.now(timezone.utc)
    assert wait_until(lambda: logged_rows(url, "1") == 4_000, 30)
    return {"t0": t0, "t1": t1, "t2": t2, "calm": (calm, calm_answers), "moved": (moved, moved_answers)}


def test_in_distribution_traffic_raises_no_drift_and_equals_the_in_memory_drift(drift_service, traffic, profile):
    status, _, body = drift_service.http.get(query(since=traffic["t0"], until=traffic["t1"]))
    assert status == 200, body
    assert (body["model_version"], body["n"], body["reference_n"]) == ("1", 2_000, 14_000)
    assert body["status"] == "ok", {c: e["psi"] for c, e in body["columns"].items()}
    assert set(body["columns"]) == set(D.COLUMNS)
    expected = in_memory(profile, *traffic["calm"])
    for column, entry in body["columns"].items():
        assert entry["status"] == "ok"
        assert entry["psi"] == pytest.approx(expected["columns"][column]["psi"], rel=1e-9, abs=1e-12), column
        assert entry["missing_share"] == pytest.approx(expected["columns"][column]["missing_share"]), column


def rolled_up(url: str, version: str) -> int:
    """Rows of ``version`` the drift rollup holds, bucketed or not."""
    return scalar(url, "SELECT coalesce(sum(n), 0) FROM drift_cells WHERE model_version = %s "
                       "AND column_name IN ('event_1', '(unbucketed)')", version)


def test_the_service_keeps_the_drift_rollup_and_reads_whole_hours_from_it(drift_service, traffic, profile):
    """The gauges' first measure stores the served version's edges, the upkeep rolls the log up,
    and a window of whole hours (read from the rollup) equals the in-memory drift of every user."""
    url = drift_service.database_url
    assert wait_until(lambda: rolled_up(url, "1") == 4_000, 60), rolled_up(url, "1")
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT event_1, payer_probability FROM drift_versions WHERE model_version = '1'")
        stored = cursor.fetchone()
    connection.close()
    assert stored == (profile["columns"]["event_1"]["edges"], profile["columns"]["payer_probability"]["edges"])
    hour = traffic["t0"].replace(minute=0, second=0, microsecond=0)
    status, _, body = drift_service.http.get(query(since=hour - timedelta(hours=1), until=hour + timedelta(hours=3)))
    assert status == 200, body
    (calm, calm_answers), (moved, moved_answers) = traffic["calm"], traffic["moved"]
    expected = in_memory(profile, pd.concat([calm, moved], ignore_index=True), calm_answers + moved_answers)
    assert body["n"] == 4_000
    for column, entry in body["columns"].items():
        assert entry["psi"] == pytest.approx(expected["columns"][column]["psi"], rel=1e-9, abs=1e-12), column


def test_a_shifted_stream_is_flagged_on_the_moved_columns_only(drift_service, traffic, profile):
    status, _, body = drift_service.http.get(query(since=traffic["t1"], until=traffic["t2"]))
    assert status == 200, body
    columns = body["columns"]
    flagged = {c for c, e in columns.items() if e["status"] in ("warn", "drift")}
    assert {"source", "event_1", "event_2"} <= flagged
    assert {c: columns[c]["status"] for c in ("source", "event_1", "event_2")} == dict.fromkeys(
        ("source", "event_1", "event_2"), "drift")
    # Respelt only: the model reads the same platforms. The rest did not move.
    for column in ("platform", "country", "country_region", "device_family", "os_version", "event_3"):
        assert columns[column]["status"] == "ok", (column, columns[column])
    assert body["status"] == "drift"

    moved, answers = traffic["moved"]
    keys = set(profile["columns"]["source"]["keys"])
    unseen = sum(" ".join(s.split()).casefold() not in keys for s in moved["source"]) / len(moved)
    assert unseen > 0.25
    assert columns["source"]["unseen_share"] == pytest.approx(unseen, abs=1e-12)
    assert columns["platform"]["unseen_share"] == 0.0
    expected = in_memory(profile, moved, answers)
    assert {c: e["psi"] for c, e in columns.items()} == pytest.approx(
        {c: expected["columns"][c]["psi"] for c in columns}, rel=1e-9)


def test_fewer_rows_than_min_rows_is_insufficient_data(drift_service, traffic):
    status, _, body = drift_service.http.get(query(since=traffic["t0"], until=traffic["t2"], min_rows=4_001))
    assert status == 200, body
    assert body["n"] == 4_000 and body["min_rows"] == 4_001
    assert body["status"] == "insufficient_data"
    assert {(e["psi"], e["status"]) for e in body["columns"].values()} == {(None, "insufficient_data")}
    status, _, body = drift_service.http.get(query(since=traffic["t0"], until=traffic["t2"], min_rows=4_000))
    assert body["status"] == "drift" and body["columns"]["source"]["psi"] > 0.25


def test_a_window_without_rows_answers_insufficient_data(drift_service, traffic):
    status, _, body = drift_service.http.get(query(since="2001-01-01T00:00:00+00:00", until="2001-01-02T00:00:00+00:00"))
    assert status == 200, body
    assert (body["n"], body["status"]) == (0, "insufficient_data")
    assert {(e["psi"], e["missing_share"]) for e in body["columns"].values()} == {(None, None)}


def test_the_default_window_is_the_last_24_hours(drift_service, traffic):
    status, _, body = drift_service.http.get("/drift")
    assert status == 200, body
    assert body["n"] == 4_000
    since, until = datetime.fromisoformat(body["since"]), datetime.fromisoformat(body["until"])
    assert until - since == timedelta(hours=24)
    assert abs((until - datetime.now(timezone.utc)).total_seconds()) < 60


@pytest.mark.parametrize("parameters, field", [
    ({"since": "yesterday"}, "since"),
    ({"until": "soon"}, "until"),
    ({"since": "1h", "until": "2h"}, "since"),
    ({"min_rows": "0"}, "min_rows"),
    ({"min_rows": "many"}, "min_rows"),
    ({"model_version": "1; drop table predictions"}, "model_version"),
    ({"model_version": "Production"}, "model_version"),
])
def test_bad_parameters_are_a_400_naming_the_field(drift_service, parameters, field):
    status, _, body = drift_service.http.get(query(**parameters))
    assert status == 400, body
    assert body["error"] == "invalid_input"
    assert [p["field"] for p in body["problems"]] == [field]


@pytest.mark.parametrize("version", ["3", "99"])
def test_a_version_without_a_reference_is_a_404_naming_it(drift_service, version):
    status, _, body = drift_service.http.get(query(model_version=version))
    assert status == 404, body
    assert body["error"] == "no_reference"
    assert body["problems"] == [{"row": None, "field": "model_version", "reason": "has no reference"}]


@pytest.mark.slow  # the profile is computed by scoring the run's test split: a model load in a new process
def test_model_version_selects_its_rows_and_an_older_model_gets_a_reference_computed_on_demand(
        drift_service, traffic, holdout):
    moved, _ = traffic["moved"]
    record = RequestRecord("v2", "/batch_predict", timestamp=traffic["t2"])
    record.users = json.loads(moved[SENT].iloc[:600].to_json(orient="records"))
    record.columns = validate_columns(record.users)
    record.outputs = [{"predicted_revenue": 1.0, "payer_probability": 0.1, "revenue_p10": 0.0,
                       "revenue_p90": 3.0}] * 600
    connection = connect(drift_service.database_url)
    write_rows(connection, log_rows(record, 200, 1.0, ModelIdentity("models:/revenue_model/2", "revenue_model", "2")),
               Partitions())
    connection.close()

    status, _, body = drift_service.http.get(query(model_version="2", since=traffic["t0"]), timeout=300)
    assert status == 200, body
    assert (body["model_version"], body["n"]) == ("2", 600)
    assert body["reference"].startswith("computed on demand from runs:/")
    assert body["reference_n"] == len(holdout)  # the test split is this profile's reference
    assert body["columns"]["source"]["unseen_share"] > 0.25
    # Version 1's count in the same window is unchanged by version 2's rows.
    assert drift_service.http.get(query(since=traffic["t0"]))[2]["n"] == 4_000


def metric_samples(http) -> dict[tuple[str, frozenset], float]:
    _, _, text = http.get("/metrics")
    samples = {}
    for line in text.splitlines():
        if match := re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line):
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match[2] or ""))
            samples[(match[1], labels)] = float(match[3])
    return samples


def test_the_gauges_show_the_served_versions_drift_over_the_sliding_window(drift_service, traffic):
    http = drift_service.http

    def refreshed() -> bool:
        return metric_samples(http).get(("revenue_drift_window_rows", frozenset({("model_version", "1")}))) == 4_000

    assert wait_until(refreshed, 30), metric_samples(http)
    samples = metric_samples(http)
    _, _, body = http.get("/drift")
    for column, entry in body["columns"].items():
        labels = frozenset({("model_version", "1"), ("column", column)})
        assert samples[("revenue_drift_psi", labels)] == pytest.approx(entry["psi"], rel=1e-9), column
        assert samples[("revenue_drift_status", labels)] == D.SEVERITY[entry["status"]], column
    source = frozenset({("model_version", "1"), ("column", "source")})
    assert samples[("revenue_drift_status", source)] == 3
    assert samples[("revenue_drift_unseen_share", source)] == pytest.approx(body["columns"]["source"]["unseen_share"])
    assert samples[("revenue_drift_last_refresh_timestamp_seconds", frozenset())] > traffic["t2"].timestamp()


# The example alert rules (and the Grafana dashboard) are checked against a served /metrics in
# tests/serving/test_monitoring_examples.py.
