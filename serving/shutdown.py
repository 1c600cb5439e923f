"""Stopping the HTTP server so that every request is answered or its connection closed at once.

aiohttp's own graceful stop (``runner.cleanup``) first marks every connection as closing, and
from then on a closing connection drops whatever bytes arrive (``RequestHandler.data_received``).
A request whose headers had arrived but whose body was still on its way (http.client sends
them in two writes) then waited for a body that never came, until the 30 s shutdown timeout:
the client saw a timeout, neither an answer nor a closed connection (CI, aiohttp 3.14).

So the service stops in this order instead:
1. stop listening; answers from now on say ``Connection: close`` (app.DRAINING, set here);
2. close idle connections at once, and let connections with a request in progress receive
   the rest of it and answer it (then they close themselves), for at most ``timeout_s``;
3. only then ``runner.cleanup()``, which finds nothing left to cut short.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

log = logging.getLogger("serving.shutdown")
POLL_S = 0.02


async def drain(runner: web.AppRunner, draining: asyncio.Event, timeout_s: float) -> int:
    """Stop ``runner`` as above; returns how many connections were still busy after ``timeout_s``."""
    draining.set()
    server = runner.server
    for site in list(runner.sites):
        await site.stop()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    busy: list = []
    while server is not None:
        busy = []
        for connection in server.connections:
            # aiohttp says whether a request is being handled only through this attribute. A request
            # whose headers arrived but whose handler has not started yet counts as idle: its
            # connection is closed, and the client sees that at once.
            if getattr(connection, "_request_in_progress", False):
                busy.append(connection)
            else:
                connection.force_close()
        if not busy or loop.time() >= deadline:
            break
        await asyncio.sleep(POLL_S)
    if busy:
        log.warning("%d requests still unanswered after %.0f s of stopping: their connections are closed",
                    len(busy), timeout_s)
    await runner.cleanup()
    return len(busy)
