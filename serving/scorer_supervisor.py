"""Keeps one scorer process up, and trusts only the process it started.

``ScorerSupervisor.start`` starts the process and waits until it answers the
identity route (scorer_app.py) with this start's nonce and the expected model
version: a process that answers on the port with anything else (a scorer left
behind by another service on a fixed SCORER_PORT, an older release without the
route) is never taken for this one. Then it watches: every ``poll_s`` whether
the process lives, every ``ping_s`` the identity route again. A scorer that
exits, or does not answer a ping within ``ping_timeout_s`` (hung: SIGSTOPped,
deadlocked, swapping), is killed (SIGKILL, its workers too) and started again;
meanwhile ``ready`` is False, so /health says 503 and requests fail fast.
Nothing stops the watch: an exception anywhere in it (a fork that fails, a
start that times out) is logged and the next attempt waits a backoff that
doubles up to ``backoff_max_s``.

``ping_timeout_s`` must exceed the longest call the scorer serves: its event loop
scores in the same thread, so a ping waits behind the call in progress (a
10,000-user call took about 0.26 s on an idle machine here, 38,914 users/s in the
README's benchmark; the default allows 5 s).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

import orjson

from serving.scorer_http import ScorerConnectionError, ScorerHttp
from serving.scorer_env import IDENTITY_ROUTE
from serving.scorer_process import ScorerProcess

log = logging.getLogger("serving.scorer")


@dataclass
class ScorerStats:
    """Counts over every scorer this service ran (shared by their supervisors): for /metrics."""

    restarts: int = 0          # processes started again after an exit or a hang
    hangs: int = 0             # of those, processes that stopped answering and were killed
    watch_errors: int = 0      # exceptions caught in a watch (each followed by a backoff)


class NotOurScorer(RuntimeError):
    """The scorer exited, or did not answer as the process this service started."""


class ScorerSupervisor:
    """Keeps one ScorerProcess running; ``ready`` says whether it answers as ours."""

    def __init__(self, process: ScorerProcess, http: ScorerHttp, *, expected_version: str,
                 stats: ScorerStats | None = None, poll_s: float = 0.1, ping_s: float = 1.0,
                 ping_timeout_s: float = 5.0, start_timeout_s: float = 180.0,
                 backoff_s: float = 0.5, backoff_max_s: float = 30.0):
        self.process = process
        self.http = http
        self.expected_version = expected_version
        self.stats = stats or ScorerStats()
        self.poll_s = poll_s
        self.ping_s = ping_s
        self.ping_timeout_s = ping_timeout_s
        self.start_timeout_s = start_timeout_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.ready = False
        self._refused = 0  # pings refused in a row by a process that is alive
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """Start the process and wait until it answers as ours; raises OSError or NotOurScorer."""
        self.process.start()
        await self._wait_ready()
        self._task = asyncio.create_task(self._watch(), name=f"scorer-watch-{self.process.port}")

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        stranger = ""
        while time.monotonic() < deadline:
            if not self.process.alive():
                hint = f"; the port is answered by another process: {stranger}" if stranger else ""
                raise NotOurScorer(f"the scorer exited with status {self.process.process.returncode}{hint}")
            try:
                ours, seen = await self._is_ours(timeout_s=1.0)
                if ours:
                    self.ready = True
                    log.info("scorer ready on port %s (pid %s, model version %s)", self.process.port,
                             self.process.process.pid, self.expected_version or "-")
                    return
                stranger = seen
            except (ScorerConnectionError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.05)  # start-up: every 50 ms polled is 50 ms of cold start
        raise NotOurScorer(f"the scorer did not answer within {self.start_timeout_s:.0f} s")

    async def _is_ours(self, timeout_s: float) -> tuple[bool, str]:
        """(whether the port answers with this start's nonce and the expected version, what it said)."""
        status, body, _ = await self.http.request("GET", IDENTITY_ROUTE, timeout_s=timeout_s)
        seen = f"status {status}: {body[:200].decode('utf-8', 'replace')}"
        if status != 200:
            return False, seen
        try:
            identity = orjson.loads(body)
            nonce, version = identity["nonce"], (identity.get("model") or {}).get("model_version", "")
        except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
            return False, seen
        if nonce != self.process.nonce:
            return False, seen
        if version != self.expected_version:
            raise NotOurScorer(f"the scorer loaded model version {version!r}, not {self.expected_version!r}")
        return True, seen

    async def _watch(self) -> None:
        backoff = self.backoff_s
        next_ping = time.monotonic() + self.ping_s
        while True:
            try:
                await asyncio.sleep(self.poll_s)
                if self.process.alive() and self.ready:
                    if time.monotonic() < next_ping:
                        continue
                    next_ping = time.monotonic() + self.ping_s
                    if await self._answers():
                        continue
                await self._restart()
                backoff = self.backoff_s
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the watch must outlive anything
                self.ready = False
                self.stats.watch_errors += 1
                log.error("scorer on port %s: %s; next attempt in %.1f s", self.process.port,
                          error or type(error).__name__, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max_s)

    async def _answers(self) -> bool:
        """The liveness ping: False when the scorer is hung (no answer in time) or not ours."""
        try:
            ours, seen = await self._is_ours(timeout_s=self.ping_timeout_s)
        except asyncio.TimeoutError:
            self.stats.hangs += 1
            log.error("scorer pid %s did not answer a ping within %.1f s: killing it",
                      self.process.process.pid, self.ping_timeout_s)
            return False
        except ScorerConnectionError as error:  # alive but not listening: a few times in a row is a fault
            self._refused += 1
            log.warning("scorer ping failed (%d in a row): %s", self._refused, error)
            return self._refused < 3
        self._refused = 0
        if not ours:
            log.error("the scorer's port answers as another process (%s)", seen)
        return ours

    async def _restart(self) -> None:
        self.ready = False
        if self.process.alive():
            await asyncio.to_thread(self.process.kill)
        else:
            log.error("scorer exited (status %s); restarting", self.process.process.returncode)
        self.stats.restarts += 1
        self.process.start()
        await self._wait_ready()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.ready = False
        await asyncio.to_thread(self.process.stop)
