"""MLflow's scoring server app, as ``mlflow.pyfunc.scoring_server.app`` builds it, run by uvicorn.

Three differences from that module, all measured:
- it waits for the model files: the scorer process starts before the service
  has downloaded them, so its imports overlap the download (cold start);
- MLflow's per-request timeout middleware is left out: the service already
  times every call to /invocations out (SCORER_TIMEOUT_S, answered 504), and
  that middleware (a Starlette BaseHTTPMiddleware plus asyncio.wait_for) cost
  0.4 ms of a 5 ms single-user call. Routes, parsing, schema enforcement,
  predict and serialisation are MLflow's, unchanged;
- the loaded modules and model are frozen out of garbage collection.
"""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path

from mlflow.pyfunc import scoring_server
from starlette.middleware.base import BaseHTTPMiddleware

from serving.scorer_process import MODEL_DIR_ENV

_WAIT_S = 600.0


def _wait_for(path: Path, timeout_s: float) -> Path:
    # The service renames the finished download to ``path``: it exists only when complete.
    parent, deadline = os.getppid(), time.monotonic() + timeout_s
    while not path.exists():
        if os.getppid() != parent:
            raise SystemExit("the service that started this scorer has exited")
        if time.monotonic() > deadline:
            raise SystemExit(f"no model in {path} after {timeout_s:.0f} s")
        time.sleep(0.02)
    return path


def _without_timeout_middleware(app):
    app.user_middleware[:] = [m for m in app.user_middleware
                              if not (m.cls is BaseHTTPMiddleware
                                      and getattr(m.kwargs.get("dispatch"), "__name__", "") == "timeout_middleware")]
    return app


app = _without_timeout_middleware(scoring_server.init(scoring_server.load_model_with_mlflow_config(
    str(_wait_for(Path(os.environ[MODEL_DIR_ENV]), _WAIT_S)))))
# MLflow, pandas and the model are here for good: out of every garbage collection from now on
# (a full collection over them took 90 ms, a stall for whichever request was in flight).
gc.freeze()
