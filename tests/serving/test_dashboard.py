"""GET /dashboard and the reads it draws: /stats's new fields, /stats/timeseries, and the page itself in a
real headless Chromium against the real service with traffic (charts drawn, no script error, no request
leaving this machine, client-sent text shown as text, the API key asked for and never put in a URL).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import mlflow
import numpy as np
import psycopg2
import pytest
from aiohttp import web
from mlflow import MlflowClient

from pipelines.model_logging import log_revenue_model
from revenue_model.drift import build_profile
from revenue_model.validation import validate_columns
from serving import routes_dashboard
from serving.db.dashboard import PAYER_EDGES, REVENUE_EDGES_USD, fold_sources, histogram
from serving.scorer_process import free_port
from tests.conftest import new_database
from tests.serving.chromium import Browser
from tests.serving.conftest import Service, rows_for, wait_until

USER = {"country": "es", "country_region": "Madrid", "source": "Organic", "platform": "iOS",
        "device_family": "Apple iPhone", "os_version": "14.4", "event_1": 100, "event_2": 50, "event_3": 10.0}
# Sent by a client as a source name: must be shown as these characters, never run.
HOSTILE = '<img src=x onerror="window.__hostile=1">'
# Routes whose 404 is an answer the page shows: GET /drift of a model without a drift reference (the
# session's model has none) says "no_reference" with a 404.
ANSWERED_404 = {"/drift"}
# The contract's drift columns: every one is a row of the drift panel.
DRIFT_COLUMNS = ["country", "country_region", "source", "platform", "device_family", "os_version",
                 "event_1", "event_2", "event_3", "predicted_revenue", "payer_probability"]
# Series colours of the page (dashboard.js COLOURS): every chart must have pixels of its own.
BLUE, RED, PURPLE, TEAL, ORANGE = (37, 99, 235), (198, 40, 40), (124, 58, 237), (13, 148, 136), (179, 89, 0)


def users_of(holdout, n, start=0):
    frame = holdout.drop(columns=["revenue", "install_date", "true_payer_probability",
                                  "true_expected_revenue"]).iloc[start:start + n]
    return json.loads(frame.to_json(orient="records"))


# -- pure parts ----------------------------------------------------------------------------------

def test_width_bucket_numbers_become_counts_per_bin():
    # PostgreSQL numbers bins from 1; len(edges) is the open last bin; 0 (below the first edge) is dropped.
    assert histogram((0.0, 1.0, 5.0), [(1, 4), (3, 2), (0, 9), (2, 1)]) == {"edges": [0.0, 1.0, 5.0], "counts": [4, 1, 2]}
    assert histogram((0.0, 1.0), []) == {"edges": [0.0, 1.0], "counts": [0, 0]}


def test_sources_are_folded_as_the_model_folds_them_and_named_by_their_commonest_spelling():
    rows = [("Organic", 50, 100.0), (" organic ", 10, 30.0), ("ORGANIC", 5, 0.0), ("Facebook Ads", 40, 80.0),
            (None, 3, 3.0), ("", 2, 1.0), ("Moloco", 1, 9.0)]
    assert fold_sources(rows, top=3) == [
        {"source": "Organic", "predictions": 65, "avg_predicted_revenue": 130.0 / 65},
        {"source": "Facebook Ads", "predictions": 40, "avg_predicted_revenue": 2.0},
        {"source": "(missing)", "predictions": 5, "avg_predicted_revenue": 4.0 / 5},
    ]


@pytest.mark.parametrize("span, seconds", [(timedelta(hours=1), 15), (timedelta(hours=24), 300),
                                           (timedelta(days=7), 3600), (timedelta(days=30), 10800),
                                           (timedelta(days=3650), 604800)])
def test_the_automatic_interval_gives_at_most_300_points(span, seconds):
    step = routes_dashboard.parse_step(None, span)
    assert step == timedelta(seconds=seconds)
    assert math.ceil(span / step) <= 300 or seconds == 604800


def test_intervals_start_on_multiples_of_the_step_since_the_epoch():
    since = datetime(2026, 11, 27, 10, 7, 31, tzinfo=timezone.utc)
    assert routes_dashboard.window(since, since + timedelta(hours=1), timedelta(minutes=5)) == \
        datetime(2026, 11, 27, 10, 5, tzinfo=timezone.utc)


# -- the routes, on the real service ------------------------------------------------------------

def stats_window_start(http) -> str:
    """A `since` at which the rows that follow are the only ones (no other test sends meanwhile)."""
    return (datetime.now(timezone.utc) - timedelta(milliseconds=1)).isoformat()


def test_stats_gains_distributions_top_sources_and_errors_by_route(http, service, holdout):
    since = stats_window_start(http)
    users = users_of(holdout, 300, 500)
    for i, user in enumerate(users):
        user["source"] = ["Organic", "Organic", " organic", "ORGANIC", "Facebook Ads", "Moloco"][i % 6]
    batch = str(uuid.uuid4())
    status, _, answer = http.post("/batch_predict", {"users": users}, headers={"X-Request-Id": batch})
    assert status == 200
    bad = [http.post("/predict", {**USER, "event_1": -1})[0] for _ in range(3)]
    assert bad == [400, 400, 400]
    assert http.get("/no-such-route")[0] == 404
    rows_for(service.database_url, [batch], expected=300)
    wait_until(lambda: http.get(f"/stats?since={since}")[2]["total_rows"] >= 305, 15)

    stats = http.get(f"/stats?since={since}")[2]
    revenue = np.array([p["predicted_revenue"] for p in answer["predictions"]])
    payer = np.array([p["payer_probability"] for p in answer["predictions"]])
    # Independently: np.histogram with an open last bin.
    expected_revenue = np.histogram(revenue, bins=[*REVENUE_EDGES_USD, np.inf])[0].tolist()
    expected_payer = np.histogram(payer, bins=[*PAYER_EDGES, np.inf])[0].tolist()
    assert stats["distributions"] == {
        "predicted_revenue": {"edges": list(REVENUE_EDGES_USD), "counts": expected_revenue},
        "payer_probability": {"edges": list(PAYER_EDGES), "counts": expected_payer}}
    assert sum(expected_revenue) == 300

    organic = [p for p, u in zip(answer["predictions"], users) if u["source"].strip().lower() == "organic"]
    assert stats["top_sources"][0]["source"] == "Organic"  # the commonest of its three spellings
    assert stats["top_sources"][0]["predictions"] == len(organic) == 200
    assert stats["top_sources"][0]["avg_predicted_revenue"] == pytest.approx(
        np.mean([p["predicted_revenue"] for p in organic]))
    assert [s["source"] for s in stats["top_sources"]] == ["Organic", "Facebook Ads", "Moloco"]
    assert stats["errors_by_route"] == {"/predict": {"400": 3}, "(unknown)": {"404": 1}}


def test_timeseries_counts_requests_users_and_failures_per_interval(http, service, holdout):
    time.sleep(1.1)  # 1-second intervals from here hold no earlier test's rows
    since = stats_window_start(http)
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for request_id, n in zip(ids, (10, 20, 1)):
        assert http.post("/batch_predict", {"users": users_of(holdout, n)}, headers={"X-Request-Id": request_id})[0] == 200
    assert http.post("/predict", {**USER, "event_2": -5})[0] == 400
    assert http.get("/nothing-here")[0] == 404  # not a prediction route: not in the series
    rows_for(service.database_url, ids, expected=31)

    status, _, series = http.get(f"/stats/timeseries?since={since}&step=1s")
    assert status == 200
    assert series["step_s"] == 1
    first = datetime.fromisoformat(series["since"])
    assert first.microsecond == 0 and timedelta(0) <= datetime.fromisoformat(since) - first < timedelta(seconds=1)
    buckets = series["buckets"]
    assert [datetime.fromisoformat(b["t"]) for b in buckets] == [first + timedelta(seconds=i) for i in range(len(buckets))]
    assert datetime.fromisoformat(buckets[-1]["t"]) <= datetime.fromisoformat(series["until"])
    assert sum(b["requests"] for b in buckets) == 4
    assert sum(b["users"] for b in buckets) == 31
    assert sum(b["errors"] for b in buckets) == 1
    busy = [b for b in buckets if b["requests"]]
    assert all(0 < b["p50_ms"] <= b["p95_ms"] <= b["p99_ms"] for b in busy)
    assert all(b["p50_ms"] is None for b in buckets if not b["requests"])

    hourly = http.get(f"/stats/timeseries?since={since}&step=1h")[2]
    assert datetime.fromisoformat(hourly["since"]).minute == 0 and hourly["step_s"] == 3600
    assert sum(b["users"] for b in hourly["buckets"]) >= 31

    day = http.get("/stats/timeseries")[2]  # the default: the last 24 h in 5-minute intervals
    assert day["step_s"] == 300 and 288 <= len(day["buckets"]) <= 289
    assert all(b["requests"] == 0 and b["p50_ms"] is None for b in day["buckets"][:-3])


@pytest.mark.parametrize("query, field", [("step=0s", "step"), ("step=often", "step"), ("since=yesterday", "since"),
                                          ("since=1h&until=2h", "until"), ("until=soon", "until"),
                                          ("since=30d&step=10s", "step"), ("step=99999999999w", "step"),
                                          ("since=99999999d", "since")])
def test_timeseries_refuses_bad_parameters_by_name(http, query, field):
    status, _, body = http.get(f"/stats/timeseries?{query}")
    assert status == 400, body
    assert body["error"] == "invalid_input"
    assert [p["field"] for p in body["problems"]] == [field]


def test_the_page_and_its_files_are_served_by_the_service_with_etags(http):
    status, headers, page = http.get("/dashboard")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    sources = [line.split('"')[1] for line in page.split() if line.startswith(("src=", "href="))]
    assert set(sources) == {"data:,", "/dashboard/static/vendor/uPlot.min.css", "/dashboard/static/dashboard.css",
                            "/dashboard/static/vendor/uPlot.iife.min.js", "/dashboard/static/dashboard.js"}
    for path in sources[1:]:
        status, headers, body = http.get(path)
        assert status == 200, path
        assert headers["Cache-Control"] == "no-cache" and headers["X-Content-Type-Options"] == "nosniff"
        assert http.get(path, headers={"If-None-Match": headers["ETag"]})[0] == 304
    assert http.get("/dashboard/static/../config.py")[0] == 404
    assert http.get("/dashboard/static/vendor/README.md")[0] == 404


# -- the page in Chromium --------------------------------------------------------------------------

# Pixels of each colour on each panel's chart canvas (within a small distance: lines are anti-aliased).
PIXELS_JS = """((colours) => {
  const out = {};
  for (const panel of document.querySelectorAll("article.panel")) {
    const box = panel.querySelector(".chart"), canvas = box && !box.hidden && box.querySelector("canvas");
    if (!canvas) continue;
    const {data} = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
    out[panel.id] = colours.map(([r, g, b]) => {
      let n = 0;
      for (let i = 0; i < data.length; i += 4)
        if (data[i + 3] > 200 && Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b) < 40) n++;
      return n;
    });
  }
  return out;
})(COLOURS)"""

TEXTS_JS = """Object.fromEntries([...document.querySelectorAll(".card, article.panel, #health")].map(
  (e) => [e.id, {text: e.innerText, cls: e.className, fills: [...e.querySelectorAll(".fill")].map((f) => f.className)}]))"""


def drawn(pixels: dict, panel: str, *colours) -> bool:
    counts = dict(zip(ALL_COLOURS, pixels.get(panel, [0] * len(ALL_COLOURS))))
    return all(counts[c] >= 30 for c in colours)


ALL_COLOURS = [BLUE, RED, PURPLE, TEAL, ORANGE]


async def open_dashboard(base: str, screenshot=None, before=None) -> tuple[Browser, dict, dict]:
    async with Browser(width=1400, height=1000) as browser:
        await browser.open(base + "/dashboard")
        if before:
            await before(browser)
        await browser.wait_for("document.querySelector('#updated').textContent.startsWith('updated')", 90)
        await asyncio.sleep(0.5)
        pixels = await browser.evaluate(PIXELS_JS.replace("COLOURS", json.dumps(ALL_COLOURS)))
        texts = await browser.evaluate(TEXTS_JS)
        if screenshot:
            await browser.screenshot(screenshot)
    return browser, pixels, texts


def script_errors(browser: Browser, allowed_status: str = "") -> list[dict]:
    """Console errors and exceptions, but an ANSWERED_404 (the page says "no data yet" for it) and
    the answers with ``allowed_status`` (e.g. the 401s that tell the page it needs a key)."""
    def expected(entry):
        url = urlsplit(entry.get("url", ""))
        return entry["level"] == "error" and (
            (url.path in ANSWERED_404 and "status of 404" in entry["text"])
            or (allowed_status and f"status of {allowed_status}" in entry["text"]))
    return [e for e in browser.console if e["level"] in ("error", "exception", "warning") and not expected(e)]


@pytest.mark.slow
def test_the_dashboard_draws_every_chart_from_the_service_without_script_errors(http, service, holdout, tmp_path):
    users = users_of(holdout, 400, 1000)
    for user in users[:40]:
        user["source"] = HOSTILE
    ids = [str(uuid.uuid4()) for _ in range(4)]
    for request_id, chunk in zip(ids, (users[:100], users[100:200], users[200:300], users[300:])):
        assert http.post("/batch_predict", {"users": chunk}, headers={"X-Request-Id": request_id})[0] == 200
    for _ in range(5):
        assert http.post("/predict", USER)[0] == 200
    assert http.post("/predict", {**USER, "country": None})[0] == 400
    rows_for(service.database_url, ids, expected=400)

    def scored_in_a_day() -> int:  # independently of the service: the log itself
        with psycopg2.connect(service.database_url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM predictions WHERE role = 'champion' AND status_code = 200 "
                           "AND timestamp >= now() - interval '24 hours'")
            (n,), = cursor.fetchall()
        connection.close()
        return n

    shot = tmp_path / "dashboard.png"
    browser, pixels, texts = asyncio.run(open_dashboard(http.base, shot))
    print(f"screenshot: {shot}")

    assert script_errors(browser) == [], browser.console
    outside = [u for u in browser.requests if not u.startswith(http.base + "/") and not u.startswith("data:")]
    assert outside == [], outside
    assert {urlsplit(u).path for u in browser.requests} >= {
        "/dashboard", "/dashboard/static/dashboard.js", "/dashboard/static/vendor/uPlot.iife.min.js",
        "/stats", "/stats/timeseries", "/model/info", "/health"}

    assert drawn(pixels, "panel-traffic", BLUE), pixels
    # p95 and p99 may coincide on a quiet day (one drawn over the other): one of them at least
    assert drawn(pixels, "panel-latency", BLUE) and (drawn(pixels, "panel-latency", ORANGE)
                                                     or drawn(pixels, "panel-latency", RED)), pixels
    assert drawn(pixels, "panel-revenue-dist", BLUE), pixels
    assert drawn(pixels, "panel-payer-dist", PURPLE), pixels

    users_card = texts["card-users"]["text"].splitlines()
    assert users_card[1] == f"{scored_in_a_day():,}", users_card
    assert texts["card-errors"]["cls"] in ("card ok", "card warn", "card bad")
    assert texts["health"] == {"text": "HEALTHY", "cls": "badge ok", "fills": []}
    sources = texts["panel-sources"]["text"]
    assert HOSTILE in sources  # shown as the characters the client sent ...
    # This model carries no drift reference: GET /drift answers 404 no_reference, and the page says why.
    assert "No data yet: model version '1' has no drift reference" in texts["panel-drift"]["text"], texts["panel-drift"]
    assert texts["panel-drift"]["fills"] == [] and texts["card-drift"]["cls"] == "card nodata"


@pytest.mark.slow
def test_client_text_is_never_run_and_the_page_refreshes_itself(http, service, holdout):
    async def check():
        async with Browser() as browser:
            await browser.open(http.base + "/dashboard")
            await browser.wait_for("document.querySelector('#updated').textContent.startsWith('updated')", 90)
            first = await browser.evaluate("document.querySelector('#card-users .big').textContent")
            request_id = str(uuid.uuid4())
            assert http.post("/batch_predict", {"users": [{**USER, "source": HOSTILE}] * 7},
                             headers={"X-Request-Id": request_id})[0] == 200
            rows_for(service.database_url, [request_id], expected=7)
            later = int(first.replace(",", "")) + 7
            # No reload: the page reads the routes again by itself (every 10 s).
            await browser.wait_for(f"document.querySelector('#card-users .big').textContent === '{later:,}'", 40)
            assert await browser.evaluate("window.__hostile === undefined && !document.querySelector('img[src=x]')")
            return browser

    browser = asyncio.run(check())
    assert script_errors(browser) == [], browser.console


@pytest.mark.slow
def test_with_an_api_key_the_page_asks_for_it_and_sends_it_only_as_a_header(champion_store, postgres, tmp_path):
    key = "k3y-" + uuid.uuid4().hex
    service = Service(tmp_path, champion_store, postgres, API_KEY=key).start()
    try:
        base = service.http.base
        status, _, page = service.http.get("/dashboard")
        assert status == 200 and key not in page
        assert service.http.get("/stats/timeseries")[0] == 401

        async def type_the_key(browser: Browser):
            await browser.wait_for("!document.querySelector('#key-form').hidden", 60)
            assert await browser.evaluate("document.querySelector('#board').hidden")
            await browser.evaluate(f"document.querySelector('#key-input').value = {json.dumps(key)};"
                                   "document.querySelector('#key-form').requestSubmit(); true")

        browser, pixels, texts = asyncio.run(open_dashboard(base, before=type_the_key))
        assert all(key not in url for url in browser.requests)
        assert texts["card-users"]["text"].splitlines()[1] != "–"  # the data came, with the key
        assert drawn(pixels, "panel-revenue-dist", BLUE), pixels
        assert script_errors(browser, "401") == [], browser.console
    finally:
        service.stop()


# -- drift and realised performance, on a service whose model has a drift reference -----------------

@pytest.fixture(scope="module")
def loop_service(users, predictor, holdout, postgres, tmp_path_factory):
    """A service of its own (its database empty, so every number below is this test's): the session's
    predictor registered with its drift reference, as training logs it."""
    root = tmp_path_factory.mktemp("dashboard-loop")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("dashboard-loop", artifact_location=str(root / "artifacts"))
    train, dev = users.iloc[:14_000], users.iloc[14_000:17_000]
    profile = build_profile(validate_columns(train), predictor.predict_columns(validate_columns(dev)))
    mlflow.set_tracking_uri(uri)
    try:
        with mlflow.start_run(experiment_id=experiment):
            log_revenue_model(predictor, holdout.drop(columns=["revenue"]).iloc[:3],
                              registered_model_name="revenue_model", reference_profile=profile)
    finally:
        mlflow.set_tracking_uri(None)
    client.set_registered_model_alias("revenue_model", "champion", "1")
    running = Service(root, uri, new_database(postgres, "dashboard"), DRIFT_REFRESH_S=0).start()
    yield running
    running.stop()


# Per column of the deciles canvas: x positions holding a bar of each colour, and each bar's top.
BARS_JS = """((colours) => {
  const canvas = document.querySelector("#panel-deciles .chart canvas");
  const {width, height} = canvas, {data} = canvas.getContext("2d").getImageData(0, 0, width, height);
  return colours.map(([r, g, b]) => {
    const bars = [];
    let run = null;
    for (let x = 0; x < width; x++) {
      let top = null;
      for (let y = 0; y < height && top === null; y++) {
        const i = 4 * (y * width + x);
        if (data[i + 3] > 200 && Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b) < 40) top = y;
      }
      if (top === null) { run = null; continue; }
      if (!run) bars.push(run = {x, top});
      run.top = Math.min(run.top, top);
    }
    return bars;
  });
})(COLOURS)"""


def drift_status(psi):
    """The contract's statuses, from a PSI: ok below 0.1, warn from 0.1, drift from 0.25."""
    return "insufficient_data" if psi is None else "ok" if psi < 0.1 else "warn" if psi < 0.25 else "drift"


@pytest.mark.slow
def test_the_drift_and_performance_panels_say_no_data_yet_then_draw_traffic_and_labels(loop_service, holdout,
                                                                                       tmp_path):
    http, base = loop_service.http, loop_service.http.base

    # Before any traffic: nothing to measure, no labels; said in words, no script error.
    browser, pixels, texts = asyncio.run(open_dashboard(base))
    assert script_errors(browser) == [], browser.console
    assert texts["panel-drift"]["text"].endswith(
        "No data yet: 0 rows of v1 in this window; drift is measured from 500 rows on."), texts["panel-drift"]
    assert texts["card-drift"]["cls"] == "card nodata"
    for panel in ("panel-performance", "panel-deciles"):
        assert "No data yet: no predictions with labels." in texts[panel]["text"], texts[panel]
    assert "No data yet: no day with 200 labelled users of one version." in texts["panel-cohorts"]["text"]
    assert "panel-deciles" not in pixels and "panel-cohorts" not in pixels
    assert texts["panel-models"]["text"].endswith("No shadow model configured."), texts["panel-models"]

    # 1,200 users scored, the real revenue of 1,000 of them posted.
    users = users_of(holdout, 1_200, 1_500)
    answers, ids = {}, [str(uuid.uuid4()) for _ in range(3)]
    for request_id, start in zip(ids, range(0, len(users), 400)):
        status, _, body = http.post("/batch_predict", {"users": users[start:start + 400]},
                                    headers={"X-Request-Id": request_id})
        assert status == 200, body
        answers.update({p["user_id"]: p for p in body["predictions"]})
    revenue = dict(zip(holdout["user_id"].iloc[1_500:2_700], holdout["revenue"].iloc[1_500:2_700].astype(float)))
    labelled = [u["user_id"] for u in users[:1_000]]
    status, _, body = http.post("/labels", {"labels": [{"user_id": u, "revenue": revenue[u]} for u in labelled]})
    assert (status, body["accepted"]) == (200, 1_000), body
    assert len(rows_for(loop_service.database_url, ids, expected=1_200, timeout_s=30)) == 1_200
    drift = http.get("/drift?since=24h")[2]
    assert drift["n"] == 1_200 and set(drift["columns"]) == set(DRIFT_COLUMNS), drift

    shot = tmp_path / "dashboard-loop.png"
    browser, pixels, texts = asyncio.run(open_dashboard(base, shot))
    print(f"screenshot: {shot}")
    assert script_errors(browser) == [], browser.console

    # Drift: one bar per contract column, worst first, each coloured by the contract's status of its PSI.
    worst_first = sorted(DRIFT_COLUMNS, key=lambda c: -drift["columns"][c]["psi"])
    expected_class = {"ok": "fill ok", "warn": "fill warn", "drift": "fill bad"}
    assert texts["panel-drift"]["fills"] == [expected_class[drift_status(drift["columns"][c]["psi"])]
                                             for c in worst_first], (texts["panel-drift"], drift)
    shown = texts["panel-drift"]["text"].splitlines()
    assert [shown[shown.index(c) + 1] for c in worst_first] == [
        f"{drift['columns'][c]['psi']:.3f} {drift_status(drift['columns'][c]['psi'])}" for c in worst_first]
    assert texts["card-drift"]["text"].splitlines()[1] == drift_status(max(drift["columns"][c]["psi"] for c in DRIFT_COLUMNS))

    # Performance of v1, against numbers computed here from what was sent and answered.
    predicted = np.array([answers[u]["predicted_revenue"] for u in labelled])
    actual = np.array([revenue[u] for u in labelled])
    assert (predicted > 0).all()  # so every decile has a predicted bar
    row = next(line for line in texts["panel-performance"]["text"].splitlines() if line.startswith("v1"))
    cells = row.split("\t")
    assert cells[:3] == ["v1 (serving)", "1,200", "1,000"], row
    assert cells[4] == f"{predicted.sum() / actual.sum():.2f}", (row, predicted.sum() / actual.sum())
    gini = http.get("/performance")[2]["groups"][0]["metrics"]
    assert cells[3] == f"{gini['norm_gini']:.3f}" == texts["card-quality"]["text"].splitlines()[1], (row, texts["card-quality"])

    # Deciles (1 = the highest predictions): ten predicted bars (blue) shrinking left to right, as
    # deciles of predicted revenue must; a realised bar (teal) for each decile whose users spent anything.
    async def decile_bars():
        async with Browser(width=1400, height=1000) as page:
            await page.open(base + "/dashboard")
            await page.wait_for("document.querySelector('#updated').textContent.startsWith('updated')", 90)
            return await page.evaluate(BARS_JS.replace("COLOURS", json.dumps([BLUE, TEAL])))

    blue, teal = asyncio.run(decile_bars())
    assert len(blue) == 10, blue
    assert all(a["top"] <= b["top"] + 1 for a, b in zip(blue, blue[1:])), blue  # y grows downwards
    deciles = http.get("/performance")[2]["groups"][0]["metrics"]["deciles"]
    spent = [d["decile"] for d in deciles if d["mean_actual"] > 0]
    assert len(teal) == len(spent) > 0, (teal, deciles)
    tallest = min(range(len(teal)), key=lambda i: teal[i]["top"])
    assert spent[tallest] == max(deciles, key=lambda d: d["mean_actual"])["decile"], (teal, deciles)
    assert drawn(pixels, "panel-cohorts", BLUE), pixels  # today's cohort, one point of v1


# -- every panel from the contract's own example answers (swaps and the shadow included) ------------

def contract_answers() -> dict:
    deciles = [{"decile": d, "n": 510, "mean_predicted": 0.2 * d * d, "mean_actual": 0.19 * d * d} for d in range(1, 11)]
    metrics = {"norm_gini": 0.71, "total_ratio": 0.98, "mae": 4.9, "rmse": 22.1, "payer_auc": 0.83, "brier": 0.10,
               "p90_coverage": 0.90, "p10_below": 0.0, "decile_mape": 0.2, "deciles": deciles}
    day = lambda d, v, r: {"model_version": v, "by": "day", "value": f"2026-11-{d:02d}", "n_predicted": 900,  # noqa: E731
                           "n_labelled": 850, "metrics": {**metrics, "total_ratio": r}, "reason": None}
    return {
        "/model/info": {"model_name": "revenue_model", "model_version": "3", "alias": "champion",
                        "test_metrics": {"normalized_gini": 0.80},
                        "swaps": [{"at": "2026-11-20T10:00:00+00:00", "from_version": "2", "to_version": "3"}],
                        "shadow": {"model_version": "4", "share": 0.5}},
        "/health": {"status": "healthy", "model_name": "revenue_model", "model_version": "3", "alias": "champion"},
        "/drift": {"model_version": "3", "n": 12000, "reference_n": 42000, "status": "drift",
                   "columns": {"event_2": {"psi": 0.41, "status": "drift", "missing_share": 0.0,
                                           "reference_missing_share": 0.0},
                               "country": {"psi": 0.30, "status": "drift", "unseen_share": 0.28},
                               "platform": {"psi": 0.12, "status": "warn"},
                               "event_1": {"psi": 0.02, "status": "ok"},
                               "event_3": {"psi": None, "status": "insufficient_data"}}},
        "/performance": {"groups": [
            {"model_version": "2", "by": None, "value": None, "n_predicted": 5400, "n_labelled": 120,
             "metrics": None, "reason": "120 labelled users, fewer than min_labelled (200)"},
            {"model_version": "3", "by": None, "value": None, "n_predicted": 5400, "n_labelled": 5100,
             "metrics": metrics, "reason": None},
            {"model_version": "4", "by": None, "value": None, "n_predicted": 2700, "n_labelled": 0,
             "metrics": None, "reason": "0 labelled users, fewer than min_labelled=200"}]},
        "/performance?by=day": {"groups": [day(20, "2", 1.3), day(21, "2", 1.2), day(21, "3", 0.95), day(22, "3", 1.02)]},
        "/shadow": {"champion_version": "3", "shadow_version": "4", "n_users": 4800, "mean_ratio": 1.04,
                    "spearman": 0.93, "top_decile_overlap": 0.81},
    }


@pytest.mark.slow
def test_the_later_routes_panels_draw_the_contract_shapes_and_a_503_says_no_data_yet(tmp_path):
    """A stand-in answers with the contract's examples, a shadow and a swap included (the service
    has no shadow yet), and /stats with a 503, around the real page and its files."""
    answers = contract_answers()

    async def answer(request: web.Request) -> web.Response:
        key = request.path + ("?by=day" if request.query.get("by") == "day" else "")
        return web.json_response(answers[key])

    async def unavailable(request: web.Request) -> web.Response:
        return web.json_response({"error": "database_unavailable", "message": "PostgreSQL is down"}, status=503)

    async def run():
        app = web.Application()
        routes_dashboard.add_page(app)
        for path in ("/model/info", "/health", "/drift", "/performance", "/shadow"):
            app.router.add_get(path, answer)
        app.router.add_get("/stats", unavailable)
        app.router.add_get("/stats/timeseries", unavailable)
        runner = web.AppRunner(app)
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            return await open_dashboard(f"http://127.0.0.1:{port}", tmp_path / "contract.png")
        finally:
            await runner.cleanup()

    browser, pixels, texts = asyncio.run(run())
    assert script_errors(browser, "503") == [], browser.console

    drift = [line for line in texts["panel-drift"]["text"].splitlines() if line]  # title, what it shows, bars
    assert drift[2:] == ["event_2", "0.410 drift", "country", "0.300 drift", "28.0% in categories training never had",
                         "platform", "0.120 warn", "event_1", "0.020 ok", "event_3", "too few rows"], drift
    assert texts["panel-drift"]["fills"] == ["fill bad", "fill bad", "fill warn", "fill ok", "fill nodata"]
    assert texts["card-drift"]["cls"] == "card bad" and texts["card-drift"]["text"].splitlines()[1] == "drift"
    assert texts["card-quality"]["text"].splitlines()[1] == "0.710"
    assert texts["card-quality"]["cls"] == "card warn"  # 0.80 at training, 0.71 realised: 0.05 to 0.10 lower
    performance = texts["panel-performance"]["text"]
    assert "v3 (serving)\t5,400\t5,100\t0.710\t0.98\t0.830\t90%" in performance, performance
    assert "120 labelled users, fewer than min_labelled (200)" in performance
    assert "v4 (shadow)\t2,700\t0\t0 labelled users, fewer than min_labelled=200" in performance, performance
    assert drawn(pixels, "panel-deciles", BLUE, TEAL), pixels
    assert drawn(pixels, "panel-cohorts", BLUE, RED), pixels
    models = texts["panel-models"]["text"]
    assert "v2\tv3" in models and "v3\tv4 (50% of users)\t4,800\t1.040\t0.930\t81%" in models, models
    for panel in ("panel-traffic", "panel-latency", "panel-revenue-dist", "panel-countries", "panel-errors"):
        assert texts[panel]["text"].endswith(
            "No data yet: /stats/timeseries is not available right now (PostgreSQL is down)."
            if panel in ("panel-traffic", "panel-latency") else
            "No data yet: /stats is not available right now (PostgreSQL is down)."), texts[panel]
