"""Log a RevenuePredictor to MLflow as the project's pyfunc (models-from-code, code_paths).

The drift reference profile travels inside the model as the pyfunc artifact
``reference_profile.json``. The pyfunc never reads it, so models logged
before it existed load as before; ``reference_profiles.load_reference_profile`` says None for them.
"""

from __future__ import annotations

import json
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlflow
import pandas as pd

from pipelines.reference_profiles import PROFILE_ARTIFACT
from revenue_model import compiled_trees
from revenue_model.code_identity import PACKAGE_DIR, code_fingerprint
from revenue_model.pyfunc_model import input_description, model_signature
from revenue_model.predictor import BOOSTERS, RevenuePredictor

# Pinned to what trained the model; listing them skips MLflow's slow inference of requirements.
_RUNTIME = ("mlflow", "lightgbm", "numpy", "pandas", "scipy", "pyarrow")
_COMPILED_RUNTIME = ("lleaves", "llvmlite")


def log_revenue_model(predictor: RevenuePredictor, input_example: pd.DataFrame, *,
                      name: str = "model", registered_model_name: str | None = None,
                      reference_profile: dict | None = None, package_dir: Path = PACKAGE_DIR):
    """Log the predictor (and its drift reference profile) under the active run; returns MLflow's ModelInfo.

    ``package_dir`` is the ``revenue_model`` package bundled with the model (this checkout's
    by default); the model runs that copy wherever it is loaded. Its fingerprint is recorded
    in the MLmodel's metadata (``code_sha256``) beside a description of the inputs.
    """
    package_dir = Path(package_dir)
    with tempfile.TemporaryDirectory() as directory:
        artifacts = {}
        for key, text in predictor.to_texts().items():
            path = Path(directory) / f"{key}.{'json' if key in ('feature_state', 'ziln') else 'txt'}"
            path.write_text(text)
            artifacts[key] = str(path)
        runtime = _RUNTIME
        trees = Path(directory) / compiled_trees.ARTIFACT
        if compiled_trees.compile_boosters({name: Path(artifacts[name]) for name in BOOSTERS}, trees):
            artifacts[compiled_trees.ARTIFACT] = str(trees)
            runtime += _COMPILED_RUNTIME  # the objects load only with these very versions
        if reference_profile is not None:
            path = Path(directory) / f"{PROFILE_ARTIFACT}.json"
            path.write_text(json.dumps(reference_profile))
            artifacts[PROFILE_ARTIFACT] = str(path)
        return mlflow.pyfunc.log_model(
            name=name, python_model=str(package_dir / "model_code.py"), artifacts=artifacts,
            code_paths=[str(package_dir)], signature=model_signature(),
            metadata={"inputs": input_description(), "code_sha256": code_fingerprint(package_dir)},
            input_example=input_example, registered_model_name=registered_model_name,
            pip_requirements=[f"{p}=={version(p)}" for p in runtime],
        )
