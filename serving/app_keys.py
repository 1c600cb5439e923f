"""The keys of what the web application holds, shared by the route modules."""

from __future__ import annotations

from aiohttp import web

from serving.config import Settings
from serving.core import PredictionService

SERVICE = web.AppKey("service", PredictionService)
SETTINGS = web.AppKey("settings", Settings)
OPENAPI = web.AppKey("openapi", dict)  # the OpenAPI document, built once
CHARGED = "charged"  # a request's memory estimate, counted against MAX_IN_FLIGHT_BYTES
