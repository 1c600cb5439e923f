"""Writes log rows to PostgreSQL off the request path, and never loses one.

Requests hand rows to ``submit``; one thread takes them in batches and writes
them, each batch in one transaction: its first attempt by COPY (cheapest for
PostgreSQL, but it cannot skip a row already stored), anything that may be
stored already by an INSERT that skips stored rows: a batch retried after any
error (its commit may have succeeded unacknowledged), the spill file's replay,
rows written one by one. Memory is bounded in rows and in bytes: past
``max_rows`` or ``max_bytes`` queued, ``submit`` appends to the spill file
instead (serving.spill). While PostgreSQL is unreachable, or refuses the whole
log (no right to insert, read-only, a missing table: an alarm), the thread
moves batches to the spill file, and once it can write again it replays the
file before anything newer. Rows are idempotent in the database (``row_key``, made by
the server, with role and timestamp is unique), so a replay
interrupted half way and run again stores each row once. Only a row that
PostgreSQL refuses for what it holds, even with its input as one string, goes
to ``rejected.jsonl`` (serving.pg_errors says whose fault an error is).

The thread survives anything: an exception in a cycle is logged and the cycle
retried with backoff, holding on to its batch; should the thread end all the
same, a watchdog starts another within a second. ``alive`` goes to /health and
/metrics. ``stop`` writes or spills everything held, whatever state the thread
is in.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Sequence

from serving.db.connection import connect
from serving.db.log_rows import INPUT_DATA, ROW_COLUMNS, write_rows
from serving.db.partitions import Partitions
from serving.db.schema import SchemaMismatch, migrate
from serving.pg_errors import CONNECTION, ROW, classify, describe
from serving.spill import SpillFile, encode_row

log = logging.getLogger("serving.log_writer")

# Memory of one queued row without its input, measured with tracemalloc (tests/serving/test_core.py).
ROW_BYTES = 1024
# A writer that has written nothing for this long, and is not in the middle of a write, is not
# draining (database down or refusing the log): waiting for room then helps no request (serving.core).
DRAINING_S = 2.0


class LogWriter:
    def __init__(self, database_url: str, spill_dir: Path, *, max_rows: int = 40_000,
                 max_bytes: int = 256 * 2**20, batch_rows: int = 5000, retry_s: float = 1.0,
                 max_backoff_s: float = 30.0, linger_s: float = 0.5, stall_s: float = 120.0):
        self.database_url = database_url
        self.spill = SpillFile(Path(spill_dir), len(ROW_COLUMNS))
        self.spill_path = self.spill.path
        # Rows PostgreSQL refuses for their own content even in degraded form: kept here, never replayed.
        self.rejected_path = Path(spill_dir) / "rejected.jsonl"
        self.max_rows, self.max_bytes, self.batch_rows = max_rows, max_bytes, batch_rows
        self.retry_s, self.max_backoff_s = retry_s, max_backoff_s
        # Rows wait up to this long for company: one transaction per batch, not per request,
        # leaves the event loop and PostgreSQL (on the same cores) more time for requests.
        self.linger_s = linger_s
        self.stall_s = stall_s  # a cycle longer than this (a hung connection) counts as not alive
        self._queue: deque[tuple[list, int]] = deque()  # (rows, their bytes) per submit
        self._rows = self._bytes = 0
        self._in_hand: list | None = None  # the batch being written: never only in a local variable
        self._in_hand_tried = False  # once tried, it may be stored: never COPYed again
        self._wake = threading.Condition()
        self._stopping = False
        self._started = False
        self._connection = None
        self._partitions = Partitions()
        self._next_connect = 0.0
        self._backoff = 0.0        # after an exception in a cycle
        self._alarm_backoff = 0.0  # while the database refuses the log
        self._stopped = threading.Event()
        self._beat = self._drained = time.monotonic()
        self._write_started: float | None = None  # while write_rows runs
        self._thread = self._new_thread()
        self._watchdog = threading.Thread(target=self._watch, name="log-writer-watchdog", daemon=True)
        self.rows_written = self.rows_spilled = self.rows_rejected = 0
        self.errors = self.restarts = self.alarms = 0
        self.alarm: str | None = None  # the whole log is refused: what PostgreSQL said
        self.database_up = False

    # -- called from the request path -------------------------------------------------
    def submit(self, rows: Sequence[tuple], nbytes: int | None = None) -> None:
        """Queue rows (``nbytes``: their memory, ROW_BYTES each by default); never blocks on
        the database, never drops a row."""
        nbytes = len(rows) * ROW_BYTES if nbytes is None else nbytes
        with self._wake:
            if self._rows + len(rows) <= self.max_rows and self._bytes + nbytes <= self.max_bytes:
                self._queue.append((list(rows), nbytes))
                self._rows += len(rows)
                self._bytes += nbytes
                self._wake.notify()
                return
        try:
            self.spill.append(rows)  # memory bound reached: straight to disk
            self.rows_spilled += len(rows)
        except OSError:  # the disk refuses too: over the bound in memory rather than lost
            log.exception("the spill file refused %d rows; they are queued beyond the bound", len(rows))
            with self._wake:
                self._queue.append((list(rows), nbytes))
                self._rows += len(rows)
                self._bytes += nbytes
                self._wake.notify()

    def has_room(self, rows: int) -> bool:
        """``rows`` more would keep the queue within half its bound (in rows; its bytes are under half)."""
        return (self._rows + rows) * 2 <= self.max_rows and self._bytes * 2 < self.max_bytes

    @property
    def draining(self) -> bool:
        """Rows are going into PostgreSQL now: connected, and a batch written (queued or replayed
        from the spill file) within DRAINING_S, or one being written for less than ``stall_s`` (a
        slow write is progress; a hung connection, or a database down, is not)."""
        now, started = time.monotonic(), self._write_started
        return self.database_up and self.alarm is None and (
            now - self._drained < DRAINING_S or (started is not None and now - started < self.stall_s))

    @property
    def queued_rows(self) -> int:
        return self._rows

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    @property
    def spilled_rows_pending(self) -> int:
        return self.spill.pending_rows()

    @property
    def alive(self) -> bool:
        """The thread runs and its last cycle began less than ``stall_s`` ago."""
        return self._thread.is_alive() and time.monotonic() - self._beat < self.stall_s

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> "LogWriter":
        self.spill.path.parent.mkdir(parents=True, exist_ok=True)
        self._started = True
        self._thread.start()
        self._watchdog.start()
        return self

    def supervise(self) -> None:
        """Start a new thread if the writer's ended (it should not: this is the last resort)."""
        if self._started and not self._stopping and not self._thread.is_alive():
            self.restarts += 1
            log.error("the log writer thread ended; starting another (restart %d)", self.restarts)
            self._thread = self._new_thread()
            self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write (or spill) everything held, then stop; whatever state the thread is in."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._stopped.set()
        if not self._thread.is_alive():  # never started, or ended: one more thread drains the queue
            self._thread = self._new_thread()
            self._thread.start()
        self._thread.join(timeout_s)
        left = self._take(self._rows) + (self._in_hand or [])
        if left:  # the thread hangs on the database or ended again: keep the rows on disk
            log.warning("stopping with %d rows not written; spilling them", len(left))
            try:
                self.spill.append(left)
                self.rows_spilled += len(left)
            except OSError:
                log.critical("%d log rows could be neither written nor spilled", len(left), exc_info=True)
        if not self._thread.is_alive() and self._connection is not None:
            self._connection.close()

    # -- the writer thread ----------------------------------------------------------------
    def _new_thread(self) -> threading.Thread:
        return threading.Thread(target=self._run, name="log-writer", daemon=True)

    def _watch(self) -> None:
        while not self._stopped.wait(1.0):
            self.supervise()

    def _run(self) -> None:
        # Requests first: the writer only has to keep up on average. Measured with the wider
        # batching window, single-user p50 went from 6.1 to 4.3-5.3 ms. (Linux: per-thread nice.)
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except (AttributeError, OSError):
            pass
        while True:
            self._beat = time.monotonic()
            with self._wake:  # no I/O under this lock: submit() takes it on the request path
                if not self._queue and self._in_hand is None and not self._stopping:
                    self._wake.wait(timeout=self.retry_s)
                stopping = self._stopping
            if self._queue and self._rows < self.batch_rows and not stopping:
                time.sleep(self.linger_s)  # not a wait on the condition: each submit() would end it
            try:
                self._cycle()
                self._backoff = 0.0
            except Exception:
                self.errors += 1
                self._backoff = min(max(2 * self._backoff, self.retry_s), self.max_backoff_s)
                log.exception("log writer cycle failed (%d so far); retrying in %.1f s with its rows",
                              self.errors, self._backoff)
                if stopping:
                    return  # stop() spills what is left
                with self._wake:
                    self._wake.wait(timeout=self._backoff)
            if stopping and not self._queue and self._in_hand is None:
                return

    def _cycle(self) -> None:
        """Replay the spill file, then write one batch (or spill it); raises on anything unexpected,
        the batch still in hand."""
        if self._in_hand is None:
            self._in_hand = self._take(self.batch_rows)
            self._in_hand_tried = False
        batch = self._in_hand
        if self._connected() and self.spill.replay(self._write, chunk_rows=self.batch_rows, beat=self._pulse):
            fresh, self._in_hand_tried = not self._in_hand_tried, True
            if batch and not self._write(batch, fresh=fresh):
                self._spill(batch)
            else:  # written, or nothing queued
                self._drained = time.monotonic()
        elif batch:
            self._spill(batch)
        self._in_hand = None

    def _pulse(self) -> None:
        self._beat = time.monotonic()

    def _take(self, limit: int) -> list:
        taken: list = []
        with self._wake:
            while self._queue and len(taken) < limit:
                rows, nbytes = self._queue[0]
                room = limit - len(taken)
                if len(rows) <= room:
                    self._queue.popleft()
                    part = nbytes
                else:
                    part = nbytes * room // len(rows)
                    self._queue[0] = (rows[room:], nbytes - part)
                    rows = rows[:room]
                taken += rows
                self._bytes -= part
            self._rows -= len(taken)
        return taken

    def _spill(self, rows: list) -> None:
        self.spill.append(rows)
        self.rows_spilled += len(rows)

    def _connected(self) -> bool:
        if self._connection is not None:
            return True
        if time.monotonic() < self._next_connect:
            return False
        connection = None
        try:
            connection = connect(self.database_url, timeout_s=2)
            migrate(connection)  # also after a database was recreated
        except Exception as error:  # noqa: BLE001 - every failure here means "spill and retry"
            if connection is not None:
                try:
                    connection.close()
                except Exception:  # noqa: BLE001
                    pass
            if isinstance(error, SchemaMismatch):  # rows stay in the spill file until a person fixes it
                log.error("the database's layout cannot be used; rows wait in %s: %s", self.spill_path, error)
            self._failed(error, classify(error))  # SchemaMismatch: a whole-database error, an alarm
            return False
        self._connection = connection
        self._partitions.forget()
        self.database_up = True
        log.info("connected to PostgreSQL")
        return True

    def _write(self, rows: list, *, fresh: bool = False) -> bool:
        """True when the rows are stored (or set aside as bad); False when they must be spilled.
        ``fresh``: never tried before, so none can be stored yet (see write_rows)."""
        try:
            self._store(rows, fresh=fresh)
        except Exception as error:  # noqa: BLE001 - classified: nothing here may end the thread
            kind = classify(error)
            if kind != ROW:
                self._failed(error, kind)
                return False
            if fresh:  # rolled back: nothing stored. Maybe rows stored already (23505): skipped
                log.warning("COPY refused a batch of %d rows (%s); inserting it", len(rows), describe(error))
                self._rollback()
                return self._connection is not None and self._write(rows)
            # The database takes rows but not one of these: it must not hold back the others.
            log.error("PostgreSQL refused a batch of %d rows (%s); writing them one by one",
                      len(rows), describe(error))
            self._rollback()
            return all(self._write_alone(row) for row in rows)
        self.rows_written += len(rows)
        self._clear_alarm()
        return True

    def _store(self, rows: list, *, fresh: bool = False) -> None:
        """``write_rows``, known as a write in progress while it runs and as progress once done."""
        self._write_started = time.monotonic()
        try:
            write_rows(self._connection, rows, self._partitions, fresh=fresh)
        finally:
            self._write_started = None
        self._drained = time.monotonic()

    def _write_alone(self, row: tuple) -> bool:
        if self._connection is None:  # a rollback before this one failed
            return False
        for attempt in (row, _degraded(row)):
            try:
                self._store([attempt])
                self.rows_written += 1
                return True
            except Exception as error:  # noqa: BLE001
                kind = classify(error)
                if kind != ROW:
                    self._failed(error, kind)
                    return False
                self._rollback()
                log.error("row %s refused: %s", row[0], describe(error))
        with self.rejected_path.open("ab") as f:
            f.write(encode_row(row))
        self.rows_rejected += 1
        return True

    def _failed(self, error: BaseException, kind: str) -> None:
        """Drop the connection and retry later: soon after a connection error, with a growing
        backoff (and an alarm) when the database refuses the whole log."""
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # noqa: BLE001
                pass
        self._connection = None
        if kind == CONNECTION:
            if self.database_up:
                log.warning("PostgreSQL is unreachable, spilling rows to %s: %s", self.spill_path, describe(error))
            self.database_up = False
            self._next_connect = time.monotonic() + self.retry_s
            return
        self.alarm = describe(error)
        self.alarms += 1
        self._alarm_backoff = min(max(2 * self._alarm_backoff, self.retry_s), self.max_backoff_s)
        self._next_connect = time.monotonic() + self._alarm_backoff
        log.error("ALARM: PostgreSQL refuses the prediction log (%s); rows are kept in %s, retrying in "
                  "%.1f s", self.alarm, self.spill_path, self._alarm_backoff)

    def _clear_alarm(self) -> None:
        self.database_up = True
        self._alarm_backoff = 0.0
        if self.alarm is not None:
            log.warning("PostgreSQL takes the prediction log again (the alarm was: %s)", self.alarm)
            self.alarm = None

    def _rollback(self) -> None:
        try:
            self._connection.rollback()
        except Exception as error:  # noqa: BLE001
            self._failed(error, CONNECTION)


def _degraded(row: tuple) -> tuple:
    """The row with its input kept as one JSON string, which PostgreSQL always takes."""
    row = list(row)
    row[INPUT_DATA] = {"unparsed_input": repr(row[INPUT_DATA])}
    return tuple(row)
