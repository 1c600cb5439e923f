"""Models-from-code entry point: MLflow runs this file to build the pyfunc."""

import mlflow

from revenue_model.pyfunc_model import RevenueModel

mlflow.models.set_model(RevenueModel())
