"""Faults, overload and access, with real processes: the service keeps answering and loses no record.

Each test that breaks something runs its own service (and, for the outage, its own PostgreSQL),
so the shared one keeps serving the other tests.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import threading
import time
import uuid

import aiohttp
import pgserver
import psycopg2
import pytest

from tests.serving.conftest import Service, rows_for, wait_until

USER = {"country": "es", "country_region": "Madrid", "source": "Organic", "platform": "iOS",
        "device_family": "Apple iPhone", "os_version": "14.4", "event_1": 100, "event_2": 50, "event_3": 10.0}


class Load:
    """Sequential /predict requests from a thread, each with its own request id, until stopped."""

    def __init__(self, port: int, prefix: str, pause_s: float = 0.01, headers: dict | None = None):
        self.port, self.prefix, self.pause_s, self.headers = port, prefix, pause_s, headers or {}
        self.answers: dict[str, int] = {}
        self.versions: dict[str, str] = {}   # X-Model-Version of each answer
        self.bodies: dict[str, bytes] = {}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        i = 0
        while not self._stop.is_set():
            request_id = f"{self.prefix}-{i}"
            i += 1
            try:
                connection.request("POST", "/predict", json.dumps(USER),
                                   {"Content-Type": "application/json", "X-Request-Id": request_id, **self.headers})
                response = connection.getresponse()
                self.bodies[request_id] = response.read()
                self.answers[request_id] = response.status
                self.versions[request_id] = response.getheader("X-Model-Version")
            except (OSError, http.client.HTTPException) as error:
                self.failures.append(f"{request_id}: {error!r}")
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                time.sleep(0.05)
            time.sleep(self.pause_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(60)


def table_counts(database_url: str, prefix: str) -> tuple[set, int]:
    with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT request_id FROM predictions WHERE request_id LIKE %s", (prefix + "-%",))
        ids = [r[0] for r in cursor.fetchall()]
    connection.close()
    return set(ids), len(ids)


def test_a_database_outage_loses_no_row_and_writes_none_twice(champion_store, tmp_path):
    pgdata = tmp_path / "pg"
    database = pgserver.get_server(pgdata)
    url = database.get_uri()
    service = Service(tmp_path, champion_store, url).start()
    prefix = f"outage-{uuid.uuid4().hex[:6]}"
    try:
        with Load(service.port, prefix) as load:
            time.sleep(4)
            database.cleanup()                        # PostgreSQL stops ...
            time.sleep(20)
            database = pgserver.get_server(pgdata)    # ... and comes back 20 s later
            time.sleep(4)
        sent = {rid for rid, status in load.answers.items()}
        assert load.failures == [] and set(load.answers.values()) == {200}
        assert len(sent) > 300
        assert wait_until(lambda: table_counts(url, prefix)[0] == sent, 60), "rows missing after the outage"
        ids, rows = table_counts(url, prefix)
        assert ids == sent and rows == len(sent)      # one row each: none lost, none twice
        assert service.stop() == 0
    finally:
        service.stop()
        database.cleanup()


@pytest.mark.parametrize("after_s", [0.5, 2.5])  # while importing; while resolving and starting
def test_sigterm_during_start_up_stops_in_order_and_leaves_no_scorer(champion_store, postgres, tmp_path, after_s):
    service = Service(tmp_path, champion_store, postgres)
    service.start(wait=False)
    pids = []

    def scorer_started() -> bool:
        try:
            pids.append(service.scorer_pid())
            return True
        except (IndexError, ValueError):
            return False

    assert wait_until(scorer_started, 10, 0.05), service.output()  # the scorer is started first thing
    scorer = pids[0]
    time.sleep(after_s)
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(120) == 0, service.output()
    assert wait_until(lambda: ended(scorer), 5), "the scorer outlived the service"


def ended(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_sigterm_under_load_answers_what_it_accepted_and_logs_it(champion_store, postgres, tmp_path):
    service = Service(tmp_path, champion_store, postgres).start()
    prefix = f"sigterm-{uuid.uuid4().hex[:6]}"
    loads = [Load(service.port, f"{prefix}{k}", pause_s=0) for k in range(6)]
    for load in loads:
        load.__enter__()
    time.sleep(3)
    service.process.send_signal(signal.SIGTERM)
    assert service.process.wait(60) == 0
    for load in loads:
        load.__exit__()
    answered = {rid for load in loads for rid, status in load.answers.items() if status == 200}
    assert len(answered) > 100
    # Every failure is a refused or closed connection after shutdown, never a dropped answer.
    for failure in (f for load in loads for f in load.failures):
        assert "ConnectionRefused" in failure or "RemoteDisconnected" in failure or "BrokenPipe" in failure \
            or "ConnectionReset" in failure, failure
    logged = set()
    for k in range(6):
        logged |= table_counts(postgres, f"{prefix}{k}")[0]
    assert answered <= logged  # everything answered was written before the process exited


def test_a_crashed_scorer_gives_fast_503s_and_is_restarted(champion_store, postgres, tmp_path):
    service = Service(tmp_path, champion_store, postgres).start()
    http = service.http
    try:
        proxy_pid = service.process.pid
        os.kill(service.scorer_pid(), signal.SIGKILL)
        killed = time.monotonic()
        assert wait_until(lambda: http.get("/health")[0] == 503, 1.0, 0.05), "health still 200 after 1 s"
        started = time.monotonic()
        status, _, body = http.post("/predict", USER)
        if status == 503:  # unless the restart already finished
            assert time.monotonic() - started < 0.5 and body["error"] == "model_unavailable"
            (row,) = rows_for(service.database_url, [body["request_id"]], expected=1)
            assert row["status_code"] == 503
        assert wait_until(lambda: http.get("/health")[0] == 200, 120), "the scorer did not come back"
        assert http.post("/predict", USER)[0] == 200
        assert service.process.pid == proxy_pid and service.process.poll() is None
        print(f"scorer back after {time.monotonic() - killed:.1f} s")
    finally:
        service.stop()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_overload_is_refused_quickly_with_bounded_memory_and_recovers(champion_store, postgres, tmp_path):
    service = Service(tmp_path, champion_store, postgres, MAX_IN_FLIGHT=32).start()
    url = f"http://127.0.0.1:{service.port}/predict"
    body = json.dumps(USER).encode()
    peak = [rss_mb(service.process.pid)]
    statuses, slow_refusals = [], []

    async def flood(seconds: float, clients: int):
        deadline = time.monotonic() + seconds
        connector = aiohttp.TCPConnector(limit=clients)
        async with aiohttp.ClientSession(connector=connector) as session:
            async def client():
                while time.monotonic() < deadline:
                    started = time.monotonic()
                    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        statuses.append(r.status)
                        if r.status != 200 and time.monotonic() - started > 1.0:
                            slow_refusals.append(time.monotonic() - started)

            async def watch():
                while time.monotonic() < deadline:
                    peak.append(rss_mb(service.process.pid))
                    await asyncio.sleep(0.5)
            await asyncio.gather(watch(), *(client() for _ in range(clients)))

    try:
        asyncio.run(flood(30, 200))
        assert set(statuses) <= {200, 503} and statuses.count(503) > 0 and statuses.count(200) > 0
        assert slow_refusals == []
        assert max(peak) < 600, f"proxy memory peaked at {max(peak):.0f} MB"
        started = time.monotonic()
        assert service.http.post("/predict", USER)[0] == 200
        assert time.monotonic() - started < 1.0
        print(f"{len(statuses)} requests: {statuses.count(200)} answered, {statuses.count(503)} refused; "
              f"proxy RSS peak {max(peak):.0f} MB")
    finally:
        service.stop()


NASTY = [
    ("wrong types", {**USER, "event_1": [1], "country": {"a": 1}}, 400),
    ("NaN and Infinity", b'{"country":"es","source":"x","platform":"ios","event_1":NaN,"event_2":-Infinity}', 400),
    ("huge numbers", b'{"country":"es","source":"x","platform":"ios","event_1":1e999,"event_2":' + b"9" * 400 + b"}", 400),
    ("a largest finite event", {**USER, "event_1": 1.7e308}, 200),
    ("negative events", {**USER, "event_2": -0.0001}, 400),
    ("deeply nested JSON", b"[" * 100_000 + b"]" * 100_000, 400),
    ("invalid UTF-8", b'{"country": "\xc3\x28"}', 400),
    ("a NUL character", {**USER, "source": "\x00"}, 400),  # MLflow's NumPy strings would drop it: 502
    ("a lone surrogate", b'{"country":"es","source":"x","platform":"ios","event_1":1,"event_2":1,'
                         b'"country_region":"\\ud800"}', 400),
    ("10 MB body", b'{"users": [' + b'"x",' * 2_600_000 + b'"x"]}', 413),
    ("not an object", b'"just a string"', 400),
    ("empty body", b"", 400),
]


@pytest.mark.parametrize("name, body, status", NASTY, ids=[n[0] for n in NASTY])
def test_nasty_input_gets_a_4xx_never_a_5xx_and_is_logged(http, service, name, body, status):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    path = "/batch_predict" if raw.startswith(b'{"users"') else "/predict"
    got, headers, answer = http.post(path, raw=raw, timeout=120)
    assert got == status, answer
    rows = rows_for(service.database_url, [headers["X-Request-Id"]], expected=1)
    assert rows and rows[0]["status_code"] == status
    assert http.get("/health")[0] == 200


def test_strings_with_sql_and_control_characters_are_stored_verbatim(http, service):
    nasty = "Robert'); DROP TABLE predictions;-- \u0001\u0007\t\n\r \\ \u00e9 \U0001F600"
    user = {**USER, "country_region": nasty, "device_family": "<script>alert(1)</script>", "user_id": nasty}
    status, headers, _ = http.post("/predict", user)
    assert status == 200
    (row,) = rows_for(service.database_url, [headers["X-Request-Id"]], expected=1)
    assert row["input_data"] == user


def test_a_100000_user_batch_is_413(http):
    status, _, body = http.post("/batch_predict", {"users": [{"country": "es"}] * 100_000}, timeout=120)
    assert status == 413


def test_arbitrary_json_never_gets_a_5xx(http):
    """Property: whatever JSON a client sends to the prediction routes, the answer is not 5xx."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
    user_like = st.fixed_dictionaries({}, optional={k: values for k in list(USER) + ["user_id"]})

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(body=values | user_like | st.fixed_dictionaries({"users": st.lists(user_like | values, max_size=5)}))
    def check(body):
        for path in ("/predict", "/batch_predict", "/invocations"):
            status = http.post(path, raw=json.dumps(body).encode())[0]
            assert status < 500, (path, body)

    check()


def test_the_openapi_user_schema_accepts_what_the_validator_accepts():
    from hypothesis import given, settings, strategies as st
    from pydantic import ValidationError

    from revenue_model.validation import InvalidUsers, validate_columns
    from serving.schemas import User

    text = st.text(max_size=220)
    number = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-5, 10**6) | st.none()

    @settings(max_examples=400, deadline=None)
    @given(st.fixed_dictionaries({"country": text | st.none(), "source": text, "platform": text,
                                  "event_1": number, "event_2": number},
                                 optional={"event_3": number, "country_region": text | st.none()}))
    def check(user):
        try:
            validate_columns([user])
            valid = True
        except InvalidUsers:
            valid = False
        try:
            User.model_validate(user, strict=False)
            schema_valid = True
        except ValidationError:
            schema_valid = False
        assert valid == schema_valid, user

    check()


def test_with_an_api_key_every_route_but_health_requires_it(champion_store, postgres, tmp_path):
    key = "s3cret-" + uuid.uuid4().hex
    service = Service(tmp_path, champion_store, postgres, API_KEY=key).start()
    http = service.http
    marker = "marker-" + uuid.uuid4().hex
    try:
        assert http.get("/health")[0] == 200
        for method, path in [("POST", "/predict"), ("POST", "/batch_predict"), ("POST", "/invocations"),
                             ("GET", "/stats"), ("GET", "/model/info"), ("GET", "/metrics")]:
            assert http.call(method, path, USER)[0] == 401, path
            assert http.call(method, path, USER, headers={"X-API-Key": "wrong"})[0] == 401, path
        status, _, body = http.post("/predict", {**USER, "country_region": marker}, headers={"X-API-Key": key})
        assert status == 200
        assert http.post("/predict", USER, headers={"Authorization": f"Bearer {key}"})[0] == 200
        for path in ("/stats", "/model/info"):
            status, _, answer = http.get(path, headers={"X-API-Key": key})
            assert status == 200 and marker not in json.dumps(answer)
        assert key not in service.output()
    finally:
        service.stop()


def test_the_service_listens_on_loopback_only(service):
    outside = [a for a in socket.gethostbyname_ex(socket.gethostname())[2] if not a.startswith("127.")]
    if not outside:
        with open("/proc/net/tcp") as f:  # no other address to try: read the listening sockets
            port = f"{service.port:04X}"
            listening = [line.split()[1] for line in f if line.split()[1].endswith(":" + port)]
        assert listening and all(a.startswith("0100007F") for a in listening), listening
        return
    with pytest.raises(OSError):
        socket.create_connection((outside[0], service.port), timeout=2)
