"""Log rows: what the service records of each user it was sent."""

from serving.core import RequestRecord, log_rows
from serving.db.log_rows import ROW_COLUMNS
from serving.model_identity import ModelIdentity
from revenue_model.validation import validate_columns

IDENTITY = ModelIdentity("models:/revenue_model/3", name="revenue_model", version="3")
USERS = [
    {"country": " es ", "source": "Organic", "platform": "iOS", "event_1": 2, "event_2": 0.5, "user_id": 17},
    {"country": "pe", "country_region": "Lima", "source": "Ads", "platform": "Android", "event_1": 0,
     "event_2": 1, "event_3": 4, "device_family": "Pixel", "os_version": "14"},
]


def _rows(record, status):
    return [dict(zip(ROW_COLUMNS, row, strict=True)) for row in log_rows(record, status, 12.5, IDENTITY)]


def test_a_scored_batch_logs_each_users_validated_fields_and_outputs():
    record = RequestRecord("req-1", "/batch_predict", attempt_id="a1")
    record.users, record.columns = USERS, validate_columns(USERS)
    record.outputs = [{"predicted_revenue": 1.25, "payer_probability": 0.5, "revenue_p10": 0.0, "revenue_p90": 3.0},
                      {"predicted_revenue": float("inf"), "payer_probability": 0.25, "revenue_p10": 0.0}]
    record.inference_ms = 2.0
    first, second = _rows(record, 200)
    assert first == {
        "row_key": "a1:0", "timestamp": record.timestamp, "request_id": "req-1", "user_index": 0,
        "role": "champion", "user_id": "17", "route": "/batch_predict", "status_code": 200, "error": None,
        "model_name": "revenue_model", "model_version": "3", "country": "es", "country_region": None,
        "source": "Organic", "platform": "iOS", "device_family": None, "os_version": None,
        "event_1": 2.0, "event_2": 0.5, "event_3": None, "predicted_revenue": 1.25, "payer_probability": 0.5,
        "revenue_p10": 0.0, "revenue_p90": 3.0, "inference_time_ms": 2.0, "latency_ms": 12.5,
        "input_data": USERS[0],
    }
    assert (second["user_id"], second["country_region"], second["device_family"], second["event_3"]) == \
        (None, "Lima", "Pixel", 4.0)
    # Infinity is no number a column can hold, and a missing output is missing.
    assert (second["predicted_revenue"], second["payer_probability"], second["revenue_p90"]) == (None, 0.25, None)


def test_a_rejected_batch_logs_what_was_sent_where_it_fits_and_each_users_error():
    sent = [{"country": 5, "source": "Ads", "event_1": "x", "event_2": float("nan"), "event_3": 10 ** 400}, "text"]
    record = RequestRecord("req-2", "/batch_predict")
    record.users, record.user_errors, record.error = sent, {0: "country must be a string"}, "invalid users"
    first, second = _rows(record, 400)
    assert (first["country"], first["source"], first["event_1"], first["event_2"], first["event_3"]) == \
        (None, "Ads", None, None, None)
    assert (first["error"], second["error"]) == ("country must be a string", "invalid users")
    assert (first["predicted_revenue"], second["input_data"], second["status_code"]) == (None, "text", 400)


def test_a_request_without_users_logs_one_row_with_its_body():
    record = RequestRecord("req-3", "/predict")
    record.raw_body, record.error = "{not json", "the body is not valid JSON"
    (row,) = _rows(record, 400)
    assert (row["user_index"], row["input_data"], row["error"]) == (0, {"body": "{not json"}, "the body is not valid JSON")


def test_each_attempt_of_a_request_id_is_keyed_by_the_server():
    """A client retrying with one X-Request-Id (an idempotency key) must not collide with itself."""
    first, second = RequestRecord("retried", "/predict"), RequestRecord("retried", "/predict")
    for record in (first, second):
        record.users, record.columns = USERS[:1], validate_columns(USERS[:1])
    (a,), (b,) = _rows(first, 503), _rows(second, 200)
    assert a["request_id"] == b["request_id"] == "retried"
    assert a["row_key"] != b["row_key"] and "retried" not in a["row_key"] + b["row_key"]


def test_a_shadow_row_shares_the_champions_key_and_says_its_role():
    record = RequestRecord("req-4", "/predict")
    record.users, record.columns = USERS[:1], validate_columns(USERS[:1])
    (champion,) = _rows(record, 200)
    (shadow,) = [dict(zip(ROW_COLUMNS, row)) for row in log_rows(record, 200, 12.5, IDENTITY, role="shadow")]
    assert (champion["role"], shadow["role"]) == ("champion", "shadow")
    assert shadow["row_key"] == champion["row_key"] and shadow["timestamp"] == champion["timestamp"]
