"""Run the service: `python -m serving`.

The scorer (MLflow's scoring server) is started first, before this process
imports MLflow, aiohttp and pandas: its own imports and start-up then run while
this process resolves and downloads the model it waits for (serving.scorer_app).
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from serving.config import Settings
from serving.scorer_process import ScorerProcess


def main() -> None:
    # The log writer is a thread: a request must not queue behind it for the default 5 ms
    # switch interval every time the event loop gives up the GIL for a socket call.
    sys.setswitchinterval(0.0005)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Until the service's event loop takes the signals over, only remember them: an exception raised
    # from a handler during the imports below can land in an import-lock callback and be ignored.
    stop_requested = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop_requested.set())
    try:
        settings = Settings.from_env()
    except ValueError as error:
        raise SystemExit(f"bad setting: {error}") from None
    model_dir = Path(tempfile.mkdtemp(prefix="revenue-model-"))
    scorer = ScorerProcess(model_dir / "model", port=settings.scorer_port, workers=settings.scorer_workers,
                           threads=settings.scorer_threads).start()
    try:
        from serving.server import run  # after the scorer started: see the module docstring
        run(settings, scorer, stop_requested)
    finally:
        scorer.stop()
        shutil.rmtree(model_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
