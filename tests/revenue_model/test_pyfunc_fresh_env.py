"""The logged model in a virtual environment built from nothing but its own requirements.txt.

The environment is cached under ~/.cache/revenue-model/, keyed by the requirements and the
Python version, so only the first run pays for the install (pip's own cache makes that
quick). This project is not installed there, and the model is loaded from another folder.
"""

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pytest

from revenue_model.contract import EVENT_COLUMNS, OUTPUT_COLUMNS
from revenue_model.synthetic import generate_users

CACHE = Path.home() / ".cache" / "revenue-model"

LOAD_CSV_AND_PREDICT = textwrap.dedent("""
    import importlib.util, json, sys
    import mlflow.pyfunc, pandas as pd
    model = mlflow.pyfunc.load_model(sys.argv[1])
    users = pd.read_csv(sys.argv[2])
    out = model.predict(users)
    import revenue_model
    print(json.dumps({"columns": list(out.columns), "values": out.to_numpy().tolist(),
                      "event_dtypes": [str(users[c].dtype) for c in ("event_1", "event_2", "event_3")],
                      "package": revenue_model.__file__,
                      "compiled": model.unwrap_python_model().predictor.ziln.compiled is not None,
                      "project_importable": [m for m in ("serving", "pipelines") if importlib.util.find_spec(m)]}))
""")


def requirements_venv(requirements: Path) -> Path:
    """A venv holding exactly ``requirements`` (pip install -r), built once per content."""
    text = requirements.read_text()
    key = hashlib.sha256(f"{sys.version}\n{text}".encode()).hexdigest()[:16]
    venv = CACHE / f"venv-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f"venv-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run building the same one: wait for it
        if not (venv / "complete").exists():  # absent, or a build that was interrupted
            shutil.rmtree(venv, ignore_errors=True)
            # sys.executable is this project's venv: `-m venv` builds on its base interpreter.
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r", str(requirements)],
                           check=True, timeout=1800)
            (venv / "complete").write_text(text)
    return venv


@pytest.mark.slow
def test_the_model_predicts_from_a_plain_read_csv_in_a_venv_of_its_own_requirements(
        champion_store, predictor, tmp_path):
    mlflow.set_tracking_uri(champion_store)
    try:
        requirements = Path(mlflow.pyfunc.get_model_dependencies("models:/revenue_model@champion"))
    finally:
        mlflow.set_tracking_uri(None)
    venv = requirements_venv(requirements)
    installed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                               capture_output=True, text=True, check=True).stdout
    assert "revenue-model" not in {p["name"].lower() for p in json.loads(installed)}

    # Users no one here has scored: a new seed, counts written as integers, as files hold them.
    users = generate_users(300, seed=2026).drop(columns=["revenue", "install_date"])
    users = users.astype({"event_1": np.int64, "event_2": np.int64})
    path = tmp_path / "new_users.csv"
    users.to_csv(path, index=False)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["MLFLOW_TRACKING_URI"] = champion_store
    result = subprocess.run([str(venv / "bin" / "python"), "-c", LOAD_CSV_AND_PREDICT,
                             "models:/revenue_model@champion", str(path)],
                            cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["event_dtypes"][:2] == ["int64", "int64"]  # the frame as read, not cast
    assert answer["project_importable"] == []
    assert "/code/revenue_model/" in answer["package"]
    assert answer["columns"] == list(OUTPUT_COLUMNS)
    assert answer["compiled"]  # the model's own requirements are enough for its compiled trees
    expected = predictor.predict(users.astype({c: float for c in EVENT_COLUMNS})).to_numpy()
    np.testing.assert_allclose(np.array(answer["values"]), expected, rtol=1e-12)
