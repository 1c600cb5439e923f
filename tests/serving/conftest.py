"""The service as a process (with the session's PostgreSQL and tracking store), its HTTP client and waits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import pytest

from serving.scorer_process import free_port

PROJECT = Path(__file__).resolve().parents[2]


@dataclass
class Http:
    base: str
    headers: dict = field(default_factory=dict)

    def call(self, method: str, path: str, body=None, *, raw: bytes | None = None,
             headers: dict | None = None, timeout: float = 60):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        sent = {"Content-Type": "application/json", **self.headers, **(headers or {})}
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, head, payload = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, head, payload = error.code, dict(error.headers), error.read()
        try:
            return status, head, json.loads(payload)
        except ValueError:
            return status, head, payload.decode("utf-8", "replace")

    def post(self, path, body=None, **kwargs):
        return self.call("POST", path, body, **kwargs)

    def get(self, path, **kwargs):
        return self.call("GET", path, **kwargs)


class Service:
    """`python -m serving` in a subprocess, with its own port, database and spill folder."""

    def __init__(self, root: Path, tracking_uri: str, database_url: str, **env):
        self.root = root
        self.port = free_port()
        self.database_url = database_url
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        self.env.update({"MLFLOW_TRACKING_URI": tracking_uri, "DATABASE_URL": database_url,
                         "PORT": str(self.port), "SPILL_DIR": str(root / "spill"),
                         **{k: str(v) for k, v in env.items()}})
        self.http = Http(f"http://127.0.0.1:{self.port}")
        self.process: subprocess.Popen | None = None

    def start(self, timeout_s: float = 180, *, wait: bool = True) -> "Service":
        """Start; with ``wait``, until /health answers 200."""
        self.log = open(self.root / f"service-{time.time():.0f}.log", "w")
        self.process = subprocess.Popen([sys.executable, "-m", "serving"], cwd=self.root, env=self.env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        if not wait:
            return self

        def healthy() -> bool:
            assert self.process.poll() is None, self.output()
            try:
                return self.http.get("/health", timeout=2)[0] == 200
            except OSError:
                return False

        if not wait_until(healthy, timeout_s, 0.3):
            raise AssertionError("the service did not become healthy:\n" + self.output())
        return self

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-5000:]

    def stop(self, timeout_s: float = 60) -> int:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout_s)
        return self.process.returncode

    def scorer_pid(self) -> int:
        return self.scorer_pids()[0]

    def scorer_pids(self) -> list[int]:
        """The scorer processes this service started (the champion's first), oldest first."""
        found = subprocess.run(["pgrep", "-P", str(self.process.pid), "-f", "serving.scorer_"],
                               capture_output=True, text=True).stdout.split()
        return sorted(int(pid) for pid in found)


@pytest.fixture(scope="session")
def service(champion_store, postgres, tmp_path_factory):
    running = Service(tmp_path_factory.mktemp("service"), champion_store, postgres).start()
    yield running
    running.stop()


@pytest.fixture(scope="session")
def http(service):
    return service.http


def metric(service, line_start: str) -> float:
    """The sum of the service's /metrics samples whose line starts so."""
    text = service.http.get("/metrics")[2]
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


def rows_for(database_url: str, request_ids, *, expected: int | None = None, timeout_s: float = 15):
    """Log rows of these requests, waiting (the writer is asynchronous) until `expected` are there."""
    ids = list(request_ids)
    rows: list[dict] = []

    def enough() -> bool:
        with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT request_id, user_index, status_code, model_name, model_version, "
                           "predicted_revenue, input_data, error, route, country, event_1 "
                           "FROM predictions WHERE request_id = ANY(%s) ORDER BY request_id, user_index", (ids,))
            columns = [d.name for d in cursor.description]
            rows[:] = [dict(zip(columns, r)) for r in cursor.fetchall()]
        connection.close()
        return expected is None or len(rows) >= expected

    wait_until(enough, timeout_s)
    return rows


def wait_until(condition, timeout_s: float, step_s: float = 0.2) -> bool:
    """True as soon as ``condition()`` is, False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return False
