"""Score users with a model's own code: in a fresh Python process that loads nothing else first.

A process that has imported ``revenue_model`` (every pipeline step has) cannot
run a model's bundled copy of it: Python keeps the first copy imported, and the
pyfunc refuses to load beside a different one (``revenue_model.code_identity``).
So each model is loaded in a child process whose first import of this project's
code is the model's own, through ``mlflow.pyfunc.load_model``:

    from pipelines.own_code_scoring import score_with_own_code
    out = score_with_own_code("models:/revenue_model/3", users)   # DataFrame, or a CSV/Parquet path

Costs a Python start, MLflow's import and the model's load per call (about 4 s
here, see docs/model.md), so call it once per model with all the users.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from revenue_model.contract import OUTPUT_COLUMNS
from revenue_model.validation import InvalidUsers, Problem

# Run with ``python -c`` from an empty folder: nothing of this project is on the path, or
# imported, before MLflow puts the model's code first on it.
_CHILD = """
import json, sys
import pandas as pd
model_uri, users_path, out_path, problems_path = sys.argv[1:5]
if users_path.endswith(".pkl"):
    users = pd.read_pickle(users_path)
elif users_path.lower().endswith(".csv"):
    users = pd.read_csv(users_path)
else:
    users = pd.read_parquet(users_path)
import mlflow.pyfunc
# The requirements check scans every installed distribution (seconds), and this is the caller's
# own environment: its verdict would be the caller's to act on, not this child's.
model = mlflow.pyfunc.load_model(model_uri, suppress_warnings=True)
try:
    out = model.predict(users)
except ValueError as error:
    if not hasattr(error, "problems"):
        raise
    with open(problems_path, "w") as f:
        json.dump([p.as_dict() for p in error.problems], f)
    sys.exit(3)
pd.DataFrame(out).to_parquet(out_path)
"""
_INVALID = 3


class ScoringFailed(RuntimeError):
    """The child process failed for another reason than bad users (its stderr's end is in the message)."""


def score_with_own_code(model_uri: str, users: pd.DataFrame | str | os.PathLike, *,
                        timeout_s: float = 3600.0) -> pd.DataFrame:
    """The model's four outputs (USD, probability) for ``users``, one row each, in their order.

    ``users``: a DataFrame (passed to the model as it is, dtypes and all), or the path of a
    CSV file (read with plain ``pd.read_csv``) or of a Parquet file or folder. The model URI
    is resolved and downloaded in this process (its tracking and registry URIs).

    Raises ``InvalidUsers`` listing every bad (row, field, reason), and ``ScoringFailed`` for
    anything else, including the child taking longer than ``timeout_s`` seconds (it is then
    killed). The child holds all the users at once: docs/model.md has its measured memory.
    """
    with tempfile.TemporaryDirectory(prefix="own-code-scoring-") as directory:
        work = Path(directory)
        if isinstance(users, pd.DataFrame):
            users_path = work / "users.pkl"
            pd.DataFrame(users).to_pickle(users_path)  # a plain frame: no class of ours to unpickle
        else:
            users_path = Path(users).resolve()
        out_path, problems_path = work / "predictions.parquet", work / "problems.json"
        # Resolved and downloaded here, where MLflow's tracking store is already open: the child
        # then loads plain files, without importing the store (half its start on this machine).
        try:
            local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(work / "model"))
        except MlflowException as error:
            raise ScoringFailed(f"scoring {model_uri} failed: {error.message}") from error
        command = [sys.executable, "-c", _CHILD, local, str(users_path), str(out_path), str(problems_path)]
        try:
            done = subprocess.run(command, cwd=work, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired as error:
            raise ScoringFailed(f"scoring {model_uri} took longer than {timeout_s:g} s") from error
        if done.returncode == _INVALID and problems_path.exists():
            raise InvalidUsers([Problem(**p) for p in json.loads(problems_path.read_text())])
        if done.returncode != 0:
            raise ScoringFailed(f"scoring {model_uri} failed (exit status {done.returncode}):\n"
                                + done.stderr[-3000:])
        out = pd.read_parquet(out_path)
    return out[list(OUTPUT_COLUMNS)]
