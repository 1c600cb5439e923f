"""The process that runs MLflow's scoring server on a loopback port.

``mlflow models serve -m URI`` imports MLflow, downloads the model, then execs
uvicorn on ``mlflow.pyfunc.scoring_server.app``, which imports MLflow again
and loads the model. Here the scorer is started first thing, on
``serving.scorer_app`` (that same app, built by the same ``scoring_server.init``),
and spends its imports (about 2.5 s) while the service resolves and downloads
the model: the app waits for the files, then loads them. On this machine that
took the service's cold start (command to first answer) from 7.1 to 5.2 s.

Each start gets a fresh nonce, which the scorer returns from its identity route
(scorer_app.py): a process that answers on the port without it (a scorer left
behind by another service on a fixed SCORER_PORT) is never trusted. Each start
also gets a pipe whose write end only this process holds: the scorer kills itself
when it closes, so it never outlives the service (scorer_main.py).

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
import uuid
from pathlib import Path

from revenue_model.contract import THREADS_ENV
from serving.scorer_env import MODEL_DIR_ENV, NICE_ENV, NONCE_ENV, PARENT_FD_ENV

log = logging.getLogger("serving.scorer")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScorerProcess:
    """uvicorn serving MLflow's scoring app for the model that is (or will be) in ``model_dir``.

    ``nice``: CPU priority offset of the scorer (a shadow's is lowered). ``python``: the
    interpreter to run (tests point it at one that cannot start).
    """

    def __init__(self, model_dir: Path, *, port: int, workers: int, threads: int, nice: int = 0,
                 python: str = sys.executable):
        self.model_dir = Path(model_dir)
        self.port = port or free_port()
        self.workers = workers
        self.threads = threads
        self.nice = nice
        self.python = python
        self.process: subprocess.Popen | None = None
        self.nonce = ""
        self._lifeline: int | None = None  # the pipe's write end: the scorer lives while it is open

    def start(self) -> "ScorerProcess":
        """Start it, unless it is running. Raises OSError when the process cannot be made."""
        if self.alive():
            return self
        self._close_lifeline()
        nonce = uuid.uuid4().hex
        read_end, write_end = os.pipe()  # both close-on-exec: no other child inherits them
        env = {**os.environ, MODEL_DIR_ENV: str(self.model_dir), THREADS_ENV: str(self.threads),
               "OMP_NUM_THREADS": str(self.threads), NONCE_ENV: nonce, PARENT_FD_ENV: str(read_end),
               NICE_ENV: str(self.nice)}
        command = [self.python, "-m", "serving.scorer_main", "--port", str(self.port),
                   "--workers", str(self.workers)]
        try:
            self.process = subprocess.Popen(command, env=env, start_new_session=True, pass_fds=(read_end,))
        except BaseException:
            os.close(write_end)
            raise
        finally:
            os.close(read_end)
        self.nonce, self._lifeline = nonce, write_end
        log.info("scorer starting: pid %s, port %s, %s", self.process.pid, self.port, self.model_dir)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the scorer and its workers (a hung scorer answers no SIGTERM)."""
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()
        self._close_lifeline()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop it, if it runs (stopped twice on the way out: a reaped pid may be someone else's)."""
        if self.alive():
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout_s)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._close_lifeline()

    def _close_lifeline(self) -> None:
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None
