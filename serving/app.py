"""The web layer: routes, request ids, API key, metrics, and errors mapped to status codes.

``build_app`` only wires things together; what a request does is in core.py.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import uuid
from datetime import datetime, timedelta, timezone

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from revenue_model.contract import OUTPUT_COLUMNS
from serving.db.stats import prediction_stats
from serving.config import Settings
from serving.core import (
    BODY_COST, Overloaded, PredictionService, RequestRecord, RequestRejected, batch_users, invocation_users,
    single_user,
)
from serving import routes_dashboard, routes_docs
from serving.app_keys import CHARGED, OPENAPI, SERVICE, SETTINGS
from serving.request_body import body_bound, content_type_header, json_body, keep_body, read_body
from serving.rate_limit import TokenBucket
from serving.read_queries import Reads
from serving.model_follower import MODELS, Models
from serving.schemas import openapi_document
from serving.scorer import ScorerFailed, ScorerUnavailable

log = logging.getLogger("serving.app")

REQUEST_ID_HEADER = "X-Request-Id"
MODEL_VERSION_HEADER = "X-Model-Version"
PREDICTION_ROUTES = {"/predict", "/batch_predict", "/invocations"}
OPEN_ROUTES = {"/health"}  # with the dashboard's page and files (routes_dashboard.is_open), no API key
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_LAST_YEAR = 9998
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

STATS_DB = web.AppKey("stats_db", str)
METRICS = web.AppKey("metrics", dict)
REGISTRY = web.AppKey("registry", CollectorRegistry)
UNAUTHORISED_ROWS = web.AppKey("unauthorised_rows", TokenBucket)
READS = web.AppKey("reads", Reads)
DRAINING = web.AppKey("draining", asyncio.Event)  # set when the service stops (serving/shutdown.py)
# Rows of unauthenticated requests logged at once, before UNAUTHORISED_ROWS_PER_S limits them.
UNAUTHORISED_BURST = 10


def json_response(body, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status=status,
                        content_type="application/json", headers=headers)


def _metrics(registry: CollectorRegistry) -> dict:
    return {
        "requests": Counter("revenue_requests", "Requests by route, status and model version",
                            ["route", "status", "model_version"], registry=registry),
        "users": Counter("revenue_users_scored", "Users scored", ["route", "model_version"], registry=registry),
        "latency": Histogram("revenue_request_latency_seconds", "Request latency by route",
                             ["route", "model_version"], registry=registry,
                             buckets=(.001, .002, .003, .005, .0075, .01, .02, .05, .1, .25, .5, 1, 2.5, 5)),
        "in_flight": Gauge("revenue_requests_in_flight", "Requests being handled", registry=registry),
        "log_queue": Gauge("revenue_log_queue_rows", "Log rows waiting for PostgreSQL", registry=registry),
        "spilled": Gauge("revenue_log_rows_spilled", "Log rows written to the spill file since start",
                         registry=registry),
        "scorer_up": Gauge("revenue_scorer_up", "1 when the scoring server answers", registry=registry),
        "scorer_restarts": Gauge("revenue_scorer_restarts", "Scoring server restarts", registry=registry),
        "log_queue_bytes": Gauge("revenue_log_queue_bytes", "Estimated memory of the queued log rows",
                                 registry=registry),
        "log_spill_bytes": Gauge("revenue_log_spill_bytes", "Bytes of log rows waiting in the spill file",
                                 registry=registry),
        "log_writer_alive": Gauge("revenue_log_writer_alive", "1 when the log writer thread runs",
                                  registry=registry),
        "log_writer_restarts": Gauge("revenue_log_writer_restarts", "Log writer threads started again",
                                     registry=registry),
        "log_writer_errors": Gauge("revenue_log_writer_errors", "Log writer cycles that failed and were retried",
                                   registry=registry),
        "log_alarm": Gauge("revenue_log_alarm", "1 while PostgreSQL refuses the whole log (rows kept on disk)",
                           registry=registry),
        "log_rejected": Gauge("revenue_log_rows_rejected", "Rows PostgreSQL refused for their content, "
                              "kept in rejected.jsonl", registry=registry),
        "log_set_aside": Gauge("revenue_log_spill_lines_set_aside", "Spill lines that were not rows, kept in "
                               "corrupt.jsonl", registry=registry),
        "unauthorised_not_logged": Counter(
            "revenue_unauthorised_rows_not_logged", "401 answers over UNAUTHORISED_ROWS_PER_S, counted "
            "here instead of logged", registry=registry),
    }


@web.middleware
async def handle(request: web.Request, handler) -> web.StreamResponse:
    """Request id, API key, admission, error mapping, metrics and the log record of every request."""
    app = request.app
    service = app[SERVICE]
    sent_id = request.headers.get(REQUEST_ID_HEADER, "")
    record = RequestRecord(sent_id if _SAFE_REQUEST_ID.match(sent_id) else uuid.uuid4().hex,
                           request.path if request.match_info.route.resource else "(unknown)")
    request["record"] = record
    counted = request.path in PREDICTION_ROUTES
    try:
        response = await _answer(request, handler, record, counted)
        response.headers[REQUEST_ID_HEADER] = record.request_id
        response.headers[MODEL_VERSION_HEADER] = (record.identity or service.identity).version
        if app[DRAINING].is_set():  # stopping: the client must not send another request on this connection
            response.force_close()
        # Runs when this request's task next waits, which is after the answer is written to the socket.
        asyncio.get_running_loop().call_soon(_account, app, record, response.status, counted,
                                             request.get(CHARGED))
        return response
    except BaseException:  # not handed over to _account
        service.unreserve(record)
        if CHARGED in request:
            service.release(request[CHARGED])
        raise


async def _answer(request: web.Request, handler, record: RequestRecord, counted: bool) -> web.StreamResponse:
    """The handler's answer, or the error it raised as a JSON answer."""
    service, settings = request.app[SERVICE], request.app[SETTINGS]
    try:
        # Before admission: unauthenticated requests must not take the places of real ones.
        if (settings.api_key and request.path not in OPEN_ROUTES and not routes_dashboard.is_open(request.path)
                and not _authorised(request, settings)):
            raise RequestRejected(401, "unauthorised", "a valid API key is required in X-API-Key")
        if counted:
            charge = BODY_COST * body_bound(request, settings)
            service.admit(charge)
            request[CHARGED] = charge  # released by _account: the request's memory lives until then
        response = await handler(request)
    except RequestRejected as error:
        record.error = record.error or error.message
        response = json_response({**error.body(), "request_id": record.request_id}, error.status,
                                 {"Retry-After": str(error.retry_after)} if error.retry_after else None)
    except Overloaded as error:
        record.error = f"overloaded: {error}"
        response = json_response({"error": "overloaded", "message": "too many requests in flight; retry",
                                  "request_id": record.request_id}, 503, {"Retry-After": "1"})
    except ScorerUnavailable as error:
        record.error = str(error)
        response = json_response({"error": "model_unavailable", "message": str(error),
                                  "request_id": record.request_id}, 503, {"Retry-After": "1"})
    except asyncio.TimeoutError:
        record.error = "the model took too long"
        response = json_response({"error": "model_timeout", "message": record.error,
                                  "request_id": record.request_id}, 504)
    except ScorerFailed as error:
        record.error = str(error)
        response = json_response({"error": "model_error", "message": str(error),
                                  "request_id": record.request_id}, 502)
    except web.HTTPException as error:  # aiohttp's own: 404, 405, 413 ...
        record.error = error.reason
        response = json_response({"error": error.reason.lower().replace(" ", "_"), "message": error.text,
                                  "request_id": record.request_id}, error.status)
    except Exception:  # a bug of ours: still answered, logged and recorded
        log.exception("unexpected error in %s", request.path)
        record.error = "internal error"
        response = json_response({"error": "internal_error", "message": "unexpected error; it was logged",
                                  "request_id": record.request_id}, 500)
    return response


def _account(app: web.Application, record: RequestRecord, status: int, counted: bool,
             charged: int | None) -> None:
    """Metrics and log rows of one answered request; then its admission is released."""
    service, metrics = app[SERVICE], app[METRICS]
    try:
        _count_and_log(app, service, metrics, record, status, counted)
    finally:
        service.unreserve(record)
        if charged is not None:
            service.release(charged)


def _count_and_log(app, service: PredictionService, metrics: dict, record: RequestRecord, status: int,
                   counted: bool) -> None:
    version = (record.identity or service.identity).version
    metrics["requests"].labels(record.route, str(status), version).inc()
    metrics["latency"].labels(record.route, version).observe(record.latency_ms() / 1000)
    if status == 200 and record.outputs:
        metrics["users"].labels(record.route, version).inc(len(record.outputs))
    if status == 401 and not app[UNAUTHORISED_ROWS].take():
        metrics["unauthorised_not_logged"].inc()  # anyone can send these: they must not fill the database
    elif counted or status >= 400:
        service.record(record, status)


def _authorised(request: web.Request, settings: Settings) -> bool:
    given = request.headers.get("X-API-Key", "")
    if not given and request.headers.get("Authorization", "").startswith("Bearer "):
        given = request.headers["Authorization"][len("Bearer "):]
    # aiohttp keeps header bytes that are not UTF-8 as lone surrogates: compare them as the bytes sent.
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), settings.api_key.encode())


def _prediction(output: dict, user) -> dict:
    out = {c: output[c] for c in OUTPUT_COLUMNS}
    user_id = user.get("user_id") if isinstance(user, dict) else None
    out["user_id"] = str(user_id) if user_id is not None else None
    return out


def _stamp(record: RequestRecord, service: PredictionService) -> dict:
    identity = record.identity or service.identity
    return {"inference_time_ms": round(record.inference_ms or 0.0, 3), "timestamp": record.timestamp.isoformat(),
            "request_id": record.request_id, "model_name": identity.name, "model_version": identity.version}


async def predict(request: web.Request) -> web.Response:
    service, record = request.app[SERVICE], request["record"]
    users = single_user(await json_body(request))
    (output,) = await service.predict(record, users)
    return json_response({**_prediction(output, users[0]), **_stamp(record, service)})


async def batch_predict(request: web.Request) -> web.Response:
    service, record = request.app[SERVICE], request["record"]
    payload = await json_body(request)
    try:
        users = batch_users(payload)
    except RequestRejected:
        keep_body(request)
        raise
    outputs = await service.predict(record, users)
    predictions = [_prediction(o, u) for o, u in zip(outputs, users)]
    return json_response({"predictions": predictions, "count": len(predictions),
                          "total_predicted_revenue": sum(p["predicted_revenue"] for p in predictions),
                          **_stamp(record, service)})


async def invocations(request: web.Request) -> web.Response:
    """MLflow's own formats, passed through as sent; users and answers are still logged.

    JSON bodies are checked first, with the same validator as /predict, so a client's mistake
    is a 400 naming the field rather than whatever the scoring server makes of it.
    """
    service, record = request.app[SERVICE], request["record"]
    # No header: a body of unknown type (RFC 9110), which MLflow answers with 415 and its types.
    content_type = content_type_header(request) or "application/octet-stream"
    if request.content_type == "application/json":
        payload = await json_body(request)
        users = invocation_users(payload)
        if users is None:
            keep_body(request)
            raise RequestRejected(400, "invalid_input", "expected MLflow's JSON input: an object with "
                                  "dataframe_split, dataframe_records, instances or inputs")
        service.validate(record, users)
        body = request["body"]
    else:  # CSV, Parquet ...: MLflow parses them
        body = request["body"] = await read_body(request)
        keep_body(request)
    status, answer, answer_type = await service.passthrough(record, body, content_type)
    if status == 200 and answer_type == "application/json":
        predictions = orjson.loads(answer).get("predictions")
        if isinstance(predictions, list) and record.users and len(predictions) == len(record.users):
            record.outputs = predictions
    else:
        record.error = answer[:2000].decode("utf-8", "replace")
    return web.Response(body=answer, status=status, content_type=answer_type or "application/json")


async def health(request: web.Request) -> web.Response:
    """200 when the model answers and the log writer runs. PostgreSQL being down is not a 503 (rows
    wait in the spill file) but shows in ``log_database``; details are in /metrics and the logs."""
    champion, writer = request.app[SERVICE].champion, request.app[SERVICE].writer
    identity = champion.identity
    ready = champion.ready and writer.alive
    body = {"status": "healthy" if ready else "unavailable", "model_name": identity.name,
            "model_version": identity.version, "alias": identity.alias, "run_id": identity.run_id,
            "log_writer": "running" if writer.alive else "stopped",
            "log_database": "alarm" if writer.alarm else ("up" if writer.database_up else "down"),
            "timestamp": datetime.now(timezone.utc).isoformat()}
    return json_response(body, 200 if ready else 503)


def parse_duration(text: str) -> timedelta | None:
    """``30s``, ``30m``, ``6h``, ``7d``, ``2w`` as a timedelta; None when ``text`` is none of these.
    OverflowError past timedelta's range ("99999999999w")."""
    match = _DURATION.match(text.strip())
    return timedelta(**{_UNITS[match[2]]: float(match[1])}) if match else None


def parse_since(text: str | None, now: datetime, field: str = "since") -> datetime:
    """``field`` as a UTC time: ISO 8601 (UTC when it has no offset) or a duration back from
    ``now`` (30m, 6h, 7d); absent: the epoch. 400 naming ``field`` when it is neither, or falls
    outside years 1-9998 (the readers add hours and days to it: year 9999 would overflow there)."""
    if not text:
        return datetime(1970, 1, 1, tzinfo=timezone.utc)
    try:
        if (span := parse_duration(text)) is not None:
            return now - span
        # "+00:00" typed into a URL arrives as " 00:00".
        moment = datetime.fromisoformat(text.strip().replace(" ", "+"))
        # In UTC: PostgreSQL takes offsets up to 15:59 only, Python up to 23:59.
        moment = moment.astimezone(timezone.utc) if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        if moment.year > _LAST_YEAR:
            raise OverflowError
        return moment
    except ValueError:
        reason = "is not a time or a duration"
    except OverflowError:
        reason = f"is outside the years 1 to {_LAST_YEAR}"
    raise RequestRejected(400, "invalid_input", f"{field}: {text[:100]!r} {reason} (an ISO 8601 time "
                          "or a duration like 30m, 6h, 7d)", [{"row": None, "field": field, "reason": reason}])


async def stats(request: web.Request) -> web.Response:
    since = parse_since(request.query.get("since"), datetime.now(timezone.utc))
    body = await request.app[READS].run(request["record"], prediction_stats, since)
    writer = request.app[SERVICE].writer
    body.update({"since": since.isoformat(), "rows_waiting_to_be_written": writer.queued_rows})
    return json_response(body)


async def metrics(request: web.Request) -> web.Response:
    app = request.app
    m, writer, champion = app[METRICS], app[SERVICE].writer, app[SERVICE].champion
    m["in_flight"].set(app[SERVICE].in_flight)
    m["log_queue"].set(writer.queued_rows)
    m["spilled"].set(writer.rows_spilled)
    m["scorer_up"].set(1 if champion.ready else 0)
    m["scorer_restarts"].set(app[MODELS].stats.restarts)
    m["log_queue_bytes"].set(writer.queued_bytes)
    m["log_spill_bytes"].set(writer.spill.pending_bytes())
    m["log_writer_alive"].set(1 if writer.alive else 0)
    m["log_writer_restarts"].set(writer.restarts)
    m["log_writer_errors"].set(writer.errors)
    m["log_alarm"].set(1 if writer.alarm else 0)
    m["log_rejected"].set(writer.rows_rejected)
    m["log_set_aside"].set(writer.spill.lines_set_aside)
    return web.Response(body=generate_latest(app[REGISTRY]), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(settings: Settings, service: PredictionService, models: Models,
              database_url: str) -> web.Application:
    app = web.Application(middlewares=[handle], client_max_size=settings.max_body_bytes)
    registry = CollectorRegistry()
    app[REGISTRY] = registry
    app[OPENAPI] = openapi_document()
    app[METRICS] = _metrics(registry)
    app[SERVICE], app[SETTINGS], app[STATS_DB] = service, settings, database_url
    app[UNAUTHORISED_ROWS] = TokenBucket(settings.unauthorised_rows_per_s, UNAUTHORISED_BURST)
    app[DRAINING] = asyncio.Event()
    app[READS] = Reads(database_url, max_concurrent=settings.read_queries_max,
                       statement_timeout_s=settings.read_statement_timeout_s)
    app.router.add_get("/health", health)
    app.router.add_post("/predict", predict)
    app.router.add_post("/batch_predict", batch_predict)
    app.router.add_post("/invocations", invocations)
    app.router.add_get("/stats", stats)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", routes_docs.openapi)
    app.router.add_get("/docs", routes_docs.docs)
    routes_dashboard.register(app)
    from serving.routes_models import add_model_routes  # it imports this module's helpers
    add_model_routes(app, models)  # /model/info, /shadow, /admin/model/check
    from serving.routes_drift import add_drift_routes  # it imports this module's helpers
    add_drift_routes(app)  # GET /drift, the drift gauges
    from serving.routes_loop import add_loop_routes  # it imports this module's helpers
    add_loop_routes(app)
    from serving import log_upkeep
    log_upkeep.register(app, database_url, settings.stats_refresh_s, settings.log_retention_days)
    return app

