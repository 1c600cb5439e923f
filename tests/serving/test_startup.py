"""What `python -m serving` prints while it starts, and what it says when it cannot: real processes.

Quiet by default (one line per step, nothing from pgserver, MLflow or uvicorn); LOG_LEVEL brings
the libraries back; a known failure is one sentence saying what to do, not a traceback.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from mlflow import MlflowClient

from serving.startup_checks import hint_for, port_problem
from tests.serving.conftest import Service

# Lines that only the libraries print: pgserver's pg_ctl command lines, MLflow's type-hint
# warning (in the scorer), uvicorn's start-up lines (in the scorer), MLflow's INFO lines.
LIBRARY_LINES = re.compile(r"pgserver|Running commandline|pg_ctl|Add type hints|UserWarning|"
                           r"Started server process|Uvicorn running|Waiting for application|INFO mlflow")


def start_embedded(tmp_path, champion_store, **env) -> str:
    """Start a service on its own embedded PostgreSQL, stop it; everything it printed.

    The data folder is outside pytest's: pgserver runs PostgreSQL as another user when root, and
    pytest makes its own folder private again whenever another pytest on the machine starts.
    """
    pgdata = Path(tempfile.mkdtemp(prefix="startup-pg-"))
    service = Service(tmp_path, champion_store, "", PGDATA_DIR=pgdata, **env)
    try:
        service.start().stop()
        return open(service.log.name).read()
    finally:
        if service.process and service.process.poll() is None:
            service.process.kill()
        shutil.rmtree(pgdata, ignore_errors=True)


@pytest.mark.slow
def test_a_quiet_start_prints_one_line_per_step_and_nothing_from_the_libraries(champion_store, tmp_path):
    out = start_embedded(tmp_path, champion_store)
    port = re.search(r"on http://127\.0\.0\.1:(\d+) ", out)[1]
    steps = [r"INFO serving\.scorer: scorer starting: pid \d+, port \d+, ",
             r"INFO serving: database: embedded PostgreSQL in \S+, started in [\d.]+ s$",
             r"INFO serving: model: revenue_model version 1 \(models:/revenue_model@champion\), downloaded in [\d.]+ s$",
             r"INFO serving: scorer: MLflow's scoring server answers, [\d.]+ s after start$",
             rf"^ready in [\d.]+ s: revenue_model version 1 on http://127\.0\.0\.1:{port} \(dashboard: "
             rf"http://127\.0\.0\.1:{port}/dashboard, API docs: http://127\.0\.0\.1:{port}/docs\)$"]
    positions = [re.search(step, out, re.M) for step in steps]
    assert all(positions), out
    assert [p.start() for p in positions] == sorted(p.start() for p in positions), out
    assert not LIBRARY_LINES.search(out), out


@pytest.mark.slow
def test_log_level_brings_the_libraries_lines_back(champion_store, tmp_path):
    out = start_embedded(tmp_path, champion_store, LOG_LEVEL="INFO")
    assert "INFO pgserver: Running commandline" in out, out      # the service's embedded PostgreSQL
    assert "Add type hints to the `predict` method" in out, out   # MLflow, in the scorer
    assert "Uvicorn running on http://127.0.0.1:" in out, out      # uvicorn, in the scorer
    assert re.search(r"^ready in [\d.]+ s: ", out, re.M), out


def run_service(tmp_path, tracking_uri: str, database_url: str = "postgresql://unused", **env):
    service = Service(tmp_path, tracking_uri, database_url, **env)
    return subprocess.run([sys.executable, "-m", "serving"], cwd=tmp_path, env=service.env,
                          capture_output=True, text=True, timeout=300)


def test_a_taken_port_is_said_before_anything_starts(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_service(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", "", PGDATA_DIR=tmp_path / "pg", PORT=port)
    assert result.returncode == 1
    assert result.stderr == (
        f"cannot start: port {port} on 127.0.0.1 is already in use (another `python -m serving`, or "
        f"`make serve` still running?). `ss -ltnp 'sport = :{port}'` shows which process has it; stop it, "
        f"or use another port: PORT={port + 1} make serve\n")
    assert not (tmp_path / "pg").exists()  # nothing was started


def test_make_serve_checks_the_port_before_training(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        service = Service(tmp_path, "", "", PORT=port)
        result = subprocess.run([sys.executable, "-m", "serving.startup_checks"], env=service.env,
                                capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith(f"cannot start: port {port} on 127.0.0.1 is already in use"), result.stderr


def test_a_store_without_a_champion_says_how_to_make_one(tmp_path, postgres):
    store = f"sqlite:///{tmp_path}/mlflow.db"
    MlflowClient(store).search_experiments()  # an empty store, tables made
    result = run_service(tmp_path, store, postgres)
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cannot start: there is no model at models:/revenue_model@champion in the MLflow "
                           f"store {store}. Train and promote one with `make serve` (or `python -m "
                           "pipelines.bootstrap`), or point MODEL_URI / MLFLOW_TRACKING_URI at a registry "
                           "that has it. MLflow said: "), result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_an_unknown_log_level_is_refused_by_name(tmp_path):
    result = run_service(tmp_path, f"sqlite:///{tmp_path}/mlflow.db", LOG_LEVEL="chatty")
    assert result.returncode == 1
    assert result.stderr == "cannot start: LOG_LEVEL: 'chatty' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL\n"


def test_a_free_port_is_no_problem():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert port_problem("127.0.0.1", port) is None


def test_an_address_that_is_not_this_machines_says_so():
    assert port_problem("192.0.2.1", 5001).startswith("cannot listen on 192.0.2.1:5001: ")


@pytest.mark.parametrize("error, expected", [
    (RuntimeError("the scorer exited with status 1"),
     "MLflow's scoring server did not start (the scorer exited with status 1); its own lines are above. "
     "Rerun with LOG_LEVEL=INFO for everything it printed"),
    (OSError(98, "Address already in use"), "the service's port is already in use: [Errno 98] Address already in use"),
    (ValueError("something else"), None),
    (RuntimeError("unrelated"), None),
])
def test_known_failures_get_a_hint_and_others_their_traceback(error, expected):
    assert hint_for(error, model_uri="models:/m@champion", tracking_uri="sqlite:///x.db") == expected
