"""Where a model's drift reference comes from: the profile it carries (the pyfunc artifact
``reference_profile``), or the test split its training run logged (``HOLDOUT_ARTIFACT``).

Apart from model_logging.py and evaluate.py so that readers (the service) do not import the
model's code and LightGBM just to read a JSON file or list a run's artifacts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path, PurePosixPath

import mlflow
from mlflow import MlflowClient
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

from revenue_model.drift import profile_from_json

PROFILE_ARTIFACT = "reference_profile"
HOLDOUT_ARTIFACT = "holdout/test.parquet"  # the test split train logs with its run


def load_reference_profile(model_uri: str) -> dict | None:
    """The drift reference profile logged with a model, or None when the model predates it."""
    flavor = mlflow.models.get_model_info(model_uri).flavors.get("python_function", {})
    entry = flavor.get("artifacts", {}).get(PROFILE_ARTIFACT)
    if entry is None:
        return None
    with tempfile.TemporaryDirectory() as directory:
        local = get_artifact_repository(model_uri).download_artifacts(entry["path"], directory)
        return profile_from_json(Path(local).read_text())


def logged_holdout(run_id: str) -> bool:
    """Whether the run logged its test split (``HOLDOUT_ARTIFACT``)."""
    folder = str(PurePosixPath(HOLDOUT_ARTIFACT).parent)
    return HOLDOUT_ARTIFACT in {a.path for a in MlflowClient().list_artifacts(run_id, folder)}
