"""MLflow's scoring server app, as ``mlflow.pyfunc.scoring_server.app`` builds it, run by uvicorn.

Seven differences from that module, the first five measured:
- it waits for the model files: the scorer process starts before the service
  has downloaded them, so its imports overlap the download (cold start);
- MLflow's per-request timeout middleware is left out: the service already
  times every call to /invocations out (SCORER_TIMEOUT_S, answered 504), and
  that middleware (a Starlette BaseHTTPMiddleware plus asyncio.wait_for) cost
  0.4 ms of a 5 ms single-user call. Routes, parsing, schema enforcement,
  predict and serialisation are MLflow's, unchanged;
- MLflow's handler runs ``invocations`` with ``asyncio.to_thread``; here the
  loop's default executor runs it in the calling thread instead. The handoff
  to a worker thread and back cost 0.3-0.55 ms per call (two thread wake-ups on a
  shared machine) and bought nothing: the service keeps one call per scorer
  worker in flight (``ScorerClient`` lanes), and parallel scoring comes from
  SCORER_WORKERS processes, not threads under one GIL;
- the answer's JSON is written in one call instead of MLflow's ``json.dump``, which never uses
  the C encoder (only a one-shot encoding does) and so encoded each of a 10,000-user answer's
  40,000 numbers in Python. The model's answer (finite float64 columns) is written by orjson:
  the same JSON values, every number reading back as the same float, in MLflow's records
  format, without the spaces after separators and with exponents written as orjson writes them
  (0.00001 for 1e-05); a third of ``json.dumps``'s CPU, which was itself a quarter of MLflow's
  ``json.dump``'s (benchmarks/answer_path.py). Anything else (NaN, other types) goes through one
  ``json.dumps`` with MLflow's encoder class and options: MLflow's bytes;
- the loaded modules and model are frozen out of garbage collection;
- one route more, ``IDENTITY_ROUTE``: the nonce the service gave this start and the
  identity file it wrote into the model directory, so the service trusts this process,
  and the version it loaded, only when they are the ones it expects;
- nothing of ``revenue_model`` is imported before the model loads (only
  ``serving.scorer_env``), so the model runs its own bundled copy of the package.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
from mlflow.pyfunc import scoring_server
from mlflow.utils.proto_json_utils import NumpyEncoder, _get_jsonable_obj
from starlette.middleware.base import BaseHTTPMiddleware

from serving import logging_setup
from serving.config import Settings
from serving.scorer_env import IDENTITY_FILE, IDENTITY_ROUTE, MODEL_DIR_ENV, NONCE_ENV

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


class _InThisThread(ThreadPoolExecutor):
    """An executor that runs each call at once, in the caller's thread (asyncio takes only
    ThreadPoolExecutors as the default one)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # delivered to the awaiting handler, as a thread's would be
            future.set_exception(error)
        return future


def in_this_thread(app):
    """``app`` (ASGI) on a loop whose default executor is ``_InThisThread``."""

    async def wrapped(scope, receive, send):
        if scope["type"] == "lifespan":  # uvicorn's first call, on the loop that will serve
            asyncio.get_running_loop().set_default_executor(_InThisThread(max_workers=1))
        await app(scope, receive, send)

    return wrapped


_mlflow_predictions_to_json = scoring_server.predictions_to_json


def predictions_to_json(raw_predictions, output, metadata=None):
    """``scoring_server.predictions_to_json``, encoded in one call (see the module's docstring)."""
    if metadata:  # not what /invocations passes; MLflow's own checks and writes it
        return _mlflow_predictions_to_json(raw_predictions, output, metadata)
    if _finite_float_frame(raw_predictions):  # the model's answer, nearly always
        try:
            output.write(orjson.dumps({"predictions": raw_predictions.to_dict(orient="records")}).decode())
            return
        except orjson.JSONEncodeError:  # a column name orjson refuses (a lone surrogate): MLflow's way
            pass
    predictions = _get_jsonable_obj(raw_predictions, pandas_orient="records")
    output.write(json.dumps({"predictions": predictions}, cls=NumpyEncoder))


def _finite_float_frame(value) -> bool:
    """A DataFrame of float64 columns with unique string names and finite values: orjson writes its
    records as JSON that reads back to the very same floats (NaN and Infinity, which JSON has not,
    it would write as null: those stay with MLflow's encoder, which writes NaN)."""
    return (isinstance(value, pd.DataFrame) and value.columns.is_unique
            and all(type(c) is str for c in value.columns) and all(d == np.float64 for d in value.dtypes)
            and bool(np.isfinite(value.to_numpy()).all()))


def install_one_shot_json() -> None:
    """MLflow's ``invocations`` looks ``predictions_to_json`` up in its module at every call."""
    scoring_server.predictions_to_json = predictions_to_json


def with_identity(app, identity: dict):
    """``app`` (MLflow's FastAPI app) with IDENTITY_ROUTE answering ``identity`` as JSON."""
    from fastapi.responses import JSONResponse

    async def identity_route():  # async: a plain function would be run on a worker thread
        return JSONResponse(identity)

    app.get(IDENTITY_ROUTE)(identity_route)
    return app


def identity_of(model_dir: Path) -> dict:
    """What this process says about itself: the start's nonce, its pid, the model's identity file."""
    path = model_dir / IDENTITY_FILE
    model = json.loads(path.read_text()) if path.exists() else None
    return {"nonce": os.environ.get(NONCE_ENV, ""), "pid": os.getpid(), "model": model}


def build():
    """The app uvicorn serves (``serving.scorer_main`` runs it as a factory)."""
    logging_setup.configure(Settings.from_env().log_level)  # as quiet as the service (LOG_LEVEL)
    model_dir = _wait_for(Path(os.environ[MODEL_DIR_ENV]), _WAIT_S)
    install_one_shot_json()
    app = in_this_thread(_without_timeout_middleware(with_identity(
        scoring_server.init(scoring_server.load_model_with_mlflow_config(str(model_dir))), identity_of(model_dir))))
    # MLflow, pandas and the model are here for good: out of every garbage collection from now on
    # (a full collection over them took 90 ms, a stall for whichever request was in flight).
    gc.freeze()
    return app
