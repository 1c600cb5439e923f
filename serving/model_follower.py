"""Following an alias without a restart: when it moves, a scorer on the new version takes over.

``ModelFollower.check`` asks the registry which version the URI's alias points
to now. When it is not the one serving, it downloads that version, starts a
second scorer on it beside the one serving, and waits until that scorer answers
as ours with a real prediction (served_model.py). Only then are new calls
switched to it (``on_switch``); the old one finishes the calls it has in flight
and is stopped. A version that fails to download, start or answer is not
switched to: the old one keeps serving, the failure is logged and counted, and
that version is tried again after a backoff that doubles from ``poll_s`` up to
``BACKOFF_MAX_S`` (another version, a rollback for instance, is tried at once).

``run`` checks every ``poll_s`` seconds (MODEL_POLL_S); the admin route calls
``check(force=True)``, which ignores the backoff. Checks never overlap.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from aiohttp import web
from mlflow import MlflowClient

from serving.config import Settings
from serving.model_identity import fetch, locate, movable
from serving.scorer_process import ScorerProcess
from serving.scorer_supervisor import ScorerStats
from serving.served_model import ServedModel

if TYPE_CHECKING:
    from serving.shadow import ShadowScorer

log = logging.getLogger("serving.models")

BACKOFF_MAX_S = 600.0
KEPT_SWAPS = 100  # /model/info lists this many of the latest swaps


class ModelFollower:
    def __init__(self, model_uri: str, role: str, settings: Settings, root: Path, *, stats: ScorerStats,
                 current: ServedModel | None = None, nice: int = 0,
                 on_switch: Callable[[ServedModel], None] = lambda served: None):
        """``root``: where downloads go, one directory per version; ``role``: champion or shadow."""
        self.model_uri = model_uri
        self.role = role
        self.settings = settings
        self.root = Path(root)
        self.stats = stats
        self.current = current
        self.nice = nice
        self.on_switch = on_switch
        self.poll_s = settings.model_poll_s
        self.swaps: deque[dict] = deque(maxlen=KEPT_SWAPS)
        self.swap_count = 0
        self.failures = 0
        self.last_check: dict | None = None
        self._client: MlflowClient | None = None
        self._failed: dict[str, tuple[int, float]] = {}  # version: (failures in a row, next attempt)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task | None = None
        self._retiring: set[asyncio.Task] = set()

    def start(self, *, check_now: bool = False) -> "ModelFollower":
        """Follow in the background: every ``poll_s`` (never when it is 0 or the URI names no alias);
        with ``check_now``, a first check at once (a shadow not loaded yet)."""
        if (self.poll_s > 0 and movable(self.model_uri)) or check_now:
            self._task = asyncio.create_task(self._run(check_now), name=f"follow-{self.role}")
        return self

    async def _run(self, check_now: bool) -> None:
        if check_now:
            await self.check()
        if self.poll_s <= 0 or not movable(self.model_uri):
            return
        while True:
            await asyncio.sleep(self.poll_s)
            await self.check()

    async def check(self, *, force: bool = False) -> dict:
        """One check; what happened: {"role", "status" (unchanged, swapped, loaded, failed,
        backing_off, error), "from_version", "to_version", "error"}. Never raises."""
        async with self._lock:
            outcome = await self._check(force)
        self.last_check = {**outcome, "at": _now()}
        return self.last_check

    async def _check(self, force: bool) -> dict:
        serving = self.current.identity.version if self.current else None
        outcome = {"role": self.role, "status": "unchanged", "from_version": serving, "to_version": serving,
                   "error": None}
        try:
            if self._client is None:
                self._client = MlflowClient()
            located = await asyncio.to_thread(locate, self.model_uri, self._client)
        except Exception as error:  # noqa: BLE001 - the registry down, the alias deleted: keep serving
            self.failures += 1
            log.error("%s: cannot resolve %s: %s", self.role, self.model_uri, error)
            return {**outcome, "status": "error", "error": f"cannot resolve {self.model_uri}: {error}"}
        version = located.version
        if self.current is not None and version == serving:
            self._failed.clear()
            return outcome
        outcome["to_version"] = version
        failed, next_try = self._failed.get(version, (0, 0.0))
        if failed and not force and time.monotonic() < next_try:
            return {**outcome, "status": "backing_off", "to_version": serving,
                    "error": f"version {version} failed {failed} time(s); next attempt in "
                             f"{next_try - time.monotonic():.0f} s"}
        try:
            served = await self._load(located)
        except Exception as error:  # noqa: BLE001 - whatever broke, the old version keeps serving
            self.failures += 1
            delay = min((self.poll_s or 30.0) * 2 ** failed, BACKOFF_MAX_S)
            self._failed[version] = (failed + 1, time.monotonic() + delay)
            log.error("%s: version %s not switched to (%s); version %s keeps serving; next attempt in %.0f s",
                      self.role, version, error, serving, delay)
            return {**outcome, "status": "failed", "to_version": serving,
                    "error": f"version {version}: {error or type(error).__name__}"}
        self._failed.pop(version, None)
        self._switch(served)
        return {**outcome, "status": "swapped" if serving is not None else "loaded", "to_version": version}

    async def _load(self, located) -> ServedModel:
        """Download and start ``located``; a started ServedModel that answered the probe user."""
        files = self.root / f"{self.role}-v{located.version}-{uuid.uuid4().hex[:8]}"
        files.mkdir(parents=True)
        served = None
        try:
            identity = await asyncio.to_thread(fetch, located, files / "model")
            process = ScorerProcess(files / "model", port=0, workers=self.settings.scorer_workers,
                                    threads=self.settings.scorer_threads, nice=self.nice)
            served = ServedModel(identity, process, self.settings, stats=self.stats, files=files)
            return await served.start()
        except BaseException:
            if served is not None:
                await served.stop()
            await asyncio.to_thread(shutil.rmtree, files, True)
            raise

    def _switch(self, served: ServedModel) -> None:
        old, self.current = self.current, served
        self.on_switch(served)  # from here on, new calls go to the new version
        if old is None:
            log.info("%s: version %s loaded", self.role, served.identity.version)
            return
        self.swap_count += 1
        self.swaps.append({"at": _now(), "from_version": old.identity.version, "to_version": served.identity.version})
        log.info("%s: switched from version %s to %s", self.role, old.identity.version, served.identity.version)
        task = asyncio.create_task(old.retire(self.settings.scorer_timeout_s + 5))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def stop(self) -> None:
        """Stop following, then every scorer this follower runs (those retiring too)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        async with self._lock:
            await asyncio.gather(*self._retiring, return_exceptions=True)
            if self.current is not None:
                await self.current.stop()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class Models:
    """Everything that decides which model answers: what /model/info, /metrics and the admin routes read."""

    champion: ModelFollower
    stats: ScorerStats
    shadow: ModelFollower | None = None
    shadow_scorer: "ShadowScorer | None" = None

    def info(self) -> dict:
        """The contract's additions to /model/info: ``swaps`` and ``shadow``."""
        shadow = None
        if self.shadow_scorer is not None:
            served = self.shadow_scorer.served
            shadow = {"model_version": served.identity.version if served else None,
                      "share": self.shadow_scorer.share}
        return {"swaps": list(self.champion.swaps), "shadow": shadow}

    def followers(self) -> list[ModelFollower]:
        return [self.champion] + ([self.shadow] if self.shadow is not None else [])


MODELS = web.AppKey("models", Models)
