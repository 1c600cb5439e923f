"""The process that runs MLflow's scoring server on a loopback port.

``mlflow models serve -m URI`` imports MLflow, downloads the model, then execs
uvicorn on ``mlflow.pyfunc.scoring_server.app``, which imports MLflow again
and loads the model. Here the scorer is started first thing, on
``serving.scorer_app`` (that same app, built by the same ``scoring_server.init``),
and spends its imports (about 2.5 s) while the service resolves and downloads
the model: the app waits for the files, then loads them. On this machine that
took the service's cold start (command to first answer) from 7.1 to 5.2 s.

This module imports nothing heavy: the entry point starts the scorer before it
imports MLflow, aiohttp or pandas.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from revenue_model.contract import THREADS_ENV
from serving.scorer_env import MODEL_DIR_ENV

log = logging.getLogger("serving.scorer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScorerProcess:
    """uvicorn serving MLflow's scoring app for the model that is (or will be) in ``model_dir``."""

    def __init__(self, model_dir: Path, *, port: int, workers: int, threads: int):
        self.model_dir = Path(model_dir)
        self.port = port or free_port()
        self.workers = workers
        self.threads = threads
        self.process: subprocess.Popen | None = None

    def start(self) -> "ScorerProcess":
        """Start it, unless it is running."""
        if self.alive():
            return self
        env = {**os.environ, MODEL_DIR_ENV: str(self.model_dir), THREADS_ENV: str(self.threads),
               "OMP_NUM_THREADS": str(self.threads)}
        command = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(self.port),
                   "--workers", str(self.workers), "--no-access-log", "--factory", "serving.scorer_app:build"]
        self.process = subprocess.Popen(command, env=env, start_new_session=True)
        log.info("scorer starting: pid %s, port %s, %s", self.process.pid, self.port, self.model_dir)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop it, if it runs (stopped twice on the way out: a reaped pid may be someone else's)."""
        if not self.alive():
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout_s)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
