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


def _batch(n: int, extra: dict | None = None) -> bytes:
    import orjson

    return orjson.dumps({"users": [{"country": ["es", "pe", "us"][i % 3], "country_region": f"region {i % 97}",
                                    "source": f"network {i % 13}", "platform": "iOS" if i % 2 else "android",
                                    "device_family": "Apple iPhone", "os_version": f"{i % 17}.{i % 5}",
                                    "event_1": i % 300, "event_2": (i % 70) / 3, "event_3": None if i % 4 else 1.5,
                                    "user_id": f"user-{i}", **(extra or {})} for i in range(n)]})


def _queued_memory(body: bytes, status: int) -> tuple[int, int]:
    """(bytes the log rows of a request keep alive, measured with tracemalloc; bytes charged for them)."""
    import gc
    import tracemalloc

    import orjson

    from revenue_model.validation import InvalidUsers
    from serving.core import stored_inputs
    from serving.log_writer import ROW_BYTES

    gc.collect()
    tracemalloc.start()
    try:
        record = RequestRecord("0123456789abcdef0123456789abcdef", "/batch_predict")
        record.users, record.body_bytes = orjson.loads(body)["users"], len(body)
        try:
            record.columns = validate_columns(record.users)
        except InvalidUsers:
            pass
        if status == 200:
            record.outputs = [{"predicted_revenue": i / 7, "payer_probability": i / 1e5, "revenue_p10": 0.0,
                               "revenue_p90": i / 3} for i in range(len(record.users))]
            record.inference_ms = 2.0
        inputs, input_bytes = stored_inputs(record)
        rows = log_rows(record, status, 12.5, IDENTITY, inputs)
        charged = len(rows) * ROW_BYTES + input_bytes
        del record, inputs
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del rows
    return kept, charged


def test_the_log_queue_is_charged_at_least_the_memory_a_requests_rows_keep():
    for body, status in [(_batch(2000), 200), (_batch(500, {"campaign": "c" * 50, "tags": ["a", "b"]}), 200),
                         (_batch(500, {"event_1": -1}), 400), (_batch(20, {"blob": "x" * 100_000}), 200)]:
        kept, charged = _queued_memory(body, status)
        assert kept <= charged, (len(body), status, kept, charged)


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


# -- waiting for room in the log queue (PredictionService.log_room) ----------------------------

def gated(tmp_path, max_rows=1000, log_wait_s=5.0):
    """A service in front of a writer that is not started (rows move only when a test takes them)
    but says it is draining, as a connected writer does."""
    import time

    from serving.core import PredictionService
    from serving.log_writer import LogWriter

    writer = LogWriter("postgresql://127.0.0.1:1/none", tmp_path, max_rows=max_rows)
    writer.database_up = True

    def drained():
        writer._drained = time.monotonic()

    return PredictionService(None, writer, max_in_flight=64, max_users=10_000, log_wait_s=log_wait_s), writer, drained


def test_requests_wait_their_turn_for_room_and_the_queue_never_overflows_to_disk(tmp_path):
    """Eight clients of 250-user requests against a queue of 1,000 drained at 250 rows per 50 ms:
    the rows let through (queued and in flight) never pass the bound, none is spilled."""
    import asyncio

    service, writer, drained = gated(tmp_path)
    highest = 0

    async def client(k):
        nonlocal highest
        for i in range(4):
            record = RequestRecord(f"c{k}-{i}", "/batch_predict")
            await service.log_room(record, 250)
            highest = max(highest, writer.queued_rows + service.log_reserved)
            await asyncio.sleep(0.01)  # scoring
            writer.submit([("row",)] * 250)
            service.unreserve(record)

    async def drain():
        while True:
            await asyncio.sleep(0.05)
            writer._take(250)
            drained()

    async def main():
        drainer = asyncio.create_task(drain())
        await asyncio.wait_for(asyncio.gather(*(client(k) for k in range(8))), 30)
        drainer.cancel()

    asyncio.run(main())
    assert writer.rows_spilled == 0
    assert highest <= 1000
    assert service.log_reserved == 0


def test_waiting_for_room_is_bounded_and_only_while_the_writer_drains(tmp_path):
    import asyncio
    import time

    service, writer, drained = gated(tmp_path, max_rows=1000, log_wait_s=0.5)

    def waited_s(rows: int) -> float:
        started = time.monotonic()
        record = RequestRecord("r", "/batch_predict")
        asyncio.run(service.log_room(record, rows))
        service.unreserve(record)
        return time.monotonic() - started

    writer.submit([("row",)] * 300)
    assert waited_s(200) < 0.1          # fits in half the bound with what is queued
    drained()
    assert 0.5 <= waited_s(201) < 1.5   # would pass half: waits its bound, then goes on
    assert waited_s(100) < 0.1          # a small request never waits
    writer.database_up = False          # nothing drains: waiting would not bring room
    assert waited_s(201) < 0.1
    writer.database_up = True
    writer._drained -= 10               # connected, but no batch written for 10 s (a replay, a hung connection)
    assert waited_s(201) < 0.1
    writer._take(300)
    assert waited_s(5000) < 0.1         # the first into an empty queue, whatever its size


def test_a_request_waits_at_most_log_wait_s_in_all_in_line_included(tmp_path):
    import asyncio
    import time

    service, writer, drained = gated(tmp_path, max_rows=1000, log_wait_s=0.5)
    writer.submit([("row",)] * 400)  # the queue stays over half for 201 more: nobody fits

    async def one() -> float:
        started = time.monotonic()
        record = RequestRecord("r", "/batch_predict")
        await service.log_room(record, 201)
        return time.monotonic() - started

    async def main():
        async def keep_draining():  # the writer writes, slowly: waiting is worth it
            while True:
                drained()
                await asyncio.sleep(0.05)

        keeper = asyncio.create_task(keep_draining())
        waits = await asyncio.gather(*(one() for _ in range(5)))
        keeper.cancel()
        return waits

    waits = asyncio.run(main())
    assert max(waits) < 0.8, waits  # not 0.5, 1.0, 1.5 ... one after the other


def test_a_write_in_progress_counts_as_draining_a_writer_with_nothing_written_for_long_does_not(tmp_path):
    import time

    _, writer, _ = gated(tmp_path)
    writer._drained -= 10
    assert not writer.draining
    writer._write_started = time.monotonic() - 5  # a slow write: PostgreSQL is working through it
    assert writer.draining
    writer._write_started = time.monotonic() - writer.stall_s - 1  # hung
    assert not writer.draining
