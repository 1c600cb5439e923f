r"""Log rows as the data of ``COPY predictions FROM STDIN`` in PostgreSQL's text format.

Text format: one line per row, values separated by tabs, ``\N`` for NULL, and a backslash,
tab, newline or carriage return inside a value written as ``\\``, ``\t``, ``\n``, ``\r``.
https://www.postgresql.org/docs/16/sql-copy.html

Every value is stored as the INSERT of one JSONB document (serving/db/log_rows.py) stores it:
numbers and timestamps are the very text orjson writes in that document (NaN and Infinity as
NULL), NUL and lone surrogates become the six characters of their escape, inputs are
``to_json``'s JSON. Built column by column, in C where it can be: most columns hold one value
for all the rows of a request (encoded once), and strings almost never need escaping (a
column's joined text is searched once).
"""

from __future__ import annotations

import re
from functools import lru_cache
from operator import countOf
from typing import Sequence

import orjson

from serving.db.log_json import mapped, scrubbed, to_json, without_nul

# Column kinds (``copy_data``'s ``kinds``).
TEXT, TIMESTAMP, NUMBER, JSON = "text", "timestamp", "number", "json"

NULL = "\\N"
_NEGATIVE_ZERO = re.compile(r"-0\.0(?=[,\]]|$)")
_SPECIAL = "\\\t\n\r\x00"  # to escape in a value (NUL: to write as PostgreSQL stores it)


class Unsupported(Exception):
    """A value of a type this encoder does not write (the caller uses the INSERT path instead)."""


def copy_data(rows: Sequence[tuple], kinds: Sequence[str]) -> bytes:
    """The UTF-8 data of COPY's text format for ``rows`` (tuples of ``len(kinds)`` values);
    raises Unsupported for a value that is not str, number, datetime or None as its kind wants."""
    if not rows:
        return b""
    try:
        return _text(rows, tuple(kinds)).encode()
    except UnicodeEncodeError:  # lone surrogates, from a client's "\ud800"
        return _text([mapped(row, scrubbed) for row in rows], tuple(kinds)).encode()


def _text(rows: Sequence[tuple], kinds: tuple) -> str:
    # Each part is one str shared by all the rows (consecutive ones joined) or a list of one per row.
    parts: list = []
    for start, stop, kind in _groups(kinds):
        part = _ENCODERS[kind](rows, start, stop)
        if type(part) is str and parts and type(parts[-1]) is str:
            parts[-1] += "\t" + part
        else:
            parts.append(part)
    if all(type(part) is str for part in parts):
        return ("\t".join(parts) + "\n") * len(rows)
    columns = [[part] * len(rows) if type(part) is str else part for part in parts]
    return "\n".join(map("\t".join, zip(*columns))) + "\n"


@lru_cache(maxsize=8)
def _groups(kinds: tuple) -> list[tuple[int, int, str]]:
    """(start, stop, kind) of each column, consecutive number columns as one group."""
    groups: list[tuple[int, int, str]] = []
    for i, kind in enumerate(kinds):
        if kind == NUMBER and groups and groups[-1][2] == NUMBER and groups[-1][1] == i:
            groups[-1] = (groups[-1][0], i + 1, NUMBER)
        else:
            groups.append((i, i + 1, kind))
    return groups


def _special(text: str) -> bool:
    return any(c in text for c in _SPECIAL)  # five C searches: a regular expression took 50x longer


def _text_column(rows: Sequence[tuple], i: int, _stop: int) -> str | list[str]:
    values = [row[i] for row in rows]
    first = values[0]
    if values.count(first) == len(values):  # one value for the request's rows (nearly always one object)
        return _text_value(first)
    present = [v for v in values if v is not None] if None in values else values
    try:
        joined = "".join(present)
    except TypeError:
        raise Unsupported(f"column {i} holds a value that is not a string") from None
    if _special(joined):
        return [_text_value(v) for v in values]
    return [NULL if v is None else v for v in values] if present is not values else values


def _text_value(value: str | None) -> str:
    if value is None:
        return NULL
    if type(value) is not str:
        raise Unsupported("a text column holds a value that is not a string")
    return _escaped(value) if _special(value) else value


def _escaped(text: str) -> str:
    # NUL: the six characters \u0000, as PostgreSQL stores it from the JSON document.
    return (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
            .replace("\x00", "\\\\u0000"))


def _number_columns(rows: Sequence[tuple], start: int, stop: int) -> list[str]:
    """Consecutive number columns: orjson's text of each row's numbers, as in the INSERT's document
    (the shortest text that reads back exactly), in one call for all the rows."""
    try:
        if stop - start == 1:
            body = orjson.dumps([row[start] for row in rows]).decode()[1:-1]  # 1.5,null,2.0
        else:  # [1.5,null],[2.0,3]
            body = orjson.dumps([row[start:stop] for row in rows]).decode()[2:-2]
    except orjson.JSONEncodeError:  # an integer past 64 bits
        raise Unsupported(f"columns {start}-{stop - 1} hold an integer past 64 bits") from None
    # Numbers, null, commas and the rows' brackets only:
    if '"' in body or "t" in body or "f" in body or "{" in body or body.count("[") != (len(rows) - 1) * (stop - start > 1):
        raise Unsupported(f"columns {start}-{stop - 1} hold a value that is not a number")
    if "null" in body:  # None, NaN, Infinity: NULL, as from the document
        body = body.replace("null", NULL)
    if "-0.0" in body:  # the document's numbers pass through jsonb's numeric, which has no -0
        body = _NEGATIVE_ZERO.sub("0.0", body)
    if stop - start == 1:
        return body.split(",")
    return body.replace(",", "\t").split("]\t[")


def _timestamp_column(rows: Sequence[tuple], i: int, _stop: int) -> str | list[str]:
    """orjson's RFC 3339 text of each datetime, as in the document (each distinct one written once);
    the ISO text a spill file keeps, as it is."""
    values = [row[i] for row in rows]
    if values.count(values[0]) == len(values):
        return _timestamp_value(values[0])
    written: dict = {}
    return [written[v] if v in written else written.setdefault(v, _timestamp_value(v)) for v in values]


def _timestamp_value(value) -> str:
    if type(value) is str:
        return _text_value(value)
    if value is None:
        return NULL
    try:
        return orjson.dumps(value).decode()[1:-1]
    except orjson.JSONEncodeError:
        raise Unsupported("a timestamp column holds a value orjson cannot write") from None


def _json_column(rows: Sequence[tuple], i: int, _stop: int) -> list[str]:
    values = [row[i] for row in rows]
    texts = _objects_json(values) or [None if v is None else to_json(v) for v in values]
    if _special("".join(filter(None, texts))):  # nearly always none: no backslash
        texts = [None if t is None else _escaped(without_nul(t)) for t in texts]
    return [NULL if t is None else t for t in texts] if None in texts else texts


def _objects_json(values: list) -> list[str] | None:
    """``to_json`` of each value, for a column of dicts, in one orjson call split at its "},{"
    (None when it cannot be: other values, a "},{" inside one, what orjson refuses). 9x faster
    than a call per row; a row where orjson wrote null (maybe a NaN, which to_json keeps as text)
    is written again by to_json, unless its nulls are as many as its None values."""
    if set(map(type, values)) != {dict}:
        return None
    try:
        text = orjson.dumps(values).decode()
    except orjson.JSONEncodeError:  # integers past 64 bits, lone surrogates, keys that are not strings
        return None
    inner = text[2:-2].split("},{")
    if len(inner) != len(values):
        return None
    texts = ["{" + t + "}" for t in inner]
    if "null" in text:  # a None value (a user's missing field), or a NaN, which to_json keeps as text
        for k in [k for k, t in enumerate(inner) if "null" in t]:
            if inner[k].count("null") != countOf(values[k].values(), None):
                texts[k] = to_json(values[k])
    return texts


_ENCODERS = {TEXT: _text_column, TIMESTAMP: _timestamp_column, NUMBER: _number_columns, JSON: _json_column}
