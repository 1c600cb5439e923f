"""Routes about which model answers: /model/info, /shadow, POST /admin/model/check, and their metrics.

Registered by ``build_app`` (app.py); the API key, request ids and error
mapping are app.py's middleware, as for every route.
"""

from __future__ import annotations

import asyncio
import re
from datetime import datetime, timezone

import psycopg2
import psycopg2.errors
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from serving.app import REGISTRY, SERVICE, SETTINGS, STATS_DB, json_response, parse_since
from serving.core import RequestRejected
from serving.db.connection import connect
from serving.db.shadow import shadow_pairs, shadow_sample
from serving.db.shadow_outcomes import same_users_rows
from serving.model_follower import MODELS, Models
from serving.performance import performance_groups
from serving.shadow_compare import compare

_TIMEOUT_S = 30  # per statement of GET /shadow and of /performance's same_users
_VERSION = re.compile(r"^\d{1,18}$")


async def model_info(request: web.Request) -> web.Response:
    champion, models = request.app[SERVICE].champion, request.app[MODELS]
    return json_response({**champion.identity.as_dict(), "scorer_ready": champion.ready, **models.info()})


async def check_models(request: web.Request) -> web.Response:
    """Check every followed alias now (backoff ignored) and answer what happened to each.

    Only with an API key configured: without one every caller could make the service download and
    start a scorer on each call (a forced check skips the backoff)."""
    if not request.app[SETTINGS].api_key:
        raise RequestRejected(403, "forbidden", "POST /admin/model/check needs API_KEY set on the service",
                              [{"row": None, "field": "X-API-Key", "reason": "no API_KEY is configured"}])
    models = request.app[MODELS]
    champion, shadow = await asyncio.gather(
        models.champion.check(force=True),
        models.shadow.check(force=True) if models.shadow is not None else asyncio.sleep(0))
    return json_response({"champion": champion, "shadow": shadow})


async def shadow_report(request: web.Request) -> web.Response:
    """The champion and the shadow on the users both scored since ``since`` (contract: GET /shadow)."""
    app = request.app
    since = parse_since(request.query.get("since"), datetime.now(timezone.utc))
    models, limit = app[MODELS], app[SETTINGS].shadow_sample_users
    wanted = (request.query.get("champion_version"), request.query.get("shadow_version"))
    serving = _serving_pair(app)
    url = app[STATS_DB]

    def query():
        connection = connect(url, statement_timeout_ms=_TIMEOUT_S * 1000)
        try:
            pairs = shadow_pairs(connection, since)
            pair = _pick(pairs, wanted, serving)
            sample = shadow_sample(connection, since, pair, limit) if pair else ([], [])
            return pair, sample
        finally:
            connection.close()

    try:
        pair, (champion, shadow) = await asyncio.to_thread(query)
    except psycopg2.errors.QueryCanceled:
        return json_response({"error": "query_timeout", "message": f"the comparison took over {_TIMEOUT_S} s; "
                              "ask for a shorter window (since)"}, 503)
    except psycopg2.Error:
        return json_response({"error": "database_unavailable", "message": "PostgreSQL did not answer; retry"},
                             503, {"Retry-After": "5"})
    body = {"since": since.isoformat(), "champion_version": None, "shadow_version": None, "n_users": 0,
            "mean_ratio": None, "spearman": None, "top_decile_overlap": None, "sample_users": 0}
    if pair:
        body.update({"champion_version": pair["champion_version"], "shadow_version": pair["shadow_version"],
                     "n_users": pair["n_users"], "mean_ratio": pair["mean_ratio"], **compare(champion, shadow)})
    return json_response(body)


def _serving_pair(app: web.Application) -> tuple[str | None, str | None]:
    models = app[MODELS]
    return (models.champion.current.identity.version if models.champion.current else None,
            models.shadow.current.identity.version if models.shadow and models.shadow.current else None)


def compared_versions(request: web.Request) -> tuple[str, str] | None:
    """The (champion, shadow) versions GET /performance compares on the same users: the query's
    ``champion_version`` and ``shadow_version``, each defaulting to the version serving in that
    role; None when there is no pair (no shadow, or the shadow is the champion's version)."""
    serving = _serving_pair(request.app)
    pair = []
    for field, default in zip(("champion_version", "shadow_version"), serving):
        value = request.query.get(field) or default
        if request.query.get(field) and not _VERSION.match(value):
            raise RequestRejected(400, "invalid_input", f"{field}: {value[:100]!r} is not a registry version number",
                                  [{"row": None, "field": field, "reason": "must be a registry version number"}])
        pair.append(value)
    if None in pair or pair[0] == pair[1]:
        if request.query.get("shadow_version") and pair[0] == pair[1]:
            raise RequestRejected(400, "invalid_input", "shadow_version must differ from champion_version",
                                  [{"row": None, "field": "shadow_version", "reason": "is the champion_version"}])
        return None
    return pair[0], pair[1]


def same_users_performance(url: str, pair: tuple[str, str], *, since: datetime, until: datetime | None,
                           by: str | None, min_labelled: int) -> dict:
    """GET /performance's ``same_users``: both versions' realised metrics on the users both scored
    (serving/db/shadow_outcomes.py), in /performance's group format. Called after the rollup was
    refreshed. Over ``_TIMEOUT_S`` it is given up: no groups and a ``reason`` (the rest of
    /performance is answered from the rollup's cells, in time)."""
    connection = connect(url, statement_timeout_ms=_TIMEOUT_S * 1000)
    out = {"champion_version": pair[0], "shadow_version": pair[1], "n_users": None, "n_labelled": None,
           "groups": [], "reason": None}
    try:
        rows = same_users_rows(connection, first=pair[0], second=pair[1], since=since, until=until, by=by)
    except psycopg2.errors.QueryCanceled:
        return {**out, "reason": f"query_timeout: comparing the two versions' users took over {_TIMEOUT_S} s; "
                                 "ask for a shorter window (since, until)"}
    finally:
        connection.close()
    groups = performance_groups(rows, by, min_labelled)
    return {**out, "n_users": sum(g["n_predicted"] for g in groups if g["model_version"] == pair[0]),
            "n_labelled": sum(g["n_labelled"] for g in groups if g["model_version"] == pair[0]), "groups": groups}


def _pick(pairs: list[dict], wanted: tuple, serving: tuple) -> dict | None:
    """The pair of versions asked for (None when the window has none); else the pair serving now;
    else the pair with the newest rows."""
    def matching(versions: tuple) -> list[dict]:
        return [p for p in pairs if versions[0] in (None, p["champion_version"])
                and versions[1] in (None, p["shadow_version"])]

    newest = lambda found: max(found, key=lambda p: p["last"]) if found else None  # noqa: E731
    if any(wanted):
        return newest(matching(wanted))
    return newest(matching(serving)) or newest(pairs)


class _ModelMetrics:
    """/metrics of the model lifecycle, read when scraped."""

    def __init__(self, models: Models):
        self.models = models

    def collect(self):
        models = self.models
        swaps = CounterMetricFamily("revenue_model_swaps", "Switches to a new version of a followed alias",
                                    labels=["role"])
        failures = CounterMetricFamily("revenue_model_swap_failures", "Checks that kept the old version: a new "
                                       "one failed to download, start or answer, or the registry failed",
                                       labels=["role"])
        serving = GaugeMetricFamily("revenue_model_serving", "1 for the version answering in each role",
                                    labels=["role", "model_version"])
        for follower in models.followers():
            swaps.add_metric([follower.role], follower.swap_count)
            failures.add_metric([follower.role], follower.failures)
            if follower.current is not None:
                serving.add_metric([follower.role, follower.current.identity.version], 1)
        yield from (swaps, failures, serving)
        yield CounterMetricFamily("revenue_scorer_hangs", "Scorers killed for not answering a ping in time",
                                  value=models.stats.hangs)
        yield CounterMetricFamily("revenue_scorer_watch_errors", "Errors in a scorer's watch (then a backoff)",
                                  value=models.stats.watch_errors)
        shadow = models.shadow_scorer
        if shadow is not None:
            users = CounterMetricFamily("revenue_shadow_users", "Users offered to the shadow, by outcome",
                                        labels=["outcome"])
            users.add_metric(["scored"], shadow.scored_users)
            users.add_metric(["failed"], shadow.failed_users)
            users.add_metric(["dropped"], shadow.dropped_users)
            yield users
            yield GaugeMetricFamily("revenue_shadow_queue_users", "Users waiting for the shadow",
                                    value=shadow.queued_users)


def add_model_routes(app: web.Application, models: Models) -> None:
    app[MODELS] = models
    app[REGISTRY].register(_ModelMetrics(models))
    app.router.add_get("/model/info", model_info)
    app.router.add_get("/shadow", shadow_report)
    app.router.add_post("/admin/model/check", check_models)
