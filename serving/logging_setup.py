"""Quiet by default: the project's own lines, and other libraries' only when something fails.

With ``LOG_LEVEL`` empty (the default), the project's loggers (``serving``,
``pipelines``) write at INFO, every other library at ERROR, and the warnings
known to be noise are off: pgserver's full pg_ctl command lines, MLflow's
INFO chatter, its deprecation warnings and its "Add type hints" warning,
uvicorn's start-up lines in the scorer, MLflow's download progress bars. ``LOG_LEVEL=INFO`` (or DEBUG,
WARNING ...) sets every logger to that level and lets Python's warnings
through again, in this process and in the processes it starts.

Nothing here reads the environment: the service passes ``Settings.log_level``,
the pipelines' bootstrap the ``LOG_LEVEL`` it read once.
"""

from __future__ import annotations

import logging

OWN_LOGGERS = ("serving", "pipelines")
# For processes that do not call configure (``mlflow run`` and its steps): the categories of the
# known noise, MLflow's FutureWarning/DeprecationWarning on stages and parameters, its UserWarning
# about type hints, platformdirs' runtime-directory warning.
QUIET_WARNINGS = (DeprecationWarning, FutureWarning, UserWarning)
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str) -> None:
    """Set this process's logging for ``level`` ("" = quiet, else a logging level name)."""
    if level:
        logging.basicConfig(level=_level(level), format=FORMAT, force=True)
        return
    logging.basicConfig(level=logging.ERROR, format=FORMAT, force=True)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO)
    # MLflow configures its own logger and handler when imported; this keeps it at ERROR too.
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    # Warnings become WARNING records of "py.warnings", below the ERROR threshold. A filter would not
    # do: MLflow shows its "Add type hints" warning under a `simplefilter("once")` of its own.
    logging.captureWarnings(True)


def child_environment(level: str) -> dict[str, str]:
    """Variables for the processes this one starts (scorer, ``mlflow run``), so they are as quiet."""
    if level:
        return {"MLFLOW_LOGGING_LEVEL": level.upper(), "UVICORN_LOG_LEVEL": level.lower()}
    # The service downloads each new model version while it serves (hot swaps): no progress bars.
    return {"MLFLOW_LOGGING_LEVEL": "ERROR", "UVICORN_LOG_LEVEL": "warning",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "PYTHONWARNINGS": ",".join(f"ignore::{c.__name__}" for c in QUIET_WARNINGS)}


def _level(name: str) -> int:
    value = logging.getLevelName(name.strip().upper())
    if not isinstance(value, int):
        raise ValueError(f"LOG_LEVEL: {name!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
    return value
