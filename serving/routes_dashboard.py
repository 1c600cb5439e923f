"""GET /dashboard (one page, its script, style and charting library, all served from here) and
GET /stats/timeseries, the per-interval figures the page draws over time.

The page holds no data: it reads the JSON routes from the browser, with the API key the person
types in when the service has one. So the page and its files are open, the data routes are not.
"""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

from aiohttp import web

from serving import app as web_app  # used at call time only: app.py registers these routes
from serving.core import RequestRejected
from serving.db import dashboard as queries

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE = "/dashboard"
STATIC_PREFIX = "/dashboard/static/"
_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}

# Intervals the series is cut into when the client names none: the first that gives at most
# TARGET_INTERVALS over the window (24 h -> 5 min, 288 points; 30 days -> 3 h, 240).
STEPS_S = (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800)
TARGET_INTERVALS = 300
MAX_INTERVALS = 2000      # a longer series is refused (400): each interval is a row of the answer
MIN_STEP_S = 1
DEFAULT_SINCE = "24h"


class _File:
    """A static file held in memory (about 60 KB in all), with an ETag so browsers revalidate cheaply."""

    def __init__(self, path: Path):
        self.body = path.read_bytes()
        self.content_type = _TYPES[path.suffix]
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'

    async def handle(self, request: web.Request) -> web.Response:
        # no-cache: always revalidated, so an upgraded page never runs with a stale script.
        headers = {"ETag": self.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if request.headers.get("If-None-Match") == self.etag:
            return web.Response(status=304, headers=headers)
        return web.Response(body=self.body, content_type=self.content_type, charset="utf-8", headers=headers)


def is_open(path: str) -> bool:
    """The page and its files need no API key (they hold no data; the page asks for the key)."""
    return path == PAGE or path.startswith(STATIC_PREFIX)


def parse_step(text: str | None, span: timedelta) -> timedelta:
    """The interval: ``text`` ("30s", "5m", "1h") or, when absent, the one STEPS_S picks for ``span``."""
    if not text:
        seconds = next((s for s in STEPS_S if math.ceil(span.total_seconds() / s) <= TARGET_INTERVALS), STEPS_S[-1])
        return timedelta(seconds=seconds)
    try:
        step = web_app.parse_duration(text)  # the durations `since` takes
    except OverflowError:  # "99999999999w"
        step = None
    if step is None or step.total_seconds() < MIN_STEP_S:
        raise _bad("step", f"{text[:100]!r} is not a duration of at least {MIN_STEP_S} s like 30s, 5m, 1h")
    return step


def window(since: datetime, until: datetime, step: timedelta) -> datetime:
    """The start of the first interval: ``since`` rounded down to a multiple of ``step`` since the epoch
    (UTC), so the intervals of two calls line up; refused when the series would be too long."""
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    try:
        first = epoch + step * ((since - epoch) // step)
    except OverflowError:  # a step of centuries before 1970
        raise _bad("step", "is longer than the time from 1970 to since") from None
    if until <= first:
        raise _bad("until", "is not after since")
    intervals = math.ceil((until - first) / step)
    if intervals > MAX_INTERVALS:
        raise _bad("step", f"{intervals} intervals of {step.total_seconds():g} s from since to until; "
                           f"at most {MAX_INTERVALS}: take a longer step or a shorter window")
    return first


def _bad(field: str, reason: str) -> RequestRejected:
    return RequestRejected(400, "invalid_input", f"{field}: {reason}",
                           [{"row": None, "field": field, "reason": reason}])


async def timeseries(request: web.Request) -> web.Response:
    now = datetime.now(timezone.utc)
    since = _moment(request, "since", DEFAULT_SINCE, now)
    until = _moment(request, "until", None, now)
    step = parse_step(request.query.get("step"), until - since)
    first = window(since, until, step)
    buckets = await request.app[web_app.READS].run(request["record"], queries.timeseries, first, until, step,
                                                   sorted(web_app.PREDICTION_ROUTES))
    return web_app.json_response({"since": first.isoformat(), "until": until.isoformat(),
                          "step_s": step.total_seconds(), "buckets": buckets})


def _moment(request: web.Request, name: str, default: str | None, now: datetime) -> datetime:
    """A time query parameter as /stats takes ``since`` (ISO 8601, or a duration back from now)."""
    text = request.query.get(name) or default
    if text is None:
        return now
    try:
        return web_app.parse_since(text, now)
    except (RequestRejected, OverflowError):  # OverflowError: "since=99999999d", before year 1
        raise _bad(name, f"{text[:100]!r} is neither an ISO 8601 time nor a duration like 30m, 6h, 7d") from None


def register(app: web.Application) -> None:
    add_page(app)
    app.router.add_get("/stats/timeseries", timeseries)


def add_page(app: web.Application) -> None:
    """GET /dashboard and its files."""
    page = _File(STATIC_DIR / "dashboard.html")
    app.router.add_get(PAGE, page.handle)
    # One route per file (no directory listing, and a request for any other name is an unknown route).
    for path in sorted(p for p in STATIC_DIR.rglob("*") if p.suffix in (".js", ".css")):
        app.router.add_get(STATIC_PREFIX + path.relative_to(STATIC_DIR).as_posix(), _File(path).handle)
