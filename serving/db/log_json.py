"""Values of log rows as JSON that PostgreSQL takes, for both ways of writing them (INSERT of one
JSONB document, serving/db/log_rows.py; COPY, serving/db/log_copy.py): NaN and Infinity as text,
lone surrogates and NUL as the escape text PostgreSQL stores in their place."""

from __future__ import annotations

import json
import math
import re

import orjson


def to_json(value) -> str:
    """JSON that PostgreSQL accepts: NaN and Infinity, which clients may send, become strings."""
    if _flat_and_finite(value):  # nearly every user as sent: orjson writes the same JSON 9x faster
        try:
            return orjson.dumps(value).decode()
        except orjson.JSONEncodeError:  # integers past 64 bits, lone surrogates
            pass
    try:
        return json.dumps(value, ensure_ascii=False, default=str, allow_nan=False)
    except ValueError:
        return json.dumps(mapped(value, _finite), ensure_ascii=False, default=str, allow_nan=False)


def _flat_and_finite(value) -> bool:
    """An object of strings, integers, booleans, nulls and finite floats (orjson would write NaN as null)."""
    return type(value) is dict and all(type(v) in _SCALARS or (type(v) is float and v - v == 0.0)
                                       for v in value.values())


_SCALARS = (str, int, bool, type(None))


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def mapped(value, leaf):
    """``value`` with ``leaf`` applied to every scalar in it, dict keys included."""
    if isinstance(value, dict):
        return {mapped(k, leaf): mapped(v, leaf) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(mapped(v, leaf) for v in value)
    return leaf(value)


def scrubbed(value):
    """A lone surrogate as its escape text (six characters), which PostgreSQL stores, as it does NUL."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(value, str) else value


def without_nul(json_text: str) -> str:
    r"""PostgreSQL can store NUL neither in text nor in JSONB ("\u0000"): both keep the six
    characters \u0000 instead. In JSON, only an escape preceded by an even run of backslashes is one."""
    return _JSON_NUL.sub(r"\1\\\\u0000", json_text) if "\\u0000" in json_text else json_text


_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")
