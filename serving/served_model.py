"""One model version behind one scorer process: what it is, how to call it, who is using it.

A ``ServedModel`` is started (the supervisor's trust check, then a real
prediction of ``PROBE_USER`` through the same path as a request), used by
requests (``using`` counts them), and retired: once no call is in flight on it
any more (or after a bound), its scorer is stopped and its files removed.
A swap (model_follower.py) starts the new one beside the old, switches new
calls to it, then retires the old one, so no call is cut off half way.
"""

from __future__ import annotations

import asyncio
import logging
import math
import shutil
from contextlib import contextmanager
from pathlib import Path

from revenue_model.contract import OUTPUT_COLUMNS
from revenue_model.validation import validate_columns
from serving.config import Settings
from serving.model_identity import ModelIdentity
from serving.scorer import ScorerClient, to_scorer_columns
from serving.scorer_http import ScorerHttp
from serving.scorer_process import ScorerProcess
from serving.scorer_supervisor import ScorerStats, ScorerSupervisor

log = logging.getLogger("serving.models")

# A contract user every model must score before it answers a client (any valid user would do).
PROBE_USER = {"country": "us", "country_region": "", "source": "Organic", "platform": "iOS",
              "device_family": "Apple iPhone", "os_version": "17.1", "event_1": 3, "event_2": 1, "event_3": 0.5}


class ModelRefused(RuntimeError):
    """A started model's answer to the probe user is not a prediction: it is not switched to."""


class ServedModel:
    def __init__(self, identity: ModelIdentity, process: ScorerProcess, settings: Settings, *,
                 stats: ScorerStats | None = None, files: Path | None = None):
        """``files``: a directory removed when this model is retired (its download)."""
        self.identity = identity
        self.process = process
        self.http = ScorerHttp("127.0.0.1", process.port, timeout_s=settings.scorer_timeout_s)
        self.supervisor = ScorerSupervisor(process, self.http, expected_version=identity.version, stats=stats,
                                           ping_s=settings.scorer_ping_s,
                                           ping_timeout_s=settings.scorer_ping_timeout_s)
        self.client = ScorerClient(self.supervisor, lanes=process.workers)
        self.files = files
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def ready(self) -> bool:
        return self.supervisor.ready

    async def start(self) -> "ServedModel":
        """Start the scorer, check it is ours, check it predicts; raises if any of it fails."""
        await self.supervisor.start()
        await self.probe()
        return self

    async def probe(self) -> None:
        outputs, _ = await self.client.predict(to_scorer_columns(validate_columns([PROBE_USER])))
        values = [outputs[0].get(c) if outputs else None for c in OUTPUT_COLUMNS]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in values):
            raise ModelRefused(f"the scorer of version {self.identity.version} answered the probe user with "
                               f"{outputs!r:.300}")

    @contextmanager
    def using(self):
        """Around every call on this model: a retired model waits for the calls in flight."""
        self.in_flight += 1
        self._idle.clear()
        try:
            yield self
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()

    async def retire(self, wait_s: float) -> None:
        """Stop, after the calls in flight finished (at most ``wait_s``: a call has its own timeout)."""
        try:
            await asyncio.wait_for(self._idle.wait(), wait_s)
        except asyncio.TimeoutError:
            log.warning("version %s still had %d calls in flight after %.0f s; stopping it", self.identity.version,
                        self.in_flight, wait_s)
        await self.stop()

    async def stop(self) -> None:
        await self.supervisor.stop()
        self.http.close()
        if self.files is not None:
            await asyncio.to_thread(shutil.rmtree, self.files, True)
