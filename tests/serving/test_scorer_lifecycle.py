"""The scorer's lifecycle with real processes: a hung scorer is replaced, a dead service takes its
scorers with it, a stranger on the scorer's port is never trusted, and the watch outlives a failed start."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from serving.model_identity import resolve_model
from serving.scorer_http import ScorerHttp
from serving.scorer_process import ScorerProcess, free_port
from serving.scorer_supervisor import ScorerStats, ScorerSupervisor
from tests.serving.conftest import Service, wait_until
from tests.serving.test_reliability import USER, ended


@pytest.mark.slow
def test_a_frozen_scorer_is_noticed_killed_and_replaced_while_health_says_503(champion_store, postgres, tmp_path):
    service = Service(tmp_path, champion_store, postgres, SCORER_PING_TIMEOUT_S=2).start()
    http = service.http
    try:
        frozen = service.scorer_pid()
        os.kill(frozen, signal.SIGSTOP)
        stopped = time.monotonic()
        assert wait_until(lambda: http.get("/health")[0] == 503, 10, 0.1), "a frozen scorer still looks healthy"
        noticed = time.monotonic() - stopped
        assert wait_until(lambda: ended(frozen), 5), "the frozen scorer was not killed"
        assert wait_until(lambda: http.get("/health")[0] == 200, 120), service.output()
        assert service.scorer_pid() != frozen
        assert http.post("/predict", USER)[0] == 200
        metrics = http.get("/metrics")[2]
        assert "revenue_scorer_hangs_total 1.0" in metrics
        print(f"frozen scorer noticed after {noticed:.1f} s")
    finally:
        service.stop()


@pytest.mark.slow
def test_kill_9_of_the_service_takes_every_scorer_with_it(champion_store, postgres, tmp_path):
    # A shadow on the same version: a second scorer, started from the running event loop.
    service = Service(tmp_path, champion_store, postgres, SHADOW_URI="models:/revenue_model/1").start()
    scorers: list[int] = []
    try:
        assert wait_until(lambda: len(service.scorer_pids()) == 2, 120), service.output()
        scorers = service.scorer_pids()
        service.process.kill()
        service.process.wait()
        assert wait_until(lambda: all(ended(pid) for pid in scorers), 10), "a scorer outlived its service"
    finally:
        for pid in scorers:  # only if the test failed: they are ours
            if not ended(pid):
                os.kill(pid, signal.SIGKILL)
        service.stop()


STRANGER = textwrap.dedent("""
    import http.server, json, sys
    class Answer(http.server.BaseHTTPRequestHandler):
        def _answer(self):
            body = json.dumps({"predictions": [{"predicted_revenue": 99.0, "payer_probability": 0.5,
                               "revenue_p10": 0.0, "revenue_p90": 1.0}], "nonce": "someone else's"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_GET = do_POST = _answer
        def log_message(self, *args):
            pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Answer).serve_forever()
""")


@pytest.mark.slow
def test_a_stranger_on_a_fixed_scorer_port_is_never_trusted(champion_store, postgres, tmp_path):
    port = free_port()
    stranger = subprocess.Popen([sys.executable, "-c", STRANGER, str(port)])
    service = Service(tmp_path, champion_store, postgres, SCORER_PORT=port)
    try:
        service.start(wait=False)
        healthy = []

        def exited() -> bool:
            try:
                healthy.append(service.http.get("/health", timeout=2)[0])
            except OSError:
                pass
            return service.process.poll() is not None

        assert wait_until(exited, 120, 0.2), "the service kept running beside a stranger on its scorer's port"
        assert 200 not in healthy
        assert service.process.returncode != 0
        output = service.output()
        assert "cannot start" in output and "another process" in output, output
        assert "Traceback" not in output
    finally:
        stranger.kill()
        stranger.wait()
        service.stop()


@pytest.mark.slow
def test_the_watch_outlives_a_scorer_that_cannot_be_started_and_backs_off(champion_store, tmp_path, monkeypatch):
    """A start that raises (here: the interpreter is gone, as a failed fork would raise) is retried
    with a growing backoff; once starting works again, the scorer is back."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", champion_store)
    identity = resolve_model("models:/revenue_model@champion", tmp_path / "model")
    python = tmp_path / "python"
    launcher = f"#!/bin/sh\nexec {sys.executable} \"$@\"\n"
    python.write_text(launcher)
    python.chmod(0o755)
    process = ScorerProcess(tmp_path / "model", port=0, workers=1, threads=1, python=str(python))
    stats = ScorerStats()

    async def scenario():
        http = ScorerHttp("127.0.0.1", process.port, timeout_s=10)
        supervisor = ScorerSupervisor(process, http, expected_version=identity.version, stats=stats,
                                      backoff_s=0.2, backoff_max_s=1.0)
        await supervisor.start()
        try:
            python.unlink()
            os.killpg(process.process.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while stats.watch_errors < 3 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert stats.watch_errors >= 3 and not supervisor.ready
            python.write_text(launcher)
            python.chmod(0o755)
            deadline = time.monotonic() + 120
            while not supervisor.ready and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert supervisor.ready, "the scorer was not started again once starting worked"
            assert (await http.request("GET", "/ping"))[0] == 200
        finally:
            await supervisor.stop()
            http.close()

    asyncio.run(scenario())
    assert stats.restarts >= 1
