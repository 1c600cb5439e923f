"""Drift in MLflow runs: a window of users against a reference profile, logged for the UI.

Training logs its test split against its training split, evaluate a data set
against the model's reference; both through ``log_drift``, so the run shows
``drift_psi_<column>`` metrics, ``drift/drift.json`` (the same per-column dict
as GET /drift), ``drift/bins.json`` (every bin's reference and window share,
to see which categories or ranges moved) and ``charts/drift.png``.
"""

from __future__ import annotations

from typing import Mapping

import mlflow
import numpy as np
import pandas as pd

from pipelines import reports
from revenue_model import drift as D


def inputs_of(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The drift input columns of a validated frame, as arrays."""
    return {c: frame[c].to_numpy() for c in D.CATEGORICAL_INPUTS + D.NUMERIC_INPUTS}


def log_drift(profile: Mapping, frame: pd.DataFrame, outputs: Mapping[str, np.ndarray], *,
              title: str, reference: str) -> dict:
    """Log the drift of ``frame`` (validated users) and the model's ``outputs`` for them; return the report."""
    counts = D.window_counts(profile, inputs_of(frame), outputs)
    report = D.drift_report(profile, counts)
    bins = {}
    for column in D.COLUMNS:
        labels, expected, actual = D.shares(profile["columns"][column], counts[column])
        bins[column] = [{"bin": label, "reference_share": float(e), "window_share": float(a)}
                        for label, e, a in zip(labels, expected, actual)]
    mlflow.log_metrics({f"drift_psi_{c}": v["psi"] for c, v in report["columns"].items()
                        if v["psi"] is not None})
    mlflow.log_dict({**report, "reference": reference}, "drift/drift.json")
    mlflow.log_dict(bins, "drift/bins.json")
    mlflow.log_figure(reports.drift_chart(report, title), "charts/drift.png")
    mlflow.set_tags({"drift_status": report["status"], "drift_reference": reference})
    moved = [f"{c} {v['status']} (PSI {v['psi']:.3f})" for c, v in report["columns"].items()
             if v["status"] in (D.WARN, D.DRIFT)]
    print(f"drift, {title}: {report['status']}" + (f": {', '.join(moved)}" if moved else ""), flush=True)
    return report
