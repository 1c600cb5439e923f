"""What the log keeps of a user as sent (``input_data``), bounded in bytes, and what it costs in memory.

A user is kept exactly as sent when its JSON is at most ``max_bytes`` and it
holds at most MAX_VALUES values (keys, scalars and containers, counted through
any nesting). Otherwise the log keeps the contract's fields first (a string
longer than the contract allows cut to it), then the other fields in the order
sent while they fit, and says what it left out in ``"_truncated"``:
``{"json_bytes": size as sent, "values": values as sent (counted up to the
limit), "dropped_fields": n, "dropped": [up to 10 names], "cut": [names]}``.
Anything that is not an object is kept as ``{"_truncated": {...}, "json_start":
the first characters of its JSON}``.

The memory a stored input costs in the log writer's queue is estimated as
INPUT_BYTES_PER_JSON_BYTE per byte of JSON plus VALUE_BYTES per value, both
upper bounds measured with tracemalloc (tests/serving/test_stored_input.py).
"""

from __future__ import annotations

import json
from itertools import chain, islice
from typing import Any

import orjson

from revenue_model.contract import INPUT_COLUMNS, MAX_STRING_LENGTH

CONTRACT_FIELDS = frozenset(INPUT_COLUMNS)
MAX_VALUES = 256
INPUT_BYTES_PER_JSON_BYTE = 3
VALUE_BYTES = 128          # a dict entry with its key, or a list slot with a small object
MARKER = "_truncated"
_MARKER_ROOM = 1024        # JSON bytes kept free for the marker
_NAMES_SHOWN, _NAME_CHARS = 5, 20  # at most 5 x 20 x 6 (escaped) bytes of names in the marker
_MARKER_VALUES = 32
_SCALARS = (str, int, float, bool, type(None))


def json_size(value: Any) -> int:
    """Bytes of ``value``'s JSON as the log stores it (UTF-8; NaN and lone surrogates included)."""
    try:
        return len(orjson.dumps(value))
    except (orjson.JSONEncodeError, TypeError):  # lone surrogates, integers past 64 bits
        text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
        return len(text.encode("utf-8", "surrogatepass"))


def count_values(value: Any, limit: int = MAX_VALUES) -> int:
    """Keys, scalars and containers in ``value``, counted until past ``limit``."""
    count, stack = 0, [value]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            count += len(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def cost(size: int, values: int) -> int:
    """Estimated memory (bytes) of a stored input of ``size`` JSON bytes and ``values`` values."""
    return INPUT_BYTES_PER_JSON_BYTE * size + VALUE_BYTES * values


def stored_input(value: Any, max_bytes: int) -> tuple[Any, int]:
    """(what the log keeps of ``value``, its estimated memory in bytes)."""
    size, values = json_size(value), count_values(value)
    if size <= max_bytes and values <= MAX_VALUES:
        return value, cost(size, values)
    marker = {"json_bytes": size, "values": values}
    if not isinstance(value, dict):
        try:
            text = orjson.dumps(value).decode()
        except orjson.JSONEncodeError:
            text = json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":"))
        kept = {MARKER: marker, "json_start": text[:max(0, max_bytes - _MARKER_ROOM) // 6]}  # 6: \uXXXX
        return kept, cost(max_bytes, _MARKER_VALUES)
    kept, dropped, cut = {}, [], []
    room, values_left = max_bytes - _MARKER_ROOM, MAX_VALUES - _MARKER_VALUES
    keys = chain((k for k in INPUT_COLUMNS if k in value), (k for k in value if k not in CONTRACT_FIELDS))
    for key in keys:
        item = value[key]
        if key in CONTRACT_FIELDS and isinstance(item, str) and len(item) > MAX_STRING_LENGTH:
            item = item[:MAX_STRING_LENGTH + 1]  # one character over: still shows it was too long
        item_size = json_size(key) + json_size(item) + 2
        item_values = 1 + count_values(item, values_left)
        if item_size <= room and item_values <= values_left:
            kept[key] = item
            room -= item_size
            values_left -= item_values
            if item is not value[key]:
                cut.append(key)
        else:
            dropped.append(key)
        if values_left < 2:
            break  # full: the rest is dropped unseen (an object may have a million fields)
    dropped += islice(keys, max(0, _NAMES_SHOWN - len(dropped)))
    marker.update(dropped_fields=len(value) - len(kept),
                  dropped=[str(k)[:_NAME_CHARS] for k in dropped[:_NAMES_SHOWN]], cut=cut)
    kept[MARKER] = marker
    return kept, cost(max_bytes - room, MAX_VALUES - values_left)
