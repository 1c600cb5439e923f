"""The read routes' queries (/stats, /stats/timeseries, /drift, /performance), run one way.

Each runs in a thread on a connection of its own whose statements PostgreSQL cancels after
READ_STATEMENT_TIMEOUT_S (or the route's own, DRIFT_QUERY_TIMEOUT_S); at most READ_QUERIES_MAX
run at once, and a request that finds them all busy waits for a place at most as long as one
query may take, then gets 503 ``database_busy``. The slots guard PostgreSQL and the thread pool,
which prediction requests share: a dashboard reloading in a loop must not take either from them.

When PostgreSQL fails, the answer is 503 ``database_unavailable`` (or ``query_timeout``) with
Retry-After and no internal details (host names, SQL, driver messages): those go to the log and
the request's log row.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable, TypeVar

import psycopg2
import psycopg2.errors
from serving.core import RequestRecord, RequestRejected
from serving.db.connection import connect

log = logging.getLogger("serving.read_queries")
T = TypeVar("T")
RETRY_AFTER_S = 5


class ReadUnavailable(RequestRejected):
    """503: the read could not be answered now; worth retrying (Retry-After)."""

    def __init__(self, error: str, message: str):
        super().__init__(503, error, message)
        self.retry_after = RETRY_AFTER_S


class Reads:
    def __init__(self, database_url: str, *, max_concurrent: int, statement_timeout_s: float):
        self.database_url = database_url
        self.max_concurrent = max_concurrent
        self.statement_timeout_s = statement_timeout_s
        self._slots = asyncio.Semaphore(max_concurrent)

    async def run(self, record: RequestRecord | None, query: Callable[..., T], *args,
                  statement_timeout_s: float | None = None, setting: str = "READ_STATEMENT_TIMEOUT_S") -> T:
        """``query(connection, *args)`` in a thread, on a new connection closed afterwards. ``record``:
        the request's, which keeps what PostgreSQL said (None for a background refresh)."""
        timeout_s = statement_timeout_s or self.statement_timeout_s
        try:
            await asyncio.wait_for(self._slots.acquire(), timeout_s)
        except asyncio.TimeoutError:
            raise ReadUnavailable("database_busy", f"{self.max_concurrent} database reads are running "
                                  "(READ_QUERIES_MAX); retry") from None
        # The slot is freed when the thread ends, not when the request does: a client that hangs up
        # must not let more queries run than the cap.
        future = asyncio.get_running_loop().run_in_executor(None, self._call, query, args, timeout_s)
        future.add_done_callback(self._release)
        try:
            return await asyncio.shield(future)
        except psycopg2.errors.QueryCanceled:
            raise ReadUnavailable("query_timeout", f"the query took over {setting}={timeout_s:g} s: "
                                  "ask for a shorter window") from None
        except psycopg2.Error as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            log.warning("%s: PostgreSQL failed: %s", getattr(query, "__name__", "a read"), detail)
            if record is not None:
                record.error = f"database_unavailable: {detail}"[:500]
            raise ReadUnavailable("database_unavailable", "the database cannot answer now; retry") from None

    def _call(self, query: Callable[..., T], args: tuple, timeout_s: float) -> T:
        connection = connect(self.database_url, statement_timeout_ms=int(timeout_s * 1000),
                             application_name="revenue-service-read")
        try:
            return query(connection, *args)
        finally:
            connection.close()

    def _release(self, future: asyncio.Future) -> None:
        self._slots.release()
        if not future.cancelled():
            future.exception()  # retrieved: a request that hung up does not log "never retrieved"
