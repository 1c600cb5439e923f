"""The service end to end: real scorer process, real PostgreSQL."""

import json
import urllib.parse
import uuid
from collections import Counter
from datetime import datetime, timezone

import numpy as np
import pytest

from tests.serving.conftest import rows_for, wait_until

# The two examples of the original system's README, as written there.
EXAMPLE_1 = {"country": "es", "country_region": "Madrid", "source": "Organic", "platform": "iOS",
             "device_family": "Apple iPhone", "os_version": "14.4", "event_1": 100, "event_2": 50,
             "event_3": 10.0}
EXAMPLE_2 = {"country": "pe", "country_region": "Lima", "source": "Organic", "platform": "iOS",
             "device_family": "Apple iPhone", "os_version": "14.4", "event_1": 100, "event_2": 100,
             "event_3": 0}
OUTPUTS = ["predicted_revenue", "payer_probability", "revenue_p10", "revenue_p90"]


def users_of(holdout, n, start=0):
    frame = holdout.drop(columns=["revenue", "install_date", "true_payer_probability",
                                  "true_expected_revenue"]).iloc[start:start + n]
    return json.loads(frame.to_json(orient="records"))


@pytest.mark.parametrize("example", [EXAMPLE_1, EXAMPLE_2])
def test_the_original_readme_examples_work_and_equal_the_pyfunc(http, predictor, example):
    status, headers, body = http.post("/predict", example)
    assert status == 200
    expected = predictor.predict([example]).iloc[0]
    assert [body[c] for c in OUTPUTS] == pytest.approx([expected[c] for c in OUTPUTS], rel=1e-9)
    assert body["model_version"] == headers["X-Model-Version"] == "1"
    assert body["inference_time_ms"] > 0 and body["request_id"] == headers["X-Request-Id"]
    assert datetime.fromisoformat(body["timestamp"]).tzinfo is not None


def test_predict_equals_the_pyfunc_in_process(http, predictor, holdout):
    users = users_of(holdout, 40)
    answers = [http.post("/predict", u)[2] for u in users]
    served = np.array([[a[c] for c in OUTPUTS] for a in answers])
    np.testing.assert_allclose(served, predictor.predict(users)[OUTPUTS].to_numpy(), rtol=1e-9)
    assert [a["user_id"] for a in answers] == [u["user_id"] for u in users]


def test_a_batch_of_1000_users_comes_back_in_order_with_its_total(http, predictor, holdout):
    users = users_of(holdout, 1000)
    status, _, body = http.post("/batch_predict", {"users": users})
    assert status == 200 and body["count"] == 1000
    served = np.array([[p[c] for c in OUTPUTS] for p in body["predictions"]])
    np.testing.assert_allclose(served, predictor.predict(users)[OUTPUTS].to_numpy(), rtol=1e-9)
    assert body["total_predicted_revenue"] == pytest.approx(served[:, 0].sum())
    assert [p["user_id"] for p in body["predictions"]] == [u["user_id"] for u in users]


def test_every_request_becomes_exactly_its_rows(http, service, holdout):
    single, batch, bad = (f"test-rows-{uuid.uuid4().hex[:8]}-{k}" for k in "sbx")
    user = users_of(holdout, 1)[0]
    one = http.post("/predict", user, headers={"X-Request-Id": single})[2]
    three = http.post("/batch_predict", {"users": users_of(holdout, 3, 10)}, headers={"X-Request-Id": batch})[2]
    assert http.post("/batch_predict", {"users": [user, {**user, "event_1": -1}]},
                     headers={"X-Request-Id": bad})[0] == 400
    rows = rows_for(service.database_url, [single, batch, bad], expected=6)
    by_request = Counter(r["request_id"] for r in rows)
    assert by_request == {single: 1, batch: 3, bad: 2}
    assert {(r["model_name"], r["model_version"]) for r in rows} == {("revenue_model", "1")}
    first = next(r for r in rows if r["request_id"] == single)
    assert first["status_code"] == 200 and first["route"] == "/predict"
    assert first["predicted_revenue"] == pytest.approx(one["predicted_revenue"])
    assert first["input_data"] == user
    batch_rows = [r for r in rows if r["request_id"] == batch]
    assert [r["user_index"] for r in batch_rows] == [0, 1, 2]
    assert [r["predicted_revenue"] for r in batch_rows] == pytest.approx(
        [p["predicted_revenue"] for p in three["predictions"]])
    bad_rows = [r for r in rows if r["request_id"] == bad]
    assert [r["status_code"] for r in bad_rows] == [400, 400]
    assert bad_rows[1]["error"] == "event_1 must be >= 0" and bad_rows[1]["event_1"] == -1.0  # as sent


def test_stats_equal_what_was_sent(http, service, holdout):
    since = datetime.now(timezone.utc).isoformat()
    singles, batch = users_of(holdout, 7, 100), users_of(holdout, 25, 200)
    ids = []
    for user in singles:
        ids.append(http.post("/predict", user)[1]["X-Request-Id"])
    ids.append(http.post("/batch_predict", {"users": batch})[1]["X-Request-Id"])
    for _ in range(2):
        ids.append(http.post("/predict", {"country": "es"})[1]["X-Request-Id"])
    rows_for(service.database_url, ids, expected=7 + 25 + 2)
    status, _, stats = http.get(f"/stats?since={urllib.parse.quote(since)}")
    assert status == 200, stats
    sent = singles + batch
    assert stats["total_predictions"] == 32 and stats["total_requests"] == 10 and stats["total_rows"] == 34
    assert stats["errors"] == {"400": {"requests": 2, "rows": 2}}
    countries = Counter(u["country"].strip().upper() for u in sent)
    top = sorted(countries.items(), key=lambda kv: (-kv[1], kv[0]))[:10]  # ties: alphabetical
    assert [(c["country"], c["predictions"]) for c in stats["top_countries"]] == top
    platforms = Counter("iOS" if "ios" in u["platform"].lower() else "Android" for u in sent)
    assert {p["platform"]: p["predictions"] for p in stats["platform_distribution"]} == platforms
    assert stats["by_model_version"][0]["predictions"] == 32
    assert stats["by_route"]["/predict"] == {"requests": 9, "rows": 9}
    assert stats["latency_ms"]["p50"] <= stats["latency_ms"]["p95"] <= stats["latency_ms"]["p99"]
    assert "input_data" not in json.dumps(stats)


BAD_REQUESTS = [
    ({"source": "Organic", "platform": "iOS", "event_1": 1, "event_2": 1}, 400,
     [{"row": 0, "field": "country", "reason": "is required"}]),
    ({**EXAMPLE_1, "event_1": -3}, 400, [{"row": 0, "field": "event_1", "reason": "must be >= 0"}]),
    ({**EXAMPLE_1, "event_2": "many"}, 400, [{"row": 0, "field": "event_2", "reason": "must be a number"}]),
    ({**EXAMPLE_1, "device_family": "x" * 201}, 400,
     [{"row": 0, "field": "device_family", "reason": "is longer than 200 characters"}]),
    ({**EXAMPLE_1, "platform": 7, "event_3": -1}, 400,
     [{"row": 0, "field": "event_3", "reason": "must be >= 0"},
      {"row": 0, "field": "platform", "reason": "must be a string"}]),
    ([EXAMPLE_1], 400, None),
]


@pytest.mark.parametrize("body, status, problems", BAD_REQUESTS)
def test_bad_input_is_a_4xx_naming_the_field_and_is_logged(http, service, body, status, problems):
    got, headers, answer = http.post("/predict", body)
    assert got == status
    assert answer.get("problems") == problems
    assert answer["request_id"] == headers["X-Request-Id"] and headers["X-Model-Version"] == "1"
    (row,) = rows_for(service.database_url, [answer["request_id"]], expected=1)
    assert row["status_code"] == status and row["error"]
    assert http.post("/predict", EXAMPLE_1)[0] == 200  # and it keeps answering


def test_non_finite_numbers_are_named(http):
    raw = b'{"country": "es", "source": "Organic", "platform": "iOS", "event_1": NaN, "event_2": Infinity}'
    status, _, body = http.post("/predict", raw=raw)
    assert status == 400
    assert body["problems"] == [{"row": 0, "field": "event_1", "reason": "is required"},
                                {"row": 0, "field": "event_2", "reason": "must be a finite number"}]


@pytest.mark.parametrize("raw, content_type, status, error", [
    (b'{"country": ', "application/json", 400, "invalid_json"),
    (b"\xff\xfe{}", "application/json", 400, "invalid_json"),
    (b"country=es", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    (b'{"users": "all of them"}', "application/json", 400, "invalid_input"),
    (b'{"users": []}', "application/json", 400, "invalid_input"),
])
def test_malformed_bodies(http, raw, content_type, status, error):
    path = "/batch_predict" if b"users" in raw else "/predict"
    got, _, body = http.post(path, raw=raw, headers={"Content-Type": content_type})
    assert (got, body["error"]) == (status, error)


def test_a_batch_over_the_maximum_is_413(http, holdout):
    users = users_of(holdout, 1) * 10_001
    status, _, body = http.post("/batch_predict", {"users": users})
    assert status == 413 and body["problems"] == [
        {"row": None, "field": "users", "reason": "more than 10000 users"}]


def test_request_ids_are_honoured_and_unsafe_ones_replaced(http):
    assert http.post("/predict", EXAMPLE_1, headers={"X-Request-Id": "abc-123"})[1]["X-Request-Id"] == "abc-123"
    replaced = http.post("/predict", EXAMPLE_1, headers={"X-Request-Id": "bad id; drop table"})[1]
    assert replaced["X-Request-Id"] != "bad id; drop table" and len(replaced["X-Request-Id"]) == 32


@pytest.mark.parametrize("method, path", [("GET", "/health"), ("GET", "/nowhere"), ("GET", "/predict"),
                                          ("GET", "/stats"), ("GET", "/model/info")])
def test_every_response_carries_the_model_version_and_a_request_id(http, method, path):
    _, headers, _ = http.call(method, path)
    assert headers["X-Model-Version"] == "1" and headers["X-Request-Id"]


def test_invocations_passes_mlflow_formats_through(http, predictor, service):
    split = {"dataframe_split": {"columns": list(EXAMPLE_1), "data": [list(EXAMPLE_1.values())]}}
    status, headers, body = http.post("/invocations", split)
    assert status == 200, body
    assert body["predictions"][0]["predicted_revenue"] == pytest.approx(
        predictor.predict([EXAMPLE_1]).predicted_revenue[0], rel=1e-9)
    records = http.post("/invocations", {"dataframe_records": [EXAMPLE_1, EXAMPLE_2]})[2]
    assert len(records["predictions"]) == 2
    missing = http.post("/invocations", {"dataframe_records": [{"country": "es"}]})
    assert missing[0] == 400 and {p["field"] for p in missing[2]["problems"]} == {
        "source", "platform", "event_1", "event_2"}
    assert http.post("/invocations", {"something": []})[0] == 400
    csv = "country,source,platform,event_1,event_2\nes,Organic,iOS,3.0,1.0\n".encode()
    status, _, answer = http.post("/invocations", raw=csv, headers={"Content-Type": "text/csv"})
    assert status == 200 and len(answer["predictions"]) == 1
    broken = http.post("/invocations", raw=b"country\nes\n", headers={"Content-Type": "text/csv"})
    assert broken[0] == 400 and broken[2]["error_code"]  # MLflow's own answer, passed through
    for untyped in ({"Content-Type": ""}, {"Content-Type": "text/plain"}):  # MLflow: 415, with its types
        status, _, answer = http.post("/invocations", raw=b"", headers=untyped)
        assert status == 415 and "application/json" in str(answer), (untyped, answer)
    rows = rows_for(service.database_url, [headers["X-Request-Id"]], expected=1)
    assert rows[0]["route"] == "/invocations" and rows[0]["predicted_revenue"] > 0


def test_model_info_comes_from_the_registry(http):
    status, _, info = http.get("/model/info")
    assert status == 200
    assert (info["model_name"], info["model_version"], info["alias"]) == ("revenue_model", "1", "champion")
    assert info["run_id"] and "country_payer_rate" in info["features"]
    assert info["test_metrics"]["normalized_gini"] == 0.8
    assert {i["name"] for i in info["inputs"]} >= {"country", "event_1"}


def test_health_names_the_model(http):
    status, _, body = http.get("/health")
    assert status == 200 and body["status"] == "healthy" and body["model_version"] == "1"


def users_scored(http, route: str) -> float:
    for line in http.get("/metrics")[2].splitlines():
        if line.startswith(f'revenue_users_scored_total{{model_version="1",route="{route}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_metrics_count_requests_by_route_status_and_version(http):
    before = {route: users_scored(http, route) for route in ("/predict", "/batch_predict")}
    http.post("/predict", EXAMPLE_1)
    http.post("/batch_predict", {"users": [EXAMPLE_1, EXAMPLE_2, EXAMPLE_1]})
    http.post("/batch_predict", {"users": [EXAMPLE_1, {"country": "es"}]})  # 400: nobody scored
    status, headers, text = http.get("/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    assert 'revenue_requests_total{model_version="1",route="/predict",status="200"}' in text
    assert "revenue_request_latency_seconds_bucket" in text
    # Counted just after each answer is sent: wait for the last one.
    wait_until(lambda: users_scored(http, "/batch_predict") >= before["/batch_predict"] + 3, 5, 0.05)
    assert users_scored(http, "/predict") == before["/predict"] + 1
    assert users_scored(http, "/batch_predict") == before["/batch_predict"] + 3


def test_docs_and_openapi(http):
    status, _, document = http.get("/openapi.json")
    assert status == 200 and {"/predict", "/batch_predict", "/stats"} <= set(document["paths"])
    assert document["components"]["schemas"]["User"]["required"] == [
        "country", "source", "platform", "event_1", "event_2"]
    status, headers, page = http.get("/docs")
    assert status == 200 and "POST /predict" in page


def test_stats_rejects_a_bad_since(http):
    status, _, body = http.get("/stats?since=yesterday-ish")
    assert status == 400 and body["problems"][0]["field"] == "since"


def test_the_admin_route_is_refused_when_no_api_key_is_configured(http):
    """Without API_KEY every route is open; the one that starts scorers on demand is not."""
    status, _, answer = http.post("/admin/model/check")
    assert status == 403 and answer["problems"][0]["field"] == "X-API-Key"
