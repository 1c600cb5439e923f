"""Which model the service serves: resolved once, at start, from the MLflow registry.

The alias in MODEL_URI (``models:/revenue_model@champion``) is resolved to a
version number here and that version is downloaded once; the scorer serves
those files (and reloads them if it restarts), so what /model/info and every
log row say is what answered, even if the alias moves while the service runs.
"""

from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow import MlflowClient

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


def resolve_model(model_uri: str, download_to: Path) -> ModelIdentity:
    """Resolve an alias or stage to a version, download it, read what /model/info shows.

    ``download_to`` appears only once the download is complete (the scorer waits for it).
    """
    match = _REGISTRY_URI.match(model_uri)
    client = MlflowClient()
    name = alias = version = run_id = description = ""
    metrics: dict = {}
    if match:
        name, alias = match["name"], match["alias"] or ""
        if alias:
            found = client.get_model_version_by_alias(name, alias)
        elif match["version"].isdigit():
            found = client.get_model_version(name, match["version"])
        else:  # a stage such as Production
            found = client.get_latest_versions(name, [match["version"]])[0]
        version, run_id, description = str(found.version), found.run_id or "", found.description or ""
        metrics = {k[len("test_"):]: float(v) for k, v in found.tags.items() if k.startswith("test_")}
        model_uri = f"models:/{name}/{version}"
    staging = Path(tempfile.mkdtemp(prefix=".download-", dir=Path(download_to).parent))
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(staging)))
    local = local.rename(download_to)
    info = mlflow.models.Model.load(str(local / "MLmodel"))
    state_file = local / "artifacts" / "feature_state.json"
    features = json.loads(state_file.read_text())["feature_names"] if state_file.exists() else []
    if info.signature and info.signature.inputs:
        inputs = [{"name": c.name, "type": c.type.name, "required": c.required} for c in info.signature.inputs.inputs]
    else:  # the pyfunc describes its inputs in metadata; its signature has none (docs/model.md)
        inputs = (info.metadata or {}).get("inputs", [])
    return ModelIdentity(uri=model_uri, name=name, version=version, alias=alias, run_id=run_id,
                         inputs=inputs, features=features, test_metrics=metrics, description=description)
