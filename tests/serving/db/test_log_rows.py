"""The JSON of a user as sent, as the log stores it (input_data)."""

import json
import math

from hypothesis import example, given, strategies as st

from serving.db.log_rows import to_json

_SCALARS = (st.none() | st.booleans() | st.integers(min_value=-10**30, max_value=10**30)
            | st.floats(allow_nan=True, allow_infinity=True) | st.text())


def _as_stored(value):
    """What PostgreSQL should get for a value: JSON has no NaN or Infinity, so they become text."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


@given(st.dictionaries(st.text(), _SCALARS, max_size=12))
@example({"country": "US", "event_1": 2.5, "event_3": float("nan"), "event_2": float("-inf")})
@example({"user_id": 10**400, "source": "\ud800"})  # past 64 bits, a lone surrogate: orjson refuses both
def test_a_flat_user_is_stored_as_sent_with_nan_and_infinity_as_text(user):
    assert json.loads(to_json(user)) == {k: _as_stored(v) for k, v in user.items()}


def test_nested_values_keep_nan_as_text_too():
    user = {"country": "US", "extra": {"scores": [1.5, float("nan"), float("-inf")]}}
    assert json.loads(to_json(user)) == {"country": "US", "extra": {"scores": [1.5, "NaN", "-Infinity"]}}
