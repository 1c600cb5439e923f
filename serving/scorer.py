"""The client that batches calls to MLflow's scoring server (kept up by scorer_supervisor.py).

``ScorerClient`` sends users to /invocations (as MLflow's "inputs" JSON, or Parquet from
PARQUET_FROM_ROWS users: ``scorer_body``). A scoring call costs about
2 ms whatever the number of rows (JSON to DataFrame, schema enforcement), so
concurrent requests are gathered: while a call is in flight, new requests
wait and go together in the next one. An idle service sends at once; a busy
one sends fewer, larger calls (the adaptive batching of Triton, BentoML and
Ray Serve, applied to the hop to the scorer). While the supervisor says the
scorer is not ready, calls fail fast (ScorerUnavailable: 503).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from revenue_model.contract import FEATURE_INPUTS, STRING_COLUMNS
from serving.scorer_http import ScorerConnectionError
from serving.scorer_supervisor import ScorerSupervisor

SCORER_COLUMNS = list(FEATURE_INPUTS)
STRING_INPUTS = frozenset(STRING_COLUMNS)
# MLflow's scoring server reads this content type with pandas.read_parquet (MLflow 2.x and 3.x).
PARQUET = "application/vnd.apache.parquet"
# From this many users a call goes as Parquet, below it as JSON: Parquet's fixed cost (about 3 ms for
# one user, writing and reading the file) outweighs what it saves per user below 1,000 or so
# (scorer CPU per call, JSON / Parquet: 100 users 7.4 / 10.1 ms, 1,000 45.7 / 43.3, 10,000 404 / 356).
PARQUET_FROM_ROWS = 1000
_ARROW_TYPES = {c: pa.string() if c in STRING_INPUTS else pa.float64() for c in SCORER_COLUMNS}


class ScorerUnavailable(Exception):
    """The scoring server is down or restarting."""


class ScorerFailed(Exception):
    def __init__(self, status: int, body: str):
        super().__init__(f"scorer answered {status}: {body[:500]}")
        self.status = status
        self.body = body


@dataclass
class _Pending:
    columns: dict[str, list]
    rows: int
    future: asyncio.Future


def to_scorer_columns(columns: dict) -> dict[str, list]:
    """Validated columns as MLflow "inputs" lists.

    Missing strings are sent as "": MLflow turns null in a string column of "inputs" into the
    text "None" (an unseen category), while "" means missing to the model, as it does here.
    """
    out = {}
    for c in SCORER_COLUMNS:
        values = columns[c].tolist()
        out[c] = [v if v is not None else "" for v in values] if c in STRING_INPUTS else values
    return out


def to_scorer_body(columns: dict) -> tuple[bytes, str]:
    """Validated columns as the body of a call to /invocations, and its content type."""
    return scorer_body(to_scorer_columns(columns))


def scorer_body(columns: dict[str, list]) -> tuple[bytes, str]:
    """{column: values} (``to_scorer_columns``'s) as the body of a call, and its content type."""
    if len(columns[SCORER_COLUMNS[0]]) >= PARQUET_FROM_ROWS:
        return parquet_body(columns), PARQUET
    # MLflow's "inputs" (column lists) parses about 1.3 ms faster than "dataframe_split".
    return orjson.dumps({"inputs": columns}), "application/json"


def parquet_body(columns: dict[str, list]) -> bytes:
    """{column: values} (``to_scorer_columns``'s) as a Parquet file, typed: strings as strings,
    events as float64 (None as null, read back as NaN).

    Not JSON: MLflow parses a JSON body with the standard library, deep-copies it and turns each
    column into a NumPy array, 5-7 CPU ms per 1,000 users; pyarrow writes and pandas reads these
    columns in C for about 1 (benchmarks/answer_path.py), and the model's validator takes a
    DataFrame's object columns faster than NumPy's fixed-width strings. Parquet keeps every
    value as it is, unlike CSV (whose reader takes "NA" for missing and "10.0" for a number).
    """
    table = pa.table({c: pa.array(columns[c], type=_ARROW_TYPES[c]) for c in SCORER_COLUMNS})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="none")  # loopback: compressing costs more than it saves
    return sink.getvalue().to_pybytes()


class ScorerClient:
    def __init__(self, supervisor: ScorerSupervisor, *, lanes: int = 1, max_batch_rows: int = 2000):
        self.supervisor = supervisor
        self.http = supervisor.http
        self.lanes = lanes
        self.max_batch_rows = max_batch_rows
        self._pending: deque[_Pending] = deque()
        self._busy = 0

    async def predict(self, columns: dict[str, list]) -> tuple[list[dict], float]:
        """Outputs for users given as {column: values} (SCORER_COLUMNS), and the call's duration in ms.

        Missing strings must be "" and missing numbers None: see ``to_scorer_columns``.
        """
        if not self.supervisor.ready:
            raise ScorerUnavailable("the scoring server is restarting")
        item = _Pending(columns, len(columns[SCORER_COLUMNS[0]]), asyncio.get_running_loop().create_future())
        if self._busy < self.lanes:  # a free lane (and so nothing waiting): call from this task, at once
            self._busy += 1
            try:
                await self._send([item])
            finally:
                self._lane_freed()
        else:
            self._pending.append(item)
        return await item.future

    def _lane_freed(self) -> None:
        if self._pending:
            asyncio.create_task(self._drain())  # the lane goes on with what arrived meanwhile
        else:
            self._busy -= 1

    async def _drain(self) -> None:
        try:
            batch, size = [], 0
            while self._pending and (not batch or size + self._pending[0].rows <= self.max_batch_rows):
                item = self._pending.popleft()
                batch.append(item)
                size += item.rows
            await self._send(batch)
        finally:
            self._lane_freed()

    async def _send(self, batch: list[_Pending]) -> None:
        if len(batch) == 1:
            columns = batch[0].columns
        else:
            columns = {c: [v for item in batch for v in item.columns[c]] for c in SCORER_COLUMNS}
        started = time.perf_counter()
        try:
            predictions = await self._post(*scorer_body(columns))
        except Exception as error:  # every waiter learns what happened to its call
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        start = 0
        for item in batch:
            if not item.future.done():
                item.future.set_result((predictions[start:start + item.rows], elapsed_ms))
            start += item.rows

    async def _post(self, body: bytes, content_type: str) -> list[dict]:
        status, payload, _ = await self._invocations(body, content_type)
        if status != 200:
            raise ScorerFailed(status, payload.decode("utf-8", "replace"))
        return orjson.loads(payload)["predictions"]

    async def passthrough(self, body: bytes, content_type: str | None) -> tuple[int, bytes, str]:
        """Forward an /invocations request as is; (status, body, content type)."""
        if not self.supervisor.ready:
            raise ScorerUnavailable("the scoring server is restarting")
        return await self._invocations(body, content_type)

    async def _invocations(self, body: bytes, content_type: str | None) -> tuple[int, bytes, str]:
        try:
            return await self.http.request("POST", "/invocations", body, content_type)
        except ScorerConnectionError as error:
            raise ScorerUnavailable(f"the scoring server did not answer: {error}") from error
