"""The loop after a prediction: POST /labels, GET /performance and the realised-performance gauges.

``add_loop_routes`` (called by build_app) wires them. Labels are written at once, in the request's
transaction: they are not spilled to disk like log rows, so when PostgreSQL is down the answer is
503 ``database_unavailable`` and the client retries (a label is an upsert: retrying is safe).
GET /performance first reads what the log and the labels gained since the last refresh (one batch),
then answers from the day cells and rows (serving/db/performance.py). A background task keeps the
rollup current every PERFORMANCE_REFRESH_S seconds and sets the gauges; it never runs per scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from datetime import date, datetime, timezone

import numpy as np
import psycopg2
from aiohttp import web
from prometheus_client import Counter, Gauge

from revenue_model.labels import InvalidLabels, validate_labels
from serving.app import OPENAPI, READS, REGISTRY, SETTINGS, STATS_DB, json_response, parse_since
from serving.request_body import json_body, keep_body
from serving.core import RequestRejected
from serving.db import outcomes
from serving.db.connection import connect
from serving.db.labels import upsert_labels
from serving.db.performance import BY, performance_rows
from serving.performance import MIN_LABELLED, performance_groups
from serving.routes_models import compared_versions, same_users_performance

log = logging.getLogger("serving.loop")

LOOP_METRICS = web.AppKey("loop_metrics", dict)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# The background rollup's statements (a day's cells at 10 million log rows) may take a while.
BACKGROUND_STATEMENT_TIMEOUT_MS = 300_000
# What a call reads into the rollup before answering (about a second on a busy machine); a larger
# backlog (a log imported, the first start on a big log) is the background task's.
READ_BATCH_ROWS = 20_000


def add_loop_routes(app: web.Application) -> None:
    registry = app[REGISTRY]
    app[LOOP_METRICS] = {
        "labels": Counter("revenue_labels_stored", "Labels stored (new or replacing one)", registry=registry),
        "gini": Gauge("revenue_realised_normalized_gini", "Normalized Gini of labelled predictions, all time",
                      ["model_version"], registry=registry),
        "total_ratio": Gauge("revenue_realised_total_ratio", "Predicted over realised revenue of labelled "
                             "predictions, all time", ["model_version"], registry=registry),
    }
    app.router.add_post("/labels", post_labels)
    app.router.add_get("/performance", get_performance)
    app[OPENAPI]["paths"].update(_OPENAPI_PATHS)
    if app[SETTINGS].performance_refresh_s > 0:
        app.cleanup_ctx.append(_background_refresh)


# -- POST /labels ----------------------------------------------------------------------------------

async def post_labels(request: web.Request) -> web.Response:
    app, record = request.app, request["record"]
    payload = await json_body(request)
    labels = payload.get("labels") if isinstance(payload, dict) else None
    if not isinstance(labels, list) or not labels:
        keep_body(request)
        reason = "is required" if labels is None else ("must be a list" if not isinstance(labels, list)
                                                       else "must not be empty")
        raise RequestRejected(400, "invalid_input", f'"labels" {reason}: send {{"labels": [{{"user_id": ..., '
                              '"revenue": ...}, ...]}', [{"row": None, "field": "labels", "reason": reason}])
    limit = app[SETTINGS].max_batch_users
    if len(labels) > limit:
        record.raw_body = f"{len(labels)} labels"
        raise RequestRejected(413, "too_many_labels", f"{len(labels)} labels is over the maximum of {limit} "
                              "per request", [{"row": None, "field": "labels", "reason": f"more than {limit} labels"}])
    try:
        columns = validate_labels(labels)
    except InvalidLabels as error:
        keep_body(request)
        raise RequestRejected(400, "invalid_input", str(error), [p.as_dict() for p in error.problems]) from None
    try:
        inserted, replaced = await asyncio.to_thread(store_labels, app[STATS_DB], columns,
                                                     f"api:{record.request_id}")
    except (psycopg2.OperationalError, psycopg2.InterfaceError) as error:
        record.error = f"labels not stored: {str(error).strip()[:500]}"
        return _database_unavailable(record.request_id, "the labels were not stored (none of them); retry")
    app[LOOP_METRICS]["labels"].inc(inserted + replaced)
    return json_response({"accepted": inserted + replaced, "replaced": replaced, "request_id": record.request_id})


def store_labels(url: str, columns: dict, source: str) -> tuple[int, int]:
    """One transaction: every label of the request or none."""
    connection = connect(url)
    try:
        observed = [None if np.isnat(t) else f"{t}+00:00" for t in columns["observed_at"]]
        counts = upsert_labels(connection, columns["user_id"].tolist(), columns["revenue"].tolist(), observed, source)
        connection.commit()
        return counts
    finally:
        connection.close()


def _database_unavailable(request_id: str, message: str) -> web.Response:
    return json_response({"error": "database_unavailable", "message": f"PostgreSQL is unreachable: {message}",
                          "request_id": request_id}, 503, {"Retry-After": "5"})


# -- GET /performance ------------------------------------------------------------------------------

async def get_performance(request: web.Request) -> web.Response:
    query, now = request.query, datetime.now(timezone.utc)
    since = parse_since(query.get("since"), now)
    until = parse_since(query["until"], now, "until") if query.get("until") else None
    if until is not None and until <= since:
        raise _bad("until", "must be after since", f"until ({until.isoformat()}) is not after since "
                   f"({since.isoformat()})")
    by = query.get("by") or None
    if by is not None and by not in BY:
        raise _bad("by", f"must be one of {', '.join(BY)}", f"by: {by[:100]!r} is not one of {', '.join(BY)}")
    min_labelled = _count(query.get("min_labelled"), "min_labelled", MIN_LABELLED)
    pair = compared_versions(request)  # champion and shadow, judged on the same users (routes_models)
    body = await request.app[READS].run(request["record"], functools.partial(
        read_performance, since=since, until=until, by=by, min_labelled=min_labelled, today=now.date()))
    try:
        body["same_users"] = await asyncio.to_thread(
            same_users_performance, request.app[STATS_DB], pair, since=since, until=until, by=by,
            min_labelled=min_labelled) if pair else None
    except psycopg2.OperationalError as error:
        request["record"].error = str(error).strip()[:500]
        return _database_unavailable(request["record"].request_id, "realised performance cannot be read")
    return json_response(body)


def performance(url: str, **kwargs) -> dict:
    """GET /performance's body read on a connection of its own (benchmarks/performance_at_scale.py)."""
    connection = connect(url)
    try:
        return read_performance(connection, **kwargs)
    finally:
        connection.close()


def read_performance(connection, *, since: datetime, until: datetime | None, by: str | None, min_labelled: int,
                     today: date, refresh: bool = True) -> dict:
    """GET /performance's body: refresh the rollup by up to READ_BATCH_ROWS rows and labels
    (``refresh``), then read it."""
    refreshed = outcomes.refresh(connection, batch_rows=READ_BATCH_ROWS) if refresh else None
    rows = performance_rows(connection, since=since, until=until, by=by, today=today, min_labelled=min_labelled)
    return {"groups": performance_groups(rows, by, min_labelled), "by": by, "since": since.isoformat(),
            "until": until.isoformat() if until else None, "min_labelled": min_labelled,
            # Log rows and labels not read into the rollup yet (null: a refresh was busy).
            "pending_log_rows": refreshed.pending_log_rows if refreshed else None,
            "pending_labels": refreshed.pending_labels if refreshed else None}


def _bad(field: str, reason: str, message: str) -> RequestRejected:
    return RequestRejected(400, "invalid_input", message, [{"row": None, "field": field, "reason": reason}])


def _count(text: str | None, field: str, default: int) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise _bad(field, "must be a whole number >= 1", f"{field}: {text[:100]!r} is not a whole number") from None
    if value < 1:
        raise _bad(field, "must be a whole number >= 1", f"{field} must be at least 1, not {value}")
    return value


# -- the background rollup and the gauges ------------------------------------------------------------

async def _background_refresh(app: web.Application):
    stop = threading.Event()
    task = asyncio.create_task(_refresh_loop(app, stop))
    yield
    stop.set()  # a batch in progress finishes (seconds); no new one starts
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _refresh_loop(app: web.Application, stop: threading.Event) -> None:
    interval = app[SETTINGS].performance_refresh_s
    await asyncio.sleep(min(interval, 5.0))  # let start-up and the first requests go first
    while True:
        try:
            groups = await asyncio.to_thread(catch_up, app[STATS_DB], stop)
            if groups is not None:
                _set_gauges(app[LOOP_METRICS], groups)
        except psycopg2.Error as error:
            log.warning("realised-performance refresh failed (will retry): %s", str(error).strip())
        except Exception:
            log.exception("realised-performance refresh failed (will retry)")
        await asyncio.sleep(interval)


def catch_up(url: str, stop: threading.Event) -> list[dict] | None:
    """Read every pending log row and label, build the missing span cells, and return the groups
    per model version (all time), or None when stopped."""
    connection = connect(url, statement_timeout_ms=BACKGROUND_STATEMENT_TIMEOUT_MS)
    try:
        while not stop.is_set():
            done = outcomes.refresh(connection)
            if done is None or (done.pending_log_rows == 0 and done.pending_labels == 0):
                break
        today = datetime.now(timezone.utc).date()
        while not stop.is_set() and outcomes.build_spans(connection, today=today):
            pass
        if stop.is_set():
            return None
        rows = performance_rows(connection, since=EPOCH, until=None, by=None, today=today, min_labelled=MIN_LABELLED)
        return performance_groups(rows, None, MIN_LABELLED)
    finally:
        connection.close()


def _set_gauges(metrics: dict, groups: list[dict]) -> None:
    values = [(g["model_version"], g["metrics"]) for g in groups if g["metrics"]]
    for name, key in (("gini", "norm_gini"), ("total_ratio", "total_ratio")):
        metrics[name].clear()
        for version, m in values:
            metrics[name].labels(version).set(m[key])


_QUERY = lambda name, text: {"name": name, "in": "query", "required": False,  # noqa: E731
                             "schema": {"type": "string"}, "description": text}
_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}
_OPENAPI_PATHS = {
    "/labels": {"post": {
        "summary": "Realised D7 revenue per user: a later label for a user_id replaces the earlier one",
        "requestBody": {"content": {"application/json": {"schema": {
            "type": "object", "required": ["labels"],
            "properties": {"labels": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["user_id", "revenue"],
                "properties": {"user_id": {"type": "string", "minLength": 1, "maxLength": 200},
                               "revenue": {"type": "number", "minimum": 0},
                               "observed_at": {"type": "string", "format": "date-time"}}}}}}}}},
        "responses": {"200": {"description": "stored: {accepted, replaced, request_id}"},
                      "400": {"description": "every bad (row, field, reason); nothing stored", **_ERROR},
                      "413": {"description": "more than MAX_BATCH_USERS labels", **_ERROR},
                      "503": {"description": "PostgreSQL is down: nothing stored; retry", **_ERROR}}}},
    "/performance": {"get": {
        "summary": "Realised metrics of labelled predictions per model version (and by a column)",
        "parameters": [_QUERY("since", "ISO 8601 time, or a duration back from now: 30m, 6h, 7d"),
                       _QUERY("until", "ISO 8601 time, or a duration back from now; absent: now"),
                       _QUERY("by", "country, platform, source, route or day; absent: per version only"),
                       _QUERY("min_labelled", "groups with fewer labelled users get null metrics (200)"),
                       _QUERY("champion_version", "same_users: the champion's version (default: serving now)"),
                       _QUERY("shadow_version", "same_users: the shadow's version (default: serving now)")],
        "responses": {"200": {"description": "{groups: [...], same_users: {champion_version, shadow_version, "
                                             "n_users, n_labelled, groups} or null}"},
                      "400": {"description": "bad query", **_ERROR},
                      "503": {"description": "PostgreSQL is down", **_ERROR}}}},
}
