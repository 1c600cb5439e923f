"""Run the service: `python -m serving`.

The scorer (MLflow's scoring server) is started first, before this process
imports MLflow, aiohttp and pandas: its own imports and start-up then run while
this process resolves and downloads the model it waits for (serving.scorer_app).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from serving import logging_setup
from serving.config import Settings
from serving.scorer_process import ScorerProcess
from serving.startup_checks import hint_for, port_problem


def main() -> None:
    started_at = time.monotonic()
    # The log writer is a thread: a request must not queue behind it for the default 5 ms
    # switch interval every time the event loop gives up the GIL for a socket call.
    sys.setswitchinterval(0.0005)
    try:
        settings = Settings.from_env()  # a setting out of its range (SHADOW_SHARE) is a ValueError
        logging_setup.configure(settings.log_level)
    except ValueError as error:
        sys.exit(f"cannot start: {error}")
    # Before MLflow is imported (it sets its logger's level from this) and the scorer inherits it.
    os.environ.update(logging_setup.child_environment(settings.log_level))
    # Said now, not after the scorer and the model have spent seconds starting.
    if problem := port_problem(settings.host, settings.port):
        sys.exit(f"cannot start: {problem}")
    # Until the service's event loop takes the signals over, only remember them: an exception raised
    # from a handler during the imports below can land in an import-lock callback and be ignored.
    stop_requested = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop_requested.set())
    model_dir = Path(tempfile.mkdtemp(prefix="revenue-model-"))
    scorer = ScorerProcess(model_dir / "model", port=settings.scorer_port, workers=settings.scorer_workers,
                           threads=settings.scorer_threads).start()
    try:
        from serving.server import run  # after the scorer started: see the module docstring
        run(settings, scorer, stop_requested, started_at=started_at)
    except Exception as error:
        hint = hint_for(error, model_uri=settings.model_uri, tracking_uri=settings.tracking_uri)
        if hint is None:
            raise
        sys.exit(f"cannot start: {hint}")
    finally:
        scorer.stop()
        shutil.rmtree(model_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
