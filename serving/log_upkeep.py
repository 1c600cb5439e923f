"""The log's upkeep in the service, in the background: the /stats and /drift rollups kept current,
day partitions made ahead of time, and (LOG_RETENTION_DAYS) whole days past retention dropped.

Every STATS_REFRESH_S the rollups read the rows written since (so a /stats or /drift call adds at
most that much of the log's tail to their cells); once an hour, and at start, the partitions of today and the
next ``AHEAD_DAYS`` are made, then, with a retention period, the days before it are dropped.
Several service processes may do this at once: each rollup's feed row and PostgreSQL's locks make
them take turns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg2
from aiohttp import web

from serving.db import drift_cells, stats_cells
from serving.db.connection import connect
from serving.db.partitions import Partitions, drop_days_before

log = logging.getLogger("serving.log_upkeep")
PARTITIONS_EVERY_S = 3600.0
STATEMENT_TIMEOUT_MS = 300_000  # a rollup batch of 200,000 rows on a busy machine


def register(app: web.Application, database_url: str, refresh_s: float, retention_days: int) -> None:
    async def upkeep(app: web.Application):
        stop = threading.Event()
        task = asyncio.create_task(_loop(database_url, refresh_s, retention_days, stop))
        yield
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(upkeep)


async def _loop(url: str, refresh_s: float, retention_days: int, stop: threading.Event) -> None:
    partitions_due = 0.0
    while True:
        try:
            if time.monotonic() >= partitions_due:
                await asyncio.to_thread(partitions_pass, url, retention_days)
                partitions_due = time.monotonic() + PARTITIONS_EVERY_S
            if refresh_s > 0:
                await asyncio.to_thread(rollup_pass, url, stop)
        except psycopg2.Error as error:  # the database is down: the writer spills; try again later
            log.warning("log upkeep failed (will retry): %s", str(error).strip())
        except Exception:
            log.exception("log upkeep failed (will retry)")
        await asyncio.sleep(refresh_s if refresh_s > 0 else PARTITIONS_EVERY_S)


def rollup_pass(url: str, stop: threading.Event | None = None) -> int | None:
    """Both rollups caught up, one after the other; the /stats rollup's rows still pending."""
    connection = connect(url, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    try:
        pending = stats_cells.catch_up(connection, stop=stop)
        drift_cells.catch_up(connection, stop=stop)
        return pending
    finally:
        connection.close()


def partitions_pass(url: str, retention_days: int) -> list[str]:
    """Make today's and the next days' partitions; with a retention period, drop older days."""
    connection = connect(url)
    try:
        Partitions().ensure(connection, [])
        connection.commit()
        if retention_days <= 0:
            return []
        first_kept = datetime.now(timezone.utc).date() - timedelta(days=retention_days)
        dropped = drop_days_before(connection, first_kept)
        if dropped:
            log.info("retention (%d days): dropped %s", retention_days, ", ".join(dropped))
        return dropped
    finally:
        connection.close()
