"""Which model a scorer serves: an alias resolved to a version, and that version downloaded.

The alias in MODEL_URI (``models:/revenue_model@champion``) is resolved to a
version number (``locate``) and that version is downloaded (``fetch``) into a
directory a scorer loads; the scorer serves those files (and reloads them if it
restarts). The version travels with each request that scorer answers, so what
every log row and X-Model-Version say is what answered, even while the alias
moves (model_follower.py starts a scorer on the new version beside the old).
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from serving.scorer_env import IDENTITY_FILE

_REGISTRY_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))$")


@dataclass(frozen=True)
class ModelIdentity:
    uri: str                 # models:/name/version when registered
    name: str = ""
    version: str = ""
    alias: str = ""
    run_id: str = ""
    inputs: list = field(default_factory=list)
    features: list = field(default_factory=list)
    test_metrics: dict = field(default_factory=dict)
    description: str = ""

    def as_dict(self) -> dict:
        return {"model_name": self.name, "model_version": self.version, "alias": self.alias,
                "model_uri": self.uri, "run_id": self.run_id, "inputs": self.inputs,
                "features": self.features, "test_metrics": self.test_metrics,
                "description": self.description}


def movable(model_uri: str) -> bool:
    """Whether the version behind ``model_uri`` can change: an alias or a stage, not a number or a path."""
    match = _REGISTRY_URI.match(model_uri)
    return bool(match) and not (match["version"] or "").isdigit()


def locate(model_uri: str, client: MlflowClient | None = None) -> ModelIdentity:
    """The version an alias or stage points to now, from the registry (nothing downloaded).

    ``uri`` of the answer names that version (``models:/name/3``); inputs and features are
    left empty until ``fetch``. A URI outside the registry (a run, a path) is returned as is.
    Raises MlflowException when the registry does not know the name or alias.
    """
    match = _REGISTRY_URI.match(model_uri)
    if not match:
        return ModelIdentity(uri=model_uri)
    client = client or MlflowClient()
    name, alias = match["name"], match["alias"] or ""
    if alias:
        found = client.get_model_version_by_alias(name, alias)
    elif match["version"].isdigit():
        found = client.get_model_version(name, match["version"])
    else:  # a stage such as Production
        latest = client.get_latest_versions(name, [match["version"]])
        if not latest:
            raise LookupError(f"no version of {name} is in stage {match['version']}")
        found = latest[0]
    version = str(found.version)
    metrics = {k[len("test_"):]: float(v) for k, v in found.tags.items() if k.startswith("test_")}
    return ModelIdentity(uri=f"models:/{name}/{version}", name=name, version=version, alias=alias,
                         run_id=found.run_id or "", test_metrics=metrics, description=found.description or "")


def fetch(located: ModelIdentity, download_to: Path) -> ModelIdentity:
    """Download the located version into ``download_to``; its identity with inputs and features.

    ``download_to`` appears only once the download is complete (the scorer waits for it), with
    the identity file the scorer reports at readiness (IDENTITY_FILE) inside.
    """
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=Path(download_to).parent))
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=located.uri, dst_path=str(staging)))
    (local / IDENTITY_FILE).write_text(json.dumps(
        {"model_uri": located.uri, "model_name": located.name, "model_version": located.version}))
    local = local.rename(download_to)
    info = mlflow.models.Model.load(str(local / "MLmodel"))
    state_file = local / "artifacts" / "feature_state.json"
    features = json.loads(state_file.read_text())["feature_names"] if state_file.exists() else []
    if info.signature and info.signature.inputs:
        inputs = [{"name": c.name, "type": c.type.name, "required": c.required} for c in info.signature.inputs.inputs]
    else:  # the pyfunc describes its inputs in metadata; its signature has none (docs/model.md)
        inputs = (info.metadata or {}).get("inputs", [])
    return replace(located, inputs=inputs, features=features)


def resolve_model(model_uri: str, download_to: Path) -> ModelIdentity:
    """``locate`` then ``fetch``: the version behind ``model_uri`` now, downloaded."""
    return fetch(locate(model_uri), download_to)
