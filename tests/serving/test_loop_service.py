"""The loop through the real service: predictions, labels posted, GET /performance against metrics
computed here (NumPy, from the numbers the service answered), groups by platform and country."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

import psycopg2
import pytest

from tests.serving.conftest import rows_for
from tests.serving.test_outcomes import assert_matches, reference

OUTPUTS = ["predicted_revenue", "payer_probability", "revenue_p10", "revenue_p90"]


def users_of(holdout, n, tag):
    frame = holdout.iloc[:n].drop(columns=["install_date", "true_payer_probability", "true_expected_revenue"])
    users = json.loads(frame.to_json(orient="records"))
    for i, user in enumerate(users):
        user["user_id"] = f"loop-{tag}-{i}"
    return users


def labels_in_db(url, user_ids):
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT user_id, revenue, source FROM labels WHERE user_id = ANY(%s)", (list(user_ids),))
        found = {u: (r, s) for u, r, s in cursor.fetchall()}
    connection.close()
    return found


@pytest.fixture(scope="module")
def served(http, service, holdout):
    """600 users predicted (ten of them twice: the later counts), five without user_id; labels for
    500 of them (one replaced later; one bad request, stored nothing)."""
    tag = uuid.uuid4().hex[:8]
    users = users_of(holdout, 600, tag)
    since = datetime.now(timezone.utc) - timedelta(seconds=1)
    ids = [f"{tag}-a", f"{tag}-b", f"{tag}-anonymous"] + [f"{tag}-again-{i}" for i in range(10)]
    answers = {}
    for request_id, part in zip(ids[:2], (users[:300], users[300:])):
        status, _, body = http.post("/batch_predict", {"users": part}, headers={"X-Request-Id": request_id})
        assert status == 200
        answers.update({p["user_id"]: p for p in body["predictions"]})
    anonymous = [{k: v for k, v in u.items() if k != "user_id"} for u in users[:5]]
    assert http.post("/batch_predict", {"users": anonymous}, headers={"X-Request-Id": ids[2]})[0] == 200
    for i in range(10):
        status, _, body = http.post("/predict", {**users[i], "event_1": users[i]["event_1"] + 50},
                                    headers={"X-Request-Id": ids[3 + i]})
        assert status == 200
        answers[body["user_id"]] = body
    rows_for(service.database_url, ids, expected=615)
    until = datetime.now(timezone.utc) + timedelta(seconds=1)

    revenue = {u["user_id"]: float(r) for u, r in zip(users, holdout["revenue"].iloc[:600])}
    labelled = [u["user_id"] for u in users[:500]]
    for part in (labelled[:250], labelled[250:]):
        status, _, body = http.post("/labels", {"labels": [{"user_id": u, "revenue": revenue[u]} for u in part]})
        assert status == 200 and body["accepted"] == 250 and body["replaced"] == 0
    revenue[labelled[7]] = 123.0  # a later label replaces the earlier one
    status, _, body = http.post("/labels", {"labels": [{"user_id": labelled[7], "revenue": 123.0}]})
    assert (status, body["accepted"], body["replaced"]) == (200, 1, 1)
    bad = {"labels": [{"user_id": labelled[8], "revenue": 999.0}, {"user_id": labelled[9], "revenue": -1}]}
    status, _, body = http.post("/labels", bad, headers={"X-Request-Id": f"{tag}-bad-labels"})
    assert status == 400 and body["problems"] == [{"row": 1, "field": "revenue", "reason": "must be >= 0"}]
    truth = [{"user_id": u["user_id"], "version": "1", "country": u["country"], "platform": u["platform"],
              **{c: answers[u["user_id"]][c] for c in OUTPUTS},
              "revenue": revenue[u["user_id"]] if u["user_id"] in labelled else None} for u in users]
    return {"since": since, "until": until, "truth": truth, "labelled": labelled, "revenue": revenue, "tag": tag}


def performance(http, served, **query):
    """The answer once the rollup has read the whole log: each call reads at most 20,000 new rows,
    and in a full test run the session service's log holds far more from earlier tests."""
    window = {"since": served["since"].isoformat(), "until": served["until"].isoformat()}
    for _ in range(200):
        status, _, body = http.get("/performance?" + urlencode({**window, **query}))
        assert status == 200, body
        if body["pending_log_rows"] == 0 and body["pending_labels"] == 0:
            break
    return body


def test_labels_are_stored_once_each_and_a_bad_request_stores_none(service, served):
    stored = labels_in_db(service.database_url, served["labelled"])
    assert {u: r for u, (r, _) in stored.items()} == {u: served["revenue"][u] for u in served["labelled"]}
    assert stored[served["labelled"][8]][0] != 999.0  # the bad request's good label was not stored
    assert all(source.startswith("api:") for _, source in stored.values())


def test_performance_equals_metrics_computed_from_the_served_numbers(http, served):
    body = performance(http, served, min_labelled=100)
    (group,) = body["groups"]
    assert (group["model_version"], group["by"], group["value"], group["reason"]) == ("1", None, None, None)
    labelled = [t for t in served["truth"] if t["revenue"] is not None]
    # Anonymous predictions are never matched; a user predicted twice counts once (the later).
    assert (group["n_predicted"], group["n_labelled"]) == (600, 500)
    assert_matches(group["metrics"], reference(labelled))
    assert body["pending_log_rows"] == 0 and body["pending_labels"] == 0


@pytest.mark.parametrize("by, fold", [
    ("platform", lambda t: "ios" if "ios" in t["platform"].lower() else "android"),
    ("country", lambda t: t["country"].strip().lower()),
])
def test_groups_by_platform_and_country_fold_spellings(http, served, by, fold):
    body = performance(http, served, by=by, min_labelled=50)
    expected = {}
    for t in served["truth"]:
        expected.setdefault(fold(t), []).append(t)
    assert {g["value"] for g in body["groups"]} == set(expected)
    for group in body["groups"]:
        users = expected[group["value"]]
        labelled = [t for t in users if t["revenue"] is not None]
        assert (group["by"], group["n_predicted"], group["n_labelled"]) == (by, len(users), len(labelled))
        if len(labelled) >= 50:
            assert_matches(group["metrics"], reference(labelled))
        else:
            assert group["metrics"] is None and group["reason"] == f"{len(labelled)} labelled users, fewer than min_labelled=50"


def test_labels_answer_400_listing_every_problem_413_over_the_maximum_and_415(http):
    status, headers, body = http.post("/labels", {"labels": [
        {"user_id": "", "revenue": 1}, {"user_id": "x" * 201, "revenue": float("nan")},
        {"user_id": "dup", "revenue": "12"}, {"user_id": "dup", "revenue": float("inf")}, {"revenue": -3}]})
    assert status == 400 and body["error"] == "invalid_input" and body["request_id"] == headers["X-Request-Id"]
    assert body["problems"] == [
        {"row": 0, "field": "user_id", "reason": "is required"},
        {"row": 1, "field": "revenue", "reason": "is required"},
        {"row": 1, "field": "user_id", "reason": "is longer than 200 characters"},
        {"row": 2, "field": "revenue", "reason": "must be a number"},
        {"row": 3, "field": "revenue", "reason": "must be a finite number"},
        {"row": 3, "field": "user_id", "reason": "is a duplicate of row 2"},
        {"row": 4, "field": "revenue", "reason": "must be >= 0"},
        {"row": 4, "field": "user_id", "reason": "is required"},
    ]
    for payload, reason in (({}, "is required"), ({"labels": []}, "must not be empty"),
                            ({"labels": {"user_id": "u"}}, "must be a list")):
        status, _, body = http.post("/labels", payload)
        assert (status, body["problems"]) == (400, [{"row": None, "field": "labels", "reason": reason}])
    many = {"labels": [{"user_id": f"many-{i}", "revenue": 1} for i in range(10_001)]}
    status, _, body = http.post("/labels", many)
    assert (status, body["error"]) == (413, "too_many_labels")
    assert http.post("/labels", raw=b"user_id,revenue", headers={"Content-Type": "text/csv"})[0] == 415
    assert http.post("/labels", raw=b"{not json")[2]["error"] == "invalid_json"


@pytest.mark.parametrize("query, field", [
    ("by=campaign", "by"), ("min_labelled=0", "min_labelled"), ("min_labelled=many", "min_labelled"),
    ("since=yesterday", "since"), ("until=soon", "until"), ("since=1h&until=2h", "until"),
])
def test_performance_answers_400_naming_the_parameter(http, query, field):
    status, _, body = http.get(f"/performance?{query}")
    assert status == 400 and [p["field"] for p in body["problems"]] == [field], body


@pytest.mark.slow
def test_gauges_are_refreshed_in_the_background_and_labels_answer_503_without_postgres(
        champion_store, holdout, tmp_path):
    """Its own PostgreSQL and service (refreshing every second), stopped half way."""
    import pgserver

    from tests.serving.conftest import Service, wait_until

    database = pgserver.get_server(tmp_path / "pg")
    service = Service(tmp_path, champion_store, database.get_uri(), PERFORMANCE_REFRESH_S=1).start()
    try:
        users = users_of(holdout, 400, "gauges")
        status, _, body = service.http.post("/batch_predict", {"users": users})
        assert status == 200
        predicted = [p["predicted_revenue"] for p in body["predictions"]]
        revenue = holdout["revenue"].iloc[:400].astype(float).tolist()
        labels = [{"user_id": u["user_id"], "revenue": r} for u, r in zip(users, revenue)]
        assert service.http.post("/labels", {"labels": labels})[0] == 200

        def gauges() -> dict:
            text = service.http.get("/metrics")[2]
            return {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("revenue_realised_") and 'model_version="1"' in line}

        assert wait_until(lambda: len(gauges()) == 2, 60), service.output()
        found = gauges()
        assert found["revenue_realised_total_ratio"] == pytest.approx(sum(predicted) / sum(revenue), rel=1e-9)
        expected = reference([{"predicted_revenue": p, "payer_probability": 0.5, "revenue": r, "revenue_p10": 0,
                               "revenue_p90": 0} for p, r in zip(predicted, revenue)])
        assert found["revenue_realised_normalized_gini"] == pytest.approx(expected["norm_gini"], abs=0.08 / 20)

        database.cleanup()  # PostgreSQL stops
        status, _, body = service.http.post("/labels", {"labels": labels[:3]})
        assert (status, body["error"]) == (503, "database_unavailable"), body
        status, _, body = service.http.get("/performance")
        assert (status, body["error"]) == (503, "database_unavailable"), body
    finally:
        service.stop()
        database.cleanup()


def test_the_export_is_what_was_sent_with_its_label(service, served, holdout, monkeypatch, tmp_path):
    """export_training_data on the service's own database: one row per labelled user, the inputs as sent."""
    import pandas as pd

    from pipelines.export_training_data import export

    monkeypatch.setenv("DATABASE_URL", service.database_url)
    summary = export(tmp_path / "served.parquet", since=served["since"], until=served["until"], min_users=1)
    exported = pd.read_parquet(tmp_path / "served.parquet").set_index("user_id")
    assert summary["rows"] == len(exported) == 500 and summary["versions"] == {"1": 500}
    sent = {u["user_id"]: u for u in users_of(holdout, 600, served["tag"])}
    for i in range(10):  # sent again later with event_1 + 50: the later one is exported
        sent[f"loop-{served['tag']}-{i}"]["event_1"] += 50
    for user_id, row in exported.iterrows():
        user = sent[user_id]
        for column in ("country", "country_region", "source", "platform", "device_family", "os_version"):
            assert row[column] == (user[column].strip() or None if user[column] else None), (user_id, column)
        for column in ("event_1", "event_2", "event_3"):
            assert (row[column] == user[column]) or (pd.isna(row[column]) and user[column] is None), (user_id, column)
        assert row["revenue"] == served["revenue"][user_id] and row["model_version"] == "1"
        assert served["since"] <= row["predicted_at"] < served["until"]
