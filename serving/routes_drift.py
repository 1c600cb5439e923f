"""GET /drift and the drift gauges: whether recent traffic still looks like the served model's training data.

``add_drift_routes(app)`` (called from build_app) registers the route and starts the background
refresh of the gauges (serving/drift_monitor.py) with the app. The counting is SQL
(serving/db/drift.py), the folding and PSI are revenue_model/drift.py's, the references come
from serving/drift_references.py.

Answers besides 200: 400 naming the parameter; 404 ``no_reference`` when the version has no
reference profile and none can be computed (or the registry has no such version); 503
``reference_unavailable`` (the registry did not answer), ``query_timeout`` (the count took over
DRIFT_QUERY_TIMEOUT_S) or ``database_unavailable``, each with Retry-After.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import datetime, timedelta, timezone

from aiohttp import web

from revenue_model.drift import MIN_ROWS, drift_report, grouped_counts
from serving.app import READS, REGISTRY, SERVICE, SETTINGS, json_response, parse_since
from serving.core import RequestRejected
from serving.db.drift import NUMERIC_COLUMNS, window_counts
from serving.drift_monitor import DriftGauges, refresh_forever
from serving.drift_references import NoReference, Reference, ReferenceUnavailable, References

REFERENCES = web.AppKey("drift_references", References)
_VERSION = re.compile(r"^[0-9]{1,18}$")  # the registry numbers versions; anything else names a stage
MAX_MIN_ROWS = 1_000_000_000


class DriftUnavailable(RequestRejected):
    """A 503 that is worth retrying: the answer names what was away."""


def add_drift_routes(app: web.Application) -> None:
    settings = app[SETTINGS]
    app[REFERENCES] = References(tracking_uri=settings.tracking_uri, timeout_s=settings.drift_reference_timeout_s)
    app.router.add_get("/drift", drift)
    if settings.drift_refresh_s > 0:
        app.cleanup_ctx.append(_gauges)


async def drift(request: web.Request) -> web.Response:
    app, query = request.app, request.query
    now = datetime.now(timezone.utc)
    until = parse_since(query["until"], now, "until") if query.get("until") else now
    since = (parse_since(query["since"], now) if query.get("since")
             else until - timedelta(seconds=app[SETTINGS].drift_window_s))
    if since >= until:
        raise _invalid("since", f"must be before until ({until.isoformat()})")
    min_rows = _min_rows(query.get("min_rows"))
    version = query.get("model_version") or app[SERVICE].identity.version
    if query.get("model_version") and not _VERSION.match(version):
        raise _invalid("model_version", "must be a registry version number (1 to 18 digits)")
    try:
        reference, report = await measure(app, version, since, until, min_rows, request["record"])
    except DriftUnavailable as error:
        return json_response({**error.body(), "request_id": request["record"].request_id}, 503,
                             {"Retry-After": "5"})
    return json_response({"model_version": version, **report, "since": since.isoformat(),
                          "until": until.isoformat(), "min_rows": min_rows, "reference": reference.source})


async def measure(app: web.Application, version: str, since: datetime, until: datetime,
                  min_rows: int = MIN_ROWS, record=None) -> tuple[Reference, dict]:
    """(the version's reference, GET /drift's report without model_version) for [since, until).
    ``record``: the request's (None for the gauges' refresh). PostgreSQL's failures are
    serving.read_queries' 503s (``query_timeout``, ``database_unavailable``)."""
    reference = await _reference(app, version)
    edges = {c: reference.profile["columns"][c]["edges"] for c in NUMERIC_COLUMNS}
    groups = await app[READS].run(record, _count, version, since, until, edges,
                                  statement_timeout_s=app[SETTINGS].drift_query_timeout_s,
                                  setting="DRIFT_QUERY_TIMEOUT_S")
    return reference, drift_report(reference.profile, grouped_counts(reference.profile, groups), min_rows)


def _count(connection, version: str, since: datetime, until: datetime, edges: dict) -> dict:
    return window_counts(connection, model_version=version, since=since, until=until, edges=edges)


async def _reference(app: web.Application, version: str) -> Reference:
    identity = app[SERVICE].identity
    if version == identity.version:
        uri = identity.uri
    elif identity.name:
        uri = f"models:/{identity.name}/{version}"
    else:
        raise RequestRejected(404, "no_reference", f"the served model ({identity.uri}) is not from the registry: "
                              f"only its own drift can be measured, not version {version!r}",
                              [{"row": None, "field": "model_version", "reason": "is not the served model"}])
    try:
        return await app[REFERENCES].get(uri)
    except NoReference as missing:
        raise RequestRejected(404, "no_reference", f"model version {version!r} has no drift reference: {missing}. "
                              "Models trained by this release carry one (reference_profile.json)",
                              [{"row": None, "field": "model_version", "reason": "has no reference"}]) from None
    except ReferenceUnavailable as error:
        raise DriftUnavailable(503, "reference_unavailable", str(error)) from None


def _min_rows(text: str | None) -> int:
    if not text:
        return MIN_ROWS
    try:
        value = int(text)
    except ValueError:
        raise _invalid("min_rows", "must be a whole number") from None
    if not 1 <= value <= MAX_MIN_ROWS:
        raise _invalid("min_rows", f"must be from 1 to {MAX_MIN_ROWS}")
    return value


def _invalid(field: str, reason: str) -> RequestRejected:
    return RequestRejected(400, "invalid_input", f"{field} {reason}", [{"row": None, "field": field, "reason": reason}])


async def _gauges(app: web.Application):
    """The background refresh of the gauges, for as long as the app runs."""
    gauges = DriftGauges(app[REGISTRY])
    window = timedelta(seconds=app[SETTINGS].drift_window_s)

    async def served() -> tuple[str, dict]:
        version = app[SERVICE].identity.version
        now = datetime.now(timezone.utc)
        return version, (await measure(app, version, now - window, now))[1]

    task = asyncio.ensure_future(refresh_forever(served, gauges, app[SETTINGS].drift_refresh_s))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
