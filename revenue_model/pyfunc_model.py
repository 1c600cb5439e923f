"""The MLflow pyfunc: a thin shell that loads a RevenuePredictor and hands predict to it.

Logged in MLflow's models-from-code form (``model_code.py``) with this package
in ``code_paths``, so it loads wherever MLflow and the pinned libraries are
installed, without this project on the path; and it refuses to run with any
other copy of this package than its own (``code_identity``).

The signature has no input schema, on purpose (docs/model.md has the figures):
MLflow's schema enforcement refuses int64 events for a ``double`` column (what
``pd.read_csv`` gives), ``AnyType`` lets them through at 1-3 us per value, and
any input schema made a single-user call through the scoring server about a
third slower; the model's own validator already judges every value and lists
every problem. The inputs are described
for readers in the MLmodel's ``metadata["inputs"]`` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow.pyfunc
from mlflow.exceptions import MlflowException
from mlflow.models.signature import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import ColSpec, Schema

from revenue_model import compiled_trees
from revenue_model.code_identity import check_code_in_use
from revenue_model.contract import (
    EVENT_COLUMNS, INPUT_COLUMNS, OUTPUT_COLUMNS, REQUIRED_COLUMNS, THREADS_ENV,
)
from revenue_model.predictor import BOOSTERS, RevenuePredictor
from revenue_model.validation import InvalidUsers

ARTIFACTS = BOOSTERS + ("feature_state", "ziln")


class InvalidModelInput(InvalidUsers, MlflowException):
    """``InvalidUsers`` that MLflow's scoring server answers as a 400 with the problems in its body
    (any other exception there becomes a generic "unexpected error" with a stack trace)."""

    def __init__(self, problems):
        InvalidUsers.__init__(self, problems)
        MlflowException.__init__(self, str(self), error_code=INVALID_PARAMETER_VALUE,
                                 problems=[p.as_dict() for p in self.problems])


class RevenueModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        # artifacts are <model>/artifacts/<file>; code_paths puts this package in <model>/code/
        model_root = Path(context.artifacts["ziln"]).parent.parent
        check_code_in_use(model_root / "code" / "revenue_model")
        texts = {name: Path(context.artifacts[name]).read_text() for name in ARTIFACTS}
        threads = int(os.environ.get(THREADS_ENV, "0")) or min(2, os.cpu_count() or 1)
        self.predictor = RevenuePredictor.from_texts(texts, num_threads=threads)
        # Models logged without compiled trees (or loaded where they cannot run) score with LightGBM.
        self.predictor.ziln.compiled = compiled_trees.load_compiled(
            {name: Path(context.artifacts[name]) for name in BOOSTERS}, context.artifacts.get(compiled_trees.ARTIFACT))

    def predict(self, context, model_input, params=None):
        """A DataFrame (any of pandas' dtypes for the contract's columns), a list of user dicts,
        or {column: values} (MLflow's scoring server passes "inputs" so) -> the four outputs."""
        try:
            return self.predictor.predict(model_input)
        except InvalidUsers as error:
            raise InvalidModelInput(error.problems) from None


def model_signature() -> ModelSignature:
    """Outputs only: see the module's docstring for why there is no input schema."""
    return ModelSignature(inputs=None, outputs=Schema([ColSpec("double", c) for c in OUTPUT_COLUMNS]))


def input_description() -> list[dict]:
    """The contract's input columns, for the MLmodel's metadata (and GET /model/info)."""
    return [{"name": c, "type": "number" if c in EVENT_COLUMNS else "string", "required": c in REQUIRED_COLUMNS}
            for c in INPUT_COLUMNS]
