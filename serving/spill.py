"""The spill file: log rows kept on local disk while PostgreSQL cannot take them.

One row per line, a JSON array in ``ROW_COLUMNS`` order, appended and fsynced.
Anything a row can hold can be written: lone surrogates (a client's
``"\\ud800"``), NaN and Infinity inside the input, integers past 64 bits.

Replay moves the file aside under a short lock (``predictions.replay.jsonl``)
and streams that copy in chunks, so appends never wait for the database and
memory holds one chunk, never the file. A line that is not a row (torn by a
kill -9 during a write, or damaged on disk) is moved to ``corrupt.jsonl`` for
a person to look at, and the rest is replayed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator, Sequence

import orjson

log = logging.getLogger("serving.spill")

# A chunk of replay holds at most this many bytes of lines (and at most the writer's batch of rows).
CHUNK_BYTES = 8 * 1024 * 1024
# A longer line is not a row this service wrote (a user's stored input is capped far below it):
# it is set aside in pieces, never read whole.
MAX_LINE_BYTES = 16 * 1024 * 1024


def encode_row(row: Sequence) -> bytes:
    """One spill line. orjson when it writes the row exactly; else json, which escapes what
    orjson refuses (lone surrogates, huge integers) and keeps NaN and Infinity."""
    if all(_exact_in_orjson(v) for v in row):
        try:
            return orjson.dumps(row) + b"\n"
        except orjson.JSONEncodeError:
            pass
    return json.dumps(row, ensure_ascii=True, default=_iso).encode("ascii") + b"\n"


def decode_line(line: bytes, width: int) -> tuple | None:
    """The row a spill line holds, or None when the line is not a row of ``width`` columns."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        try:  # NaN, Infinity and lone surrogates, which orjson does not read
            value = json.loads(line.decode("ascii"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None
    if not isinstance(value, list) or len(value) != width:
        return None
    return tuple(value)


def _exact_in_orjson(value) -> bool:
    """False for what orjson would write differently from the value: a non-finite float
    (orjson writes null), or a container holding one (not looked into: json handles it)."""
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is dict:
        return all(type(v) is not float or math.isfinite(v) for v in value.values()) and \
            all(type(v) not in (dict, list) for v in value.values())
    return type(value) is not list


def _iso(value):
    return value.isoformat() if isinstance(value, datetime) else str(value)


class SpillFile:
    def __init__(self, directory: Path, width: int):
        self.path = Path(directory) / "predictions.jsonl"
        self.replay_path = Path(directory) / "predictions.replay.jsonl"
        self.corrupt_path = Path(directory) / "corrupt.jsonl"
        self.width = width                  # columns of a row
        self.lines_set_aside = 0
        self._lock = threading.Lock()       # appends and the move aside; never held across database calls
        self._replayed_to = 0               # bytes of the replay file already stored

    def append(self, rows: Sequence[Sequence]) -> None:
        """Write rows to disk (fsynced) or raise OSError; a torn line before them is ended first."""
        if not rows:
            return
        data = b"".join(encode_row(row) for row in rows)
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("ab+") as f:
                if f.tell() > 0:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":  # a kill -9 or a full disk cut the last write short
                        data = b"\n" + data
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

    def pending_bytes(self) -> int:
        return sum(p.stat().st_size for p in (self.replay_path, self.path) if p.exists())

    def pending_rows(self) -> int:
        """Lines waiting for replay (counted by streaming the files)."""
        count = 0
        for path in (self.replay_path, self.path):
            try:
                with path.open("rb") as f:
                    count += sum(1 for line in iter(lambda: f.readline(MAX_LINE_BYTES), b"") if line.strip())
            except FileNotFoundError:
                pass
        return count

    def replay(self, write: Callable[[list[tuple]], bool], *, chunk_rows: int,
               beat: Callable[[], None] = lambda: None) -> bool:
        """Hand spilled rows, oldest first, to ``write`` (True when stored) in chunks of at most
        ``chunk_rows`` rows and CHUNK_BYTES; True when nothing is left to replay."""
        while True:
            if not self.replay_path.exists():
                with self._lock:
                    if not self.path.exists() or self.path.stat().st_size == 0:
                        return True
                    os.replace(self.path, self.replay_path)  # new appends start a new file
                self._replayed_to = 0
            if not self._replay_file(write, chunk_rows, beat):
                return False
            self.replay_path.unlink()
            log.info("replayed the spill file")

    def _replay_file(self, write, chunk_rows: int, beat) -> bool:
        with self.replay_path.open("rb") as f:
            f.seek(self._replayed_to)
            while True:
                rows, bad, size = [], [], 0
                for line, whole in _lines(f):
                    size += len(line)
                    row = decode_line(line, self.width) if whole else None
                    if row is not None:
                        rows.append(row)
                    elif line.strip():
                        bad.append(line)
                    if len(rows) >= chunk_rows or size >= CHUNK_BYTES:
                        break
                if not rows and not bad:
                    return True
                if rows and not write(rows):
                    return False  # the file stays; this chunk is read again next time
                self._set_aside(bad, f)
                self._replayed_to = f.tell()
                beat()

    def _set_aside(self, lines: list[bytes], f) -> None:
        if not lines:
            return
        with self.corrupt_path.open("ab") as out:
            for line in lines:
                out.write(line if line.endswith(b"\n") else line + b"\n")
            out.flush()
            os.fsync(out.fileno())
        self.lines_set_aside += len(lines)
        log.error("%d spill line(s) that are not rows were set aside in %s (before byte %d of %s)",
                  len(lines), self.corrupt_path, f.tell(), self.replay_path)


def _lines(f) -> Iterator[tuple[bytes, bool]]:
    """(line, whole) for each line of ``f``: a line longer than MAX_LINE_BYTES comes in pieces
    (not whole), none of which is a row."""
    whole = True
    while line := f.readline(MAX_LINE_BYTES):
        ends = line.endswith(b"\n")
        yield line, whole and (ends or len(line) < MAX_LINE_BYTES)
        whole = ends
