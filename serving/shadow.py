"""Shadow scoring: a second model scores the users the champion answered, after the answer is sent.

``ShadowScorer.offer`` is called with each answered request's record when its
champion rows are written (after the answer went out). It picks the share of
users to shadow, deterministically: a user by ``user_id``, a user without one by
the request id (so the same user is in or out on every request). The picked
users wait in a queue bounded in users (SHADOW_QUEUE_USERS): when it is full,
the request's shadow work is dropped and counted, never waited for (as it is
while the shadow's scorer restarts). One task
takes the queue in calls of up to ``batch_users`` users to the shadow's scorer
and writes one row per user with ``role = 'shadow'`` and the champion row's
row_key, request id, user index and timestamp; a failed shadow call is logged as
rows with its status and error. The shadow's scorer runs at a lower CPU
priority (SHADOW_NICE), so on a busy machine the champion's calls go first.

While the shadow's alias points at the version serving as champion (after a
promotion), nothing is shadowed: it would compare the model with itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections import deque
from dataclasses import replace

from serving.core import RequestRecord, log_rows
from serving.log_writer import LogWriter
from serving.model_identity import ModelIdentity
from serving.scorer import SCORER_COLUMNS, ScorerFailed, ScorerUnavailable, to_scorer_columns
from serving.served_model import ServedModel

log = logging.getLogger("serving.shadow")


def chosen(user_ids: list, request_id: str, share: float) -> list[int]:
    """Positions of the users to shadow: a user is in when crc32 of its key (user_id, or the
    request id without one) falls in the lowest ``share`` of the 32-bit range."""
    if share >= 1.0:
        return list(range(len(user_ids)))
    bound = share * 2 ** 32
    request_in = zlib.crc32(request_id.encode("utf-8", "surrogatepass")) < bound
    return [i for i, user_id in enumerate(user_ids)
            if (zlib.crc32(user_id.encode("utf-8", "surrogatepass")) < bound if user_id is not None else request_in)]


class ShadowScorer:
    def __init__(self, writer: LogWriter, *, share: float, max_queue_users: int, batch_users: int = 2000):
        self.writer = writer
        self.share = share
        self.max_queue_users = max_queue_users
        self.batch_users = batch_users
        self.served: ServedModel | None = None  # set by the shadow's follower once a version answers
        self.queued_users = 0
        self.dropped_users = 0
        self.scored_users = 0
        self.failed_users = 0
        self._queue: deque[tuple[RequestRecord, list[int], ModelIdentity]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def use(self, served: ServedModel) -> None:
        self.served = served

    def offer(self, record: RequestRecord, status: int, champion: ModelIdentity) -> None:
        """Queue the chosen users of an answered request (off the request path: runs after the answer)."""
        served = self.served
        if (status != 200 or served is None or record.columns is None or not record.outputs
                or (served.identity.name, served.identity.version) == (champion.name, champion.version)):
            return
        picked = chosen(record.columns["user_id"].tolist(), record.request_id, self.share)
        if not picked:
            return
        if self.queued_users + len(picked) > self.max_queue_users or not served.ready:
            self.dropped_users += len(picked)  # full, or the shadow's scorer is restarting
            return
        self._queue.append((record, picked, champion))
        self.queued_users += len(picked)
        self._wake.set()

    def start(self) -> "ShadowScorer":
        self._task = asyncio.create_task(self._run(), name="shadow")
        return self

    async def stop(self, wait_s: float = 5.0) -> None:
        """Score what is queued for at most ``wait_s``; what is left is counted as dropped."""
        if self._task is None:
            return
        deadline = time.monotonic() + wait_s
        while self.queued_users and time.monotonic() < deadline and self.served is not None and self.served.ready:
            await asyncio.sleep(0.05)
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self.dropped_users += self.queued_users
        self.queued_users = 0
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft()]
                size = len(batch[0][1])
                while self._queue and size + len(self._queue[0][1]) <= self.batch_users:
                    batch.append(self._queue.popleft())
                    size += len(batch[-1][1])
                try:
                    await self._score(batch)
                except asyncio.CancelledError:  # stopped: a call cut off is shadow work dropped
                    self.dropped_users += size
                    raise
                except Exception:  # noqa: BLE001 - a bug here must not stop shadowing for good
                    log.exception("shadow scoring failed")
                finally:
                    self.queued_users -= size

    async def _score(self, batch: list[tuple[RequestRecord, list[int], ModelIdentity]]) -> None:
        served = self.served
        columns: dict[str, list] = {c: [] for c in SCORER_COLUMNS}
        for record, picked, _ in batch:
            sent = to_scorer_columns(record.columns)
            for c in SCORER_COLUMNS:
                values = sent[c]
                columns[c].extend(values[i] for i in picked)
        status, error, outputs, elapsed_ms = 200, None, [], None
        try:
            with served.using():
                outputs, elapsed_ms = await served.client.predict(columns)
        except ScorerUnavailable as failure:
            status, error = 503, str(failure)
        except ScorerFailed as failure:
            status, error = 502, str(failure)
        except asyncio.TimeoutError:
            status, error = 504, "the shadow model took too long"
        start = 0
        for record, picked, _ in batch:
            mine = outputs[start:start + len(picked)] if outputs else []
            start += len(picked)
            self._write(record, picked, mine, elapsed_ms, status, error, served.identity)
        if status == 200:
            self.scored_users += start
        else:
            self.failed_users += start

    def _write(self, record: RequestRecord, picked: list[int], outputs: list[dict], elapsed_ms, status: int,
               error: str | None, identity: ModelIdentity) -> None:
        full: list[dict] = [{}] * len(record.users)
        for i, output in zip(picked, outputs):
            full[i] = output
        shadow = replace(record, outputs=full, inference_ms=elapsed_ms, error=error, user_errors={})
        rows = log_rows(shadow, status, record.latency_ms(), identity, role="shadow")
        self.writer.submit(rows if len(picked) == len(rows) else [rows[i] for i in picked])
