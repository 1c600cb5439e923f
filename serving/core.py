"""The proxy's core: parse, validate, forward to the scorer, record. No HTTP in here.

The web layer (app.py) turns requests into calls on ``PredictionService`` and
maps the exceptions below to status codes. Every request it handles ends in
``PredictionService.record``, which turns it into one log row per user.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from revenue_model.contract import EVENT_COLUMNS, MAX_STRING_LENGTH, OUTPUT_COLUMNS, STRING_COLUMNS
from revenue_model.validation import InvalidUsers, validate_columns
from serving.db.log_rows import typed_fields
from serving.log_writer import ROW_BYTES, LogWriter
from serving.model_identity import ModelIdentity
from serving.scorer import to_scorer_columns
from serving.served_model import ServedModel
from serving.stored_input import CONTRACT_FIELDS, INPUT_BYTES_PER_JSON_BYTE, MARKER, cost, json_size, stored_input

# The most JSON a user's stored input takes (LOG_INPUT_MAX_BYTES): a valid user with only the
# contract's fields is always under it (7 strings of 200 characters, each at most 6 bytes escaped).
MAX_INPUT_BYTES = 16 * 1024


# How often the request first in line for room in the log queue looks again (a 10,000-user batch
# is written in about 0.2 s).
_LOG_ROOM_POLL_S = 0.02
# Requests of at most this many users never wait for room in the log queue (PredictionService.log_room).
LOG_ROOM_FREE_ROWS = 100


class RequestRejected(Exception):
    """A client's mistake: ``status`` (4xx), a short ``error`` code, a message, maybe problems."""

    retry_after: int | None = None  # seconds, for a 503 worth retrying (serving.read_queries)

    def __init__(self, status: int, error: str, message: str, problems: list[dict] | None = None):
        super().__init__(message)
        self.status, self.error, self.message, self.problems = status, error, message, problems

    def body(self) -> dict:
        out = {"error": self.error, "message": self.message}
        if self.problems is not None:
            out["problems"] = self.problems
        return out


class Overloaded(Exception):
    """More requests in flight than the service takes: answered 503 at once."""


@dataclass
class RequestRecord:
    """What one request did, filled in as it goes; becomes its log rows."""

    request_id: str                  # the client's X-Request-Id, or the server's when it sent none
    route: str
    # Made here for every HTTP request: the log's key, so each attempt of a retried request is its own row.
    attempt_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.perf_counter)
    timestamp: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    users: list | None = None        # as sent
    columns: dict | None = None      # validated
    outputs: list | None = None      # the scorer's, one dict per user
    inference_ms: float | None = None
    error: str | None = None
    user_errors: dict[int, str] = field(default_factory=dict)
    raw_body: str | None = None      # when the body had no users to speak of
    body_bytes: int = 0              # the body's size after decompression
    identity: ModelIdentity | None = None  # the version that answered (or was asked); None: no call made
    log_reserved: int = 0            # its rows counted ahead in the log queue (PredictionService.log_room)

    def latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000


# JSON values a body may hold per user allowed in a batch: a 10,000-user batch of the contract's
# fields holds about 11 per user. Counted before parsing: 8 MB of tiny values parse into hundreds of
# MB of objects and take seconds of the event loop.
VALUES_PER_USER = 32
# Memory of a request in flight, estimated per byte of body and per JSON value. Measured: RSS rose by
# about twice MAX_IN_FLIGHT_BYTES under floods of 8 MB bodies with 3 per byte (aiohttp's buffer and its
# copy, the parsed body, its JSON measured for the log, and what malloc keeps), by about once with 6.
BODY_COST = 4
VALUE_COST = 128


def count_json_values(body: bytes) -> int:
    """An upper bound on the array items and object fields in a JSON body, from its separators
    (a comma inside a string counts too); a short body is not looked at: a value takes 2 bytes."""
    if len(body) <= 65536:
        return len(body) // 2 + 1
    return body.count(b",") + body.count(b"{") + body.count(b"[") + 1


def parse_json(body: bytes) -> Any:
    """The request body as JSON; NaN and Infinity are let through so validation names the field."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestRejected(400, "invalid_json", f"the body is not valid UTF-8: {error}") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise RequestRejected(400, "invalid_json", "the body is nested too deeply") from None
    except ValueError as error:
        raise RequestRejected(400, "invalid_json", f"the body is not valid JSON: {error}") from None


def single_user(payload: Any) -> list:
    if not isinstance(payload, dict):
        raise RequestRejected(400, "invalid_input", "the body must be a JSON object with the user's fields")
    return [payload]


def batch_users(payload: Any) -> list:
    if not isinstance(payload, dict) or "users" not in payload:
        raise RequestRejected(400, "invalid_input", 'the body must be a JSON object with a "users" list',
                              [{"row": None, "field": "users", "reason": "is required"}])
    users = payload["users"]
    if not isinstance(users, list):
        raise RequestRejected(400, "invalid_input", '"users" must be a list',
                              [{"row": None, "field": "users", "reason": "must be a list"}])
    if not users:
        raise RequestRejected(400, "invalid_input", '"users" must not be empty',
                              [{"row": None, "field": "users", "reason": "must not be empty"}])
    return users


def invocation_users(payload: Any) -> list | None:
    """Users in any of MLflow's JSON input formats, for the log; None when there are none to see."""
    if not isinstance(payload, dict):
        return None
    if isinstance(payload.get("dataframe_split"), dict):
        split = payload["dataframe_split"]
        columns, data = split.get("columns"), split.get("data")
        if isinstance(columns, list) and isinstance(data, list):
            if not all(isinstance(c, str) for c in columns):
                raise RequestRejected(400, "invalid_input", "dataframe_split.columns must be a list of strings",
                                      [{"row": None, "field": "dataframe_split.columns",
                                        "reason": "not all strings"}])
            return [dict(zip(columns, row)) if isinstance(row, list) else row for row in data]
    for key in ("dataframe_records", "instances", "inputs"):
        value = payload.get(key)
        if isinstance(value, list):
            return value
        if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
            return [dict(zip(value, row)) for row in zip(*value.values())]
    return None


class PredictionService:
    def __init__(self, champion: ServedModel, writer: LogWriter, *, max_in_flight: int, max_users: int,
                 shadow=None, max_input_bytes: int = MAX_INPUT_BYTES, max_in_flight_bytes: int = 96 * 2**20,
                 log_wait_s: float = 5.0):
        """``champion``: the model answering now (replaced by the follower on a swap); ``shadow``: a
        ShadowScorer offered every answered request, or None."""
        self.champion = champion
        self.writer = writer
        self.max_in_flight = max_in_flight
        self.max_in_flight_bytes = max_in_flight_bytes
        self.max_users = max_users
        self.max_input_bytes = max_input_bytes
        self.shadow = shadow
        self.log_wait_s = log_wait_s
        self.log_reserved = 0  # rows of requests let through log_room and not recorded yet
        self._log_gate = asyncio.Lock()  # requests waiting for room in the log queue, in order
        self.in_flight = 0
        self.in_flight_bytes = 0

    @property
    def identity(self) -> ModelIdentity:
        """The version serving now (a request's own is ``RequestRecord.identity``)."""
        return self.champion.identity

    def admit(self, nbytes: int) -> None:
        """Take a request estimated to need ``nbytes`` of memory, or raise Overloaded: past
        ``max_in_flight`` requests, or ``max_in_flight_bytes`` of estimates (one request is always
        taken when none is in flight). Each admitted request is ``release``d with its estimate."""
        if self.in_flight >= self.max_in_flight:
            raise Overloaded(f"{self.in_flight} requests in flight")
        if self.in_flight and self.in_flight_bytes + nbytes > self.max_in_flight_bytes:
            raise Overloaded(f"{self.in_flight_bytes + nbytes} bytes in flight")
        self.in_flight += 1
        self.in_flight_bytes += nbytes

    def grow(self, nbytes: int) -> None:
        """Add to an admitted request's estimate (once its body is read), or raise Overloaded."""
        if self.in_flight > 1 and self.in_flight_bytes + nbytes > self.max_in_flight_bytes:
            raise Overloaded(f"{self.in_flight_bytes + nbytes} bytes in flight")
        self.in_flight_bytes += nbytes

    def release(self, nbytes: int) -> None:
        self.in_flight -= 1
        self.in_flight_bytes -= nbytes

    async def log_room(self, record: RequestRecord, rows: int) -> None:
        """Before scoring ``rows`` users: wait, at most ``log_wait_s`` in all (in line included),
        until they fit in half the log writer's queue with the rows of requests let through before
        them and not yet recorded, while the writer is draining; then count them in (``unreserve``
        when the request is recorded). Into an empty queue requests may take the whole bound, and
        the first goes whatever its size.

        Under load beyond what PostgreSQL stores, answers slow to its pace instead of rows going
        to the spill file, which costs the writer twice (written to disk, read back) and grows for
        as long as the load lasts. Requests wait their turn in order and only the first looks;
        a request of at most LOG_ROOM_FREE_ROWS users never waits (its rows cannot fill the
        queue, its latency matters), nor does any while the writer is not draining (database
        down or refusing the log: waiting would not bring room).
        """
        if rows > LOG_ROOM_FREE_ROWS and (self._log_gate.locked() or not self._log_fits(rows)):
            deadline = time.monotonic() + self.log_wait_s  # in line and looking, together
            try:
                await asyncio.wait_for(self._log_gate.acquire(), self.log_wait_s)
            except asyncio.TimeoutError:
                pass  # its whole wait spent in line: it goes on
            else:
                try:
                    while not self._log_fits(rows) and self.writer.draining and time.monotonic() < deadline:
                        await asyncio.sleep(_LOG_ROOM_POLL_S)
                finally:
                    self._log_gate.release()
        record.log_reserved = rows
        self.log_reserved += rows

    def _log_fits(self, rows: int) -> bool:
        """The rows fit: in half the queue with those queued and let through; or, the queue empty,
        in the whole of it (the writer then has nothing ahead of them); or nothing else is there."""
        reserved, writer = self.log_reserved, self.writer
        if writer.queued_rows == 0:
            return reserved == 0 or reserved + rows <= writer.max_rows
        return writer.has_room(reserved + rows)

    def unreserve(self, record: RequestRecord) -> None:
        """The request's rows are submitted to the writer (or will never be): no longer counted ahead."""
        self.log_reserved -= record.log_reserved
        record.log_reserved = 0

    def validate(self, record: RequestRecord, users: list) -> dict:
        """Validated columns of users, or RequestRejected: 413 over ``max_users`` (logged as one
        row: the users are not stored), else 400 listing every bad field."""
        if len(users) > self.max_users:
            record.raw_body = f"{len(users)} users"
            raise RequestRejected(413, "too_many_users",
                                  f"{len(users)} users is over the maximum of {self.max_users} per request",
                                  [{"row": None, "field": "users", "reason": f"more than {self.max_users} users"}])
        record.users = users
        try:
            record.columns = validate_columns(users)
        except InvalidUsers as error:
            for p in error.problems:
                record.user_errors.setdefault(p.row, f"{p.field} {p.reason}")
            raise RequestRejected(400, "invalid_input", str(error),
                                  [p.as_dict() for p in error.problems]) from None
        return record.columns

    async def predict(self, record: RequestRecord, users: list) -> list[dict]:
        """Validate and score users (in order); outputs carry the contract's four columns."""
        columns = self.validate(record, users)
        await self.log_room(record, len(users))
        # The model is taken once per request, and its identity with it: a swap meanwhile changes neither.
        served = self.champion
        record.identity = served.identity
        with served.using():
            record.outputs, record.inference_ms = await served.client.predict(to_scorer_columns(columns))
        return record.outputs

    async def passthrough(self, record: RequestRecord, body: bytes, content_type: str | None) -> tuple:
        """An /invocations body forwarded as is to the model serving now; (status, body, content type)."""
        await self.log_room(record, len(record.users or [None]))
        served = self.champion
        record.identity = served.identity
        with served.using():
            return await served.client.passthrough(body, content_type)

    def record(self, record: RequestRecord, status: int) -> None:
        identity = record.identity or self.identity
        inputs, input_bytes = stored_inputs(record, self.max_input_bytes)
        rows = log_rows(record, status, record.latency_ms(), identity, inputs)
        self.writer.submit(rows, len(rows) * ROW_BYTES + input_bytes)
        if self.shadow is not None:
            self.shadow.offer(record, status, identity)


def stored_inputs(record: RequestRecord, max_bytes: int = MAX_INPUT_BYTES) -> tuple[list, int]:
    """What the log keeps of each user as sent (serving.stored_input), one per row, and their
    estimated memory in bytes.

    A validated user with only the contract's fields is kept without a look: the validator bounds
    it, and the body it came in bounds the memory of all of them (a 10,000-user batch pays nothing).
    """
    if not record.users:
        if record.raw_body is None:
            return [None], 0
        text, size = record.raw_body, json_size(record.raw_body)
        if size <= max_bytes - 64:
            return [{"body": text}], cost(size, 2)
        return [{"body": text[:max(0, max_bytes - 1024) // 6], MARKER: {"json_bytes": size}}], cost(max_bytes, 4)
    validated = record.columns is not None
    inputs, input_bytes, plain = [], 0, False
    for user in record.users:
        if validated and type(user) is dict and user.keys() <= CONTRACT_FIELDS:
            inputs.append(user)
            plain = True
        else:
            kept, nbytes = stored_input(user, max_bytes)
            inputs.append(kept)
            input_bytes += nbytes
    if plain:
        input_bytes += INPUT_BYTES_PER_JSON_BYTE * (record.body_bytes or len(record.users) * 1024)
    return inputs, input_bytes


def log_rows(record: RequestRecord, status: int, latency_ms: float, identity: ModelIdentity,
             inputs: list | None = None, *, role: str = "champion") -> list[tuple]:
    """One row per user (serving.db.log_rows.ROW_COLUMNS order); one row when there were no users.
    ``inputs``: what to store of each user as sent (default: ``stored_inputs(record)``).

    Built column by column: value by value, a 10,000-user batch took 65 ms of the event loop, not 20.
    """
    users = record.users if record.users else [None]
    if inputs is None:
        inputs = stored_inputs(record)[0]
    fields = _fields(record, users)
    outputs = (record.outputs or [])[:len(users)]
    outputs += [{}] * (len(users) - len(outputs))
    scores = [_numbers([output.get(c) for output in outputs]) for c in OUTPUT_COLUMNS]
    typed = zip(fields["user_id"], zip(*(fields[c] for c in _ROW_FIELDS), *scores))
    rows = []
    for i, (input_data, (user_id, values)) in enumerate(zip(inputs, typed)):
        error = (record.user_errors.get(i) or record.error) if status != 200 else None
        rows.append((f"{record.attempt_id}:{i}", record.timestamp, record.request_id, i, role, user_id,
                     record.route, status, error, identity.name, identity.version,
                     *values, record.inference_ms, latency_ms, input_data))
    return rows


# The user's fields in a log row, after user_id and before the four outputs.
_ROW_FIELDS = ("country", "country_region", "source", "platform", "device_family", "os_version", *EVENT_COLUMNS)


def _fields(record: RequestRecord, users: list) -> dict[str, list]:
    """Typed column values, one per user: validated when validation passed, else whatever was
    sent and fits."""
    if record.columns is not None:
        return typed_fields(record.columns)
    sent = [user if isinstance(user, dict) else {} for user in users]
    # Unvalidated strings may be any length: one character over the contract's limit shows that they were.
    out = {c: [v[:MAX_STRING_LENGTH + 1] if isinstance(v := user.get(c), str) else None for user in sent]
           for c in STRING_COLUMNS}
    out.update({c: _numbers([user.get(c) for user in sent]) for c in EVENT_COLUMNS})
    return out


def _numbers(values: list) -> list:
    """``_number`` of each; finite floats, nearly all of them, kept without a call."""
    return [v if type(v) is float and v - v == 0.0 else _number(v) for v in values]


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:
        return None
    return value if math.isfinite(value) else None
