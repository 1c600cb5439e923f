"""Following the alias and shadowing a challenger, with real processes: one service, a store of three
versions (the session's model, a second one trained on few rows, one that cannot load), aliases moved."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
import zlib
from datetime import datetime, timezone

import mlflow
import numpy as np
import pandas as pd
import psycopg2
import pytest
from mlflow import MlflowClient
from scipy.stats import spearmanr

from pipelines.model_logging import log_revenue_model
from revenue_model.contract import FEATURE_INPUTS
from revenue_model.predictor import fit_predictor
from tests.conftest import new_database, tracking_store
from tests.serving.conftest import Service, metric, wait_until
from tests.serving.test_outcomes import assert_matches, reference
from tests.serving.test_reliability import USER, Load

pytestmark = pytest.mark.slow
KEY = "swap-key-" + uuid.uuid4().hex
SHARE = 0.5
QUEUE = 500  # users waiting for the shadow
BROKEN_MODEL = textwrap.dedent("""
    import mlflow

    class Broken(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            raise RuntimeError("this version cannot load")

        def predict(self, context, model_input, params=None):
            return model_input

    mlflow.models.set_model(Broken())
""")


@pytest.fixture(scope="module")
def challenger(users):
    """A second model, trained on few rows: its predictions differ from the session's."""
    return fit_predictor(users.iloc[:1500], users.iloc[1500:2000], seed=3)


@pytest.fixture(scope="module")
def store(predictor, challenger, holdout, tmp_path_factory):
    """Versions 1 (champion), 2 (challenger) and 3 (cannot load) of revenue_model."""
    root = tmp_path_factory.mktemp("swap-store")
    broken = root / "broken_model.py"
    broken.write_text(BROKEN_MODEL)
    example = holdout[list(FEATURE_INPUTS)].iloc[:3]
    with tracking_store(root, "swaps") as (uri, client, experiment):
        with mlflow.start_run(experiment_id=experiment):
            log_revenue_model(predictor, example, registered_model_name="revenue_model")
            log_revenue_model(challenger, example, name="challenger", registered_model_name="revenue_model")
            mlflow.pyfunc.log_model(name="broken", python_model=str(broken), pip_requirements=["mlflow"],
                                    registered_model_name="revenue_model")
    client.set_registered_model_alias("revenue_model", "champion", "1")
    client.set_registered_model_alias("revenue_model", "challenger", "2")
    return uri


@pytest.fixture(scope="module")
def service(store, postgres, tmp_path_factory):
    running = Service(tmp_path_factory.mktemp("swaps"), store, new_database(postgres), MODEL_POLL_S=1, API_KEY=KEY,
                      SHADOW_URI="models:/revenue_model@challenger", SHADOW_SHARE=SHARE, SHADOW_QUEUE_USERS=QUEUE,
                      SCORER_PING_TIMEOUT_S=3).start()
    running.http.headers["X-API-Key"] = KEY
    yield running
    running.stop()


def move(store: str, alias: str, version: str) -> None:
    MlflowClient(store).set_registered_model_alias("revenue_model", alias, version)


def serving(service, version: str, timeout_s: float = 120) -> bool:
    return wait_until(lambda: service.http.get("/health")[2].get("model_version") == version, timeout_s, 0.2)


def logged(database_url: str, request_ids: list[str], expected: int, role: str | None = None) -> list[dict]:
    """Rows of these requests (of ``role``, or both), once ``expected`` of them are written."""
    rows: list[dict] = []

    def enough() -> bool:
        with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT row_key, role, timestamp, request_id, user_index, user_id, model_version, "
                           "predicted_revenue, status_code FROM predictions "
                           "WHERE request_id = ANY(%s) AND role = coalesce(%s, role)", (request_ids, role))
            names = [d.name for d in cursor.description]
            rows[:] = [dict(zip(names, r)) for r in cursor.fetchall()]
        connection.close()
        return len(rows) >= expected

    wait_until(enough, 30)
    return rows


def test_shadow_rows_and_the_shadow_report_match_both_models_scored_in_process(
        service, store, predictor, challenger, holdout):
    assert wait_until(lambda: (service.http.get("/model/info")[2]["shadow"] or {}).get("model_version") == "2",
                      120), service.output()
    assert service.http.get("/model/info")[2]["shadow"] == {"model_version": "2", "share": SHARE}
    since = datetime.now(timezone.utc).isoformat()
    frame = holdout[list(FEATURE_INPUTS)].iloc[:240].reset_index(drop=True)
    frame["user_id"] = [f"u-{i}" for i in range(200)] + [None] * 40  # the last 40 go by request id
    users = [{k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}
             for row in frame.to_dict("records")]
    request_ids = [f"shadow-{uuid.uuid4().hex[:8]}-{k}" for k in range(4)]
    batches = [users[k * 60:(k + 1) * 60] for k in range(4)]
    for request_id, batch in zip(request_ids, batches):
        status, _, body = service.http.post("/batch_predict", {"users": batch}, headers={"X-Request-Id": request_id})
        assert status == 200 and body["model_version"] == "1"

    # Which users the contract's rule picks: crc32 of user_id (else of the request id) in the lowest SHARE.
    def picked(key: str) -> bool:
        return zlib.crc32(key.encode()) < SHARE * 2 ** 32

    expected = {(rid, i) for rid, batch in zip(request_ids, batches) for i, user in enumerate(batch)
                if picked(user.get("user_id") or rid)}
    assert 0 < len(expected) < 240
    rows = logged(service.database_url, request_ids, 240 + len(expected))
    champion = {(r["request_id"], r["user_index"]): r for r in rows if r["role"] == "champion"}
    shadow = {(r["request_id"], r["user_index"]): r for r in rows if r["role"] == "shadow"}
    assert len(champion) == 240 and set(shadow) == expected
    for key, row in shadow.items():
        twin = champion[key]
        shared = ("row_key", "timestamp", "user_id")
        assert [row[k] for k in shared] == [twin[k] for k in shared]
        assert (row["model_version"], row["status_code"], twin["model_version"]) == ("2", 200, "1")

    position = {(rid, i): k * 60 + i for k, rid in enumerate(request_ids) for i in range(60)}
    ours, theirs = predictor.predict(frame)["predicted_revenue"], challenger.predict(frame)["predicted_revenue"]
    for key, row in champion.items():
        assert row["predicted_revenue"] == pytest.approx(ours[position[key]], rel=1e-9)
    keys = sorted(shadow)
    v1 = np.array([ours[position[k]] for k in keys])
    v2 = np.array([theirs[position[k]] for k in keys])
    assert [shadow[k]["predicted_revenue"] for k in keys] == pytest.approx(list(v2), rel=1e-9)

    status, _, report = service.http.get(f"/shadow?since={since}")
    assert status == 200, report
    top = max(1, round(len(keys) * 0.1))
    overlap = len(set(np.argsort(-v1)[:top]) & set(np.argsort(-v2)[:top])) / top
    assert report["champion_version"] == "1" and report["shadow_version"] == "2"
    assert report["n_users"] == len(keys)
    assert report["mean_ratio"] == pytest.approx(v2.sum() / v1.sum(), rel=1e-9)
    assert report["spearman"] == pytest.approx(spearmanr(v1, v2).statistic, rel=1e-9)
    assert report["top_decile_overlap"] == pytest.approx(overlap)
    assert metric(service, 'revenue_shadow_users_total{outcome="scored"}') >= len(keys)

    # The first batch's users again, in a new request: the same users, counted once, by their latest pair.
    again = f"shadow-again-{uuid.uuid4().hex[:8]}"
    assert service.http.post("/batch_predict", {"users": batches[0]}, headers={"X-Request-Id": again})[0] == 200
    logged(service.database_url, [again], 60 + sum(picked(user["user_id"]) for user in batches[0]))
    status, _, repeated = service.http.get(f"/shadow?since={since}")
    assert status == 200 and repeated["n_users"] == len(keys)
    assert repeated["mean_ratio"] == pytest.approx(report["mean_ratio"], rel=1e-9)
    assert repeated["spearman"] == pytest.approx(report["spearman"], rel=1e-9)


def test_a_frozen_shadow_neither_delays_nor_fails_an_answer_and_its_dropped_work_is_counted(service, holdout):
    assert wait_until(lambda: (service.http.get("/model/info")[2]["shadow"] or {}).get("model_version") == "2",
                      120), service.output()
    dropped_before = metric(service, 'revenue_shadow_users_total{outcome="dropped"}')
    champion_pid, shadow_pid = service.scorer_pids()
    users = [{**user, "user_id": f"frozen-{i}"} for i, user in enumerate(
        json.loads(holdout[list(FEATURE_INPUTS)].iloc[:100].to_json(orient="records")))]
    os.kill(shadow_pid, signal.SIGSTOP)
    try:
        seconds = []
        for _ in range(20):  # about 50 users each for the shadow: 1,000 against a queue of 500
            started = time.monotonic()
            status, _, body = service.http.post("/batch_predict", {"users": users})
            seconds.append(time.monotonic() - started)
            assert status == 200 and body["model_version"] == "1"
    finally:
        os.kill(shadow_pid, signal.SIGCONT)
    assert max(seconds) < 2.0, seconds  # the shadow's call hangs until its ping times out (3 s)
    picked = sum(zlib.crc32(user["user_id"].encode()) < SHARE * 2 ** 32 for user in users)
    assert metric(service, 'revenue_shadow_users_total{outcome="dropped"}') - dropped_before >= 20 * picked - QUEUE
    assert champion_pid in service.scorer_pids()


def test_the_alias_moved_under_load_and_back_fails_no_request_and_each_row_says_who_answered(
        service, store, predictor, challenger):
    swaps_before = metric(service, 'revenue_model_swaps_total{role="champion"}')
    prefix = f"swap-{uuid.uuid4().hex[:6]}"
    with Load(service.port, prefix, pause_s=0.005, headers={"X-API-Key": KEY}) as load:
        time.sleep(1)
        move(store, "champion", "2")
        assert serving(service, "2"), service.output()
        time.sleep(1)
        move(store, "champion", "1")                  # the rollback
        assert serving(service, "1"), service.output()
        time.sleep(1)
    assert load.failures == [] and set(load.answers.values()) == {200}
    order = [load.versions[rid] for rid in load.answers]
    changes = [v for i, v in enumerate(order) if i == 0 or order[i - 1] != v]
    assert changes == ["1", "2", "1"], changes

    # Each answer is the version its header names, as that model scores the user in process.
    frame = pd.DataFrame([USER])
    expected = {"1": predictor.predict(frame)["predicted_revenue"][0],
                "2": challenger.predict(frame)["predicted_revenue"][0]}
    for rid, body in load.bodies.items():
        answer = json.loads(body)
        assert answer["model_version"] == load.versions[rid]
        assert answer["predicted_revenue"] == pytest.approx(expected[load.versions[rid]], rel=1e-9)
    rows = logged(service.database_url, list(load.answers), len(load.answers), role="champion")
    champion_rows = {r["request_id"]: r["model_version"] for r in rows}
    assert champion_rows == load.versions

    swaps = service.http.get("/model/info")[2]["swaps"]
    assert [(s["from_version"], s["to_version"]) for s in swaps[-2:]] == [("1", "2"), ("2", "1")]
    assert metric(service, 'revenue_model_swaps_total{role="champion"}') == swaps_before + 2
    # The retired scorers are stopped: one champion and one shadow remain.
    assert wait_until(lambda: len(service.scorer_pids()) == 2, 60), service.scorer_pids()
    # Quiet by default after "ready" too: a swap's download draws no MLflow progress bar.
    service.log.flush()
    assert "Downloading artifacts" not in Path(service.log.name).read_text()
    print(f"{len(order)} requests across two swaps, none failed")


def test_a_broken_version_made_champion_is_not_switched_to_and_the_old_keeps_serving(service, store):
    failures_before = metric(service, 'revenue_model_swap_failures_total{role="champion"}')
    prefix = f"broken-{uuid.uuid4().hex[:6]}"
    try:
        with Load(service.port, prefix, headers={"X-API-Key": KEY}) as load:
            move(store, "champion", "3")
            status, _, answer = service.http.post("/admin/model/check")
            assert status == 200, answer
            assert answer["champion"]["status"] == "failed" and "version 3" in answer["champion"]["error"]
            assert answer["champion"]["to_version"] == "1"
            health = service.http.get("/health")
            assert health[0] == 200 and health[2]["model_version"] == "1"
        assert load.failures == [] and set(load.answers.values()) == {200}
        assert set(load.versions.values()) == {"1"}
        assert metric(service, 'revenue_model_swap_failures_total{role="champion"}') > failures_before
        assert 'revenue_model_serving{model_version="1",role="champion"} 1.0' in service.http.get("/metrics")[2]
    finally:
        move(store, "champion", "1")
    status, _, answer = service.http.post("/admin/model/check")
    assert answer["champion"]["status"] == "unchanged" and answer["champion"]["to_version"] == "1"


def test_the_model_routes_need_the_api_key(service):
    for method, path in [("POST", "/admin/model/check"), ("GET", "/shadow"), ("GET", "/model/info")]:
        assert service.http.call(method, path, headers={"X-API-Key": "wrong"})[0] == 401, path


# -- live evidence: both versions judged on the same labelled users ----------------------------------

@pytest.fixture(scope="module")
def labelled_pairs(service, predictor, challenger, holdout):
    """300 users answered by version 1 and shadowed at SHARE by version 2, every one labelled; the
    users both scored (from the log's shadow rows) with both models' outputs computed in process."""
    assert serving(service, "1") and wait_until(
        lambda: (service.http.get("/model/info")[2]["shadow"] or {}).get("model_version") == "2", 120)
    probe = next(f"probe-{i}" for i in range(1000) if zlib.crc32(f"probe-{i}".encode()) < SHARE * 2 ** 32)

    def shadow_answers() -> bool:  # a shadow scorer restarted by an earlier test may still be starting
        before = metric(service, 'revenue_shadow_users_total{outcome="scored"}')
        service.http.post("/predict", {**USER, "user_id": probe})
        return wait_until(lambda: metric(service, 'revenue_shadow_users_total{outcome="scored"}') > before, 3)

    assert wait_until(shadow_answers, 90), service.output()
    since = datetime.now(timezone.utc).isoformat()
    frame = holdout[list(FEATURE_INPUTS)].iloc[:300].reset_index(drop=True)
    frame["user_id"] = [f"evidence-{uuid.uuid4().hex[:6]}-{i}" for i in range(300)]
    users = [{k: v for k, v in row.items() if not (isinstance(v, float) and np.isnan(v))}
             for row in frame.to_dict("records")]
    request_ids = [f"evidence-{uuid.uuid4().hex[:8]}-{k}" for k in range(3)]
    for k, request_id in enumerate(request_ids):
        status, _, body = service.http.post("/batch_predict", {"users": users[k * 100:(k + 1) * 100]},
                                            headers={"X-Request-Id": request_id})
        assert status == 200 and body["model_version"] == "1"
    picked = {u["user_id"] for u in users if zlib.crc32(u["user_id"].encode()) < SHARE * 2 ** 32}
    rows = logged(service.database_url, request_ids, 300 + len(picked))
    both = {r["user_id"] for r in rows if r["role"] == "shadow" and r["status_code"] == 200}
    assert both <= picked and len(both) >= 0.8 * len(picked) > 100
    ours, theirs = predictor.predict(frame), challenger.predict(frame)
    rng = np.random.default_rng(8)
    # Revenue drawn around the champion's predictions; rescaled so that version 2's total on the
    # users both scored is exactly right (it qualifies on the total: the Gini decides).
    revenue = np.where(rng.random(300) < ours["payer_probability"],
                       ours["predicted_revenue"] / ours["payer_probability"] * rng.lognormal(-0.5, 1.0, 300), 0.0)
    mask = frame["user_id"].isin(both).to_numpy()
    revenue *= theirs["predicted_revenue"][mask].sum() / revenue[mask].sum()
    labels = [{"user_id": u, "revenue": float(r)} for u, r in zip(frame["user_id"], revenue)]
    status, _, answer = service.http.post("/labels", {"labels": labels})
    assert status == 200 and answer["accepted"] == 300, answer

    def people(outputs) -> list[dict]:
        return [{"revenue": float(revenue[i]), **{c: float(outputs[c][i]) for c in
                 ("predicted_revenue", "payer_probability", "revenue_p10", "revenue_p90")}}
                for i in np.flatnonzero(mask)]

    return {"since": since, "both": both, "expected": {"1": reference(people(ours)), "2": reference(people(theirs))}}


def test_performance_shows_champion_and_shadow_on_the_same_labelled_users(service, labelled_pairs):
    since = labelled_pairs["since"]
    status, _, body = service.http.get(f"/performance?since={since}&min_labelled=50")
    assert status == 200, body
    same = body["same_users"]
    n = len(labelled_pairs["both"])
    assert (same["champion_version"], same["shadow_version"], same["n_users"], same["n_labelled"]) == ("1", "2", n, n)
    assert [(g["model_version"], g["n_labelled"]) for g in same["groups"]] == [("1", n), ("2", n)]
    for group in same["groups"]:
        assert_matches(group["metrics"], labelled_pairs["expected"][group["model_version"]])
    # /performance's own groups judge version 1 on all of its 300 users: another population.
    assert [g["n_labelled"] for g in body["groups"] if g["model_version"] == "1"] == [300]
    status, _, body = service.http.get(f"/performance?since={since}&min_labelled=50&shadow_version=1")
    assert status == 400 and body["problems"][0]["field"] == "shadow_version", body
    status, _, body = service.http.get(f"/performance?since={since}&champion_version=latest")
    assert status == 400 and body["problems"][0]["field"] == "champion_version", body


def promote_on_evidence(service, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.promote", "--evidence", "shadow", *args],
                          env=service.env, cwd=service.root, capture_output=True, text=True, timeout=300)


def test_promote_on_shadow_evidence_uses_the_realised_gini_on_the_same_users(service, store, labelled_pairs):
    expected = labelled_pairs["expected"]
    gain = expected["2"]["norm_gini"] - expected["1"]["norm_gini"]
    since = ["--since", labelled_pairs["since"]]
    too_few = promote_on_evidence(service, *since, "--min-labelled", str(len(labelled_pairs["both"]) + 1))
    assert too_few.returncode == 3 and "fewer than min_labelled" in too_few.stdout, too_few.stdout + too_few.stderr
    refused = promote_on_evidence(service, *since, "--min-labelled", "50", "--min-gain", f"{gain + 0.02:.6f}")
    assert refused.returncode == 3, refused.stdout + refused.stderr
    client = MlflowClient(store)
    record = json.loads(client.get_model_version("revenue_model", "2").tags["promotion_refused"])
    for role, version in (("champion", "1"), ("challenger", "2")):
        assert record["metrics"][role]["total_ratio"] == pytest.approx(expected[version]["total_ratio"], rel=1e-9)
        assert record["metrics"][role]["normalized_gini"] == pytest.approx(
            expected[version]["norm_gini"], abs=0.08 / np.sqrt(expected[version]["n"]))
    assert str(client.get_model_version_by_alias("revenue_model", "champion").version) == "1"
    try:
        promoted = promote_on_evidence(service, *since, "--min-labelled", "50",
                                       "--min-gain", f"{gain - 0.02:.6f}")
        assert promoted.returncode == 0 and "PROMOTED" in promoted.stdout, promoted.stdout + promoted.stderr
        assert str(client.get_model_version_by_alias("revenue_model", "champion").version) == "2"
    finally:
        move(store, "champion", "1")
