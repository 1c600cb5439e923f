"""GET /openapi.json and GET /docs: the API described, from serving/schemas.py's document."""

from __future__ import annotations

import orjson
from aiohttp import web

from serving.app_keys import OPENAPI


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(request.app[OPENAPI]), content_type="application/json")


_DOCS = """<!doctype html><html><head><meta charset="utf-8"><title>D7 revenue prediction API</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}pre{{background:#f4f4f4;padding:1em;
overflow:auto}}</style></head><body><h1>D7 revenue prediction API</h1>
<p>The OpenAPI document is at <a href="/openapi.json">/openapi.json</a>.</p>{routes}
<h2>Schemas</h2><pre>{schemas}</pre></body></html>"""


async def docs(request: web.Request) -> web.Response:
    document = request.app[OPENAPI]
    routes = "".join(f"<h3>{method.upper()} {path}</h3><p>{op['summary']}</p>"
                     for path, ops in document["paths"].items() for method, op in ops.items())
    schemas = orjson.dumps(document["components"]["schemas"], option=orjson.OPT_INDENT_2).decode()
    return web.Response(text=_DOCS.format(routes=routes, schemas=_escape(schemas)), content_type="text/html")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
