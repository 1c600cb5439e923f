"""What the log keeps of a user as sent: bounded in bytes and values, saying what it left out,
and never costing the writer's queue more memory than it is charged."""

from __future__ import annotations

import gc
import json
import math
import tracemalloc

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from serving.stored_input import MAX_VALUES, stored_input

CAP = 16 * 1024
USER = {"country": "es", "country_region": "Madrid", "source": "Organic", "platform": "iOS",
        "device_family": "Apple iPhone", "os_version": "14.4", "event_1": 100, "event_2": 50, "event_3": 10.0,
        "user_id": "u-1"}


def stored_bytes(value) -> int:
    """The size of ``value``'s compact JSON, computed here with json (NaN counted as the string "NaN")."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("NaN", '"NaN"')
    return len(text.encode("utf-8", "surrogatepass"))


def test_a_user_within_the_bounds_is_kept_as_sent():
    user = {**USER, "campaign": "summer", "tags": ["a", "b"], "score": math.nan, "big": 10**30}
    assert stored_input(user, CAP)[0] is user


def test_an_8_mb_unknown_field_is_dropped_and_the_marker_says_so():
    kept, _ = stored_input({**USER, "blob": "x" * 8_000_000, "note": "kept"}, CAP)
    assert {k: kept[k] for k in USER} == USER and kept["note"] == "kept" and "blob" not in kept
    assert kept["_truncated"] == {"json_bytes": stored_bytes({**USER, "blob": "x" * 8_000_000, "note": "kept"}),
                                  "values": 1 + 2 * 12, "dropped_fields": 1, "dropped": ["blob"], "cut": []}
    assert stored_bytes(kept) <= CAP


def test_a_contract_string_past_its_limit_is_cut_one_character_over_it():
    kept, _ = stored_input({**USER, "country": "é" * 100_000}, CAP)
    assert kept["country"] == "é" * 201 and kept["_truncated"]["cut"] == ["country"]


def test_200000_tiny_fields_keep_the_contract_fields_first_and_stop_at_the_value_limit():
    user = {**{f"f{i}": 0 for i in range(200_000)}, **USER}  # the contract's fields come last
    kept, _ = stored_input(user, CAP)
    assert {k: kept[k] for k in USER} == USER
    assert len(kept) < MAX_VALUES // 2 and kept["_truncated"]["dropped_fields"] == len(user) - len(kept) + 1
    assert kept["_truncated"]["dropped"] == [f"f{i}" for i in range(len(kept) - 11, len(kept) - 6)]


@pytest.mark.parametrize("value", ["y" * 100_000, [[]] * 10_000, [{"a": 1}] * 1000, [10**400] * 100])
def test_anything_else_too_large_keeps_the_start_of_its_json(value):
    kept, _ = stored_input(value, CAP)
    assert stored_bytes(kept) <= CAP and kept["_truncated"]["json_bytes"] == stored_bytes(value)
    assert json.dumps(value, separators=(",", ":")).startswith(kept["json_start"])


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=300),
                    lambda inner: st.lists(inner, max_size=20) | st.dictionaries(st.text(max_size=20), inner,
                                                                                 max_size=20), max_leaves=100)


@settings(max_examples=150, deadline=None)
@given(extra=st.dictionaries(st.text(max_size=30), JSON, max_size=40), cap=st.sampled_from([2048, 4096, CAP]))
def test_whatever_is_sent_is_stored_within_the_cap_keeping_the_contract_fields(extra, cap):
    user = {**extra, **USER}
    kept, _ = stored_input(user, cap)
    assert stored_bytes(kept) <= cap
    assert {k: kept[k] for k in USER} == USER


def measured_bytes(value) -> int:
    """Memory of ``value`` as the request parsed it (orjson), measured with tracemalloc."""
    text = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS) if not _has_nan(value) else json.dumps(value).encode()
    gc.collect()
    tracemalloc.start()
    try:
        parsed = json.loads(text) if b"NaN" in text else orjson.loads(text)
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del parsed
    return size


def _has_nan(value) -> bool:
    return "NaN" in json.dumps(value)


SHAPES = {
    "a typical user": USER,
    "short strings": {**USER, **{f"k{i}": f"v{i}" for i in range(200)}},
    "empty containers": {**USER, "x": [[] for _ in range(200)], "y": [{} for _ in range(20)]},
    "many tiny objects, capped": {**USER, "x": [{"a": i} for i in range(5000)]},
    "non-latin text": {**USER, "note": "\u4e2d\u6587" * 2000},
    "numbers": {**USER, "n": [i * 1.5 for i in range(200)]},
    "an 8 MB string, capped": {**USER, "blob": "z" * 8_000_000},
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_the_memory_charged_to_the_queue_is_at_least_what_the_stored_input_takes(name):
    kept, charged = stored_input(SHAPES[name], CAP)
    assert measured_bytes(kept) <= charged
