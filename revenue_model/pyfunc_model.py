"""The MLflow pyfunc: a thin shell that loads a RevenuePredictor and hands predict to it.

Logged in MLflow's models-from-code form (``model_code.py``) with this package
in ``code_paths``, so it loads wherever MLflow and the pinned libraries are
installed, without this project on the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow.pyfunc
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import ColSpec, Schema

from revenue_model.contract import (
    EVENT_COLUMNS, INPUT_COLUMNS, OUTPUT_COLUMNS, REQUIRED_COLUMNS, THREADS_ENV,
)
from revenue_model.predictor import BOOSTERS, RevenuePredictor

ARTIFACTS = BOOSTERS + ("feature_state", "ziln")


class RevenueModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        texts = {name: Path(context.artifacts[name]).read_text() for name in ARTIFACTS}
        threads = int(os.environ.get(THREADS_ENV, "0")) or min(2, os.cpu_count() or 1)
        self.predictor = RevenuePredictor.from_texts(texts, num_threads=threads)

    def predict(self, context, model_input, params=None):
        return self.predictor.predict(model_input)


def model_signature() -> ModelSignature:
    """Events are doubles: MLflow's scoring server would truncate 3.7 to 3 in a long column."""
    inputs = Schema([
        ColSpec("double" if c in EVENT_COLUMNS else "string", c, required=c in REQUIRED_COLUMNS)
        for c in INPUT_COLUMNS
    ])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double", c) for c in OUTPUT_COLUMNS]))
