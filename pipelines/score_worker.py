"""Scoring processes that run the model's own bundled code, for batch scoring.

MLflow's ``load_model`` only prepends the model's ``code`` directory to
``sys.path``; a process that imported the package before loading keeps the
installed copy (../shared/notes-round2.md). So the scoring happens in
spawn-started processes whose only imports, before the model loads, are this
module's: MLflow, NumPy, pandas and pyarrow. Nothing here may import
``revenue_model`` or anything that does. ``check_own_code`` proves it after
each load and refuses to score otherwise.

``ScoringPool`` is the parent's side: ``submit(batch, first_row)`` returns a
future of the outputs as one float64 block (rows x output columns).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

# revenue_model.contract.THREADS_ENV, spelled out: importing it here would defeat this module.
_THREADS_ENV = "REVENUE_MODEL_THREADS"
_ARROW_STRINGS = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}
# How many problems an error message quotes (the rest are counted).
_SHOWN_PROBLEMS = 10

# One per scoring process: where the model is, LightGBM's threads, then the loaded pyfunc.
_settings: tuple[str, int] | None = None
_model = None
_output_columns: list[str] | None = None


class ScoringError(ValueError):
    """Rows the model refused, numbered from the first row of the whole input (0-based)."""


def check_own_code(model_path: str | Path) -> None:
    """Raise unless every imported module the model bundles was imported from the bundle.

    ``model_path`` is a local MLflow model directory (the one ``MLmodel`` is in).
    """
    from mlflow.models import Model

    model_path = Path(model_path)
    code = Model.load(str(model_path / "MLmodel")).flavors.get("python_function", {}).get("code")
    if not code:
        return
    bundle = (model_path / code).resolve()
    for entry in bundle.iterdir():
        name = entry.stem if entry.suffix == ".py" else entry.name
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None)
        if origin and not Path(origin).resolve().is_relative_to(bundle):
            raise RuntimeError(
                f"module {name!r} in use comes from {origin}, not from the model's bundled code in "
                f"{bundle}: it was imported before the model loaded, so the scores would not be "
                "the model's own")


def configure(model_path: str, threads: int) -> None:
    """The pool's initializer: it only remembers (an initializer's error breaks the whole pool
    with a message that names nothing; the load's errors reach the caller through a future)."""
    global _settings
    _settings = (model_path, threads)


def load(model_path: str, threads: int) -> None:
    """Load the model in this process; ``threads`` is LightGBM's thread count."""
    global _model, _output_columns
    import mlflow.pyfunc

    os.environ[_THREADS_ENV] = str(threads)
    _model = mlflow.pyfunc.load_model(model_path)
    check_own_code(model_path)
    signature = _model.metadata.signature
    _output_columns = signature.outputs.input_names() if signature and signature.outputs else None


def score(batch: pa.RecordBatch, first_row: int) -> np.ndarray:
    """The model's outputs for one chunk: a float64 block, rows x the model's output columns."""
    if _model is None:
        load(*_settings)
    # Strings stay Arrow strings, which the model's validator reads as they are: with Python
    # strings, to_pandas took 0.22 s for 50,000 rows instead of 0.02 s (loaded machine).
    frame = batch.to_pandas(types_mapper=_ARROW_STRINGS.get)
    try:
        out = _model.predict(frame)
    except Exception as exc:
        problems = getattr(exc, "problems", None)  # the model's InvalidUsers: (row, field, reason)
        if problems is None:
            raise ScoringError(f"rows {first_row}-{first_row + len(frame) - 1}: {exc}") from None
        shown = "; ".join(f"row {first_row + p.row}: {p.field} {p.reason}"
                          for p in problems[:_SHOWN_PROBLEMS])
        more = f" (and {len(problems) - _SHOWN_PROBLEMS} more)" if len(problems) > _SHOWN_PROBLEMS else ""
        raise ScoringError(f"{len(problems)} invalid field(s): {shown}{more}") from None
    out = pd.DataFrame(out)
    # In the signature's order, which is the order the parent names the block's columns in.
    return np.ascontiguousarray((out[_output_columns] if _output_columns else out).to_numpy(np.float64))


class ScoringPool:
    """``workers`` spawn-started processes, each with the model at ``model_path`` loaded once."""

    def __init__(self, model_path: str | Path, workers: int, threads: int):
        # The processes start at the first submit, each loading the model at its first chunk.
        self.workers = workers
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=configure, initargs=(str(model_path), threads))

    def submit(self, batch: pa.RecordBatch, first_row: int) -> Future:
        return self._pool.submit(score, batch, first_row)

    def close(self, *, cancel: bool = False) -> None:
        self._pool.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> "ScoringPool":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self.close(cancel=exc_type is not None)
