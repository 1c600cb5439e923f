"""Evaluation metrics for D7 revenue predictions, as pure functions on arrays.

``y_true`` is actual D7 revenue in USD, ``y_pred`` predicted (expected) D7
revenue in USD, both of shape (rows,). The ranking metrics follow Wang, Liu
and Miao (2019) and google/lifetime_value: the gain chart sorts users by
prediction and accumulates the share of actual revenue; normalized Gini is the
model's Gini over the Gini of sorting by the actual values (1 for a perfect
ranking, about 0 for a random one).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def mae(y_true, y_pred) -> float:
    return float(np.mean(np.abs(np.asarray(y_true) - np.asarray(y_pred))))


def rmse(y_true, y_pred) -> float:
    return float(np.sqrt(np.mean((np.asarray(y_true) - np.asarray(y_pred)) ** 2)))


def r2(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    total = np.sum((y_true - y_true.mean()) ** 2)
    return float(1.0 - np.sum((y_true - y_pred) ** 2) / total) if total > 0 else float("nan")


def gain_curve(y_true, y_pred) -> np.ndarray:
    """Cumulative share of actual revenue in the top k users by prediction, k = 1..rows.

    Ties in y_pred are broken by averaging their revenue, so the order of tied
    rows does not matter (a constant prediction gives the diagonal).
    """
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    order = np.argsort(-y_pred, kind="stable")
    sorted_pred, sorted_true = y_pred[order], y_true[order]
    _, start, counts = np.unique(-sorted_pred, return_index=True, return_counts=True)
    group_mean = np.add.reduceat(sorted_true, start) / counts
    smoothed = np.repeat(group_mean, counts)
    total = sorted_true.sum()
    return np.cumsum(smoothed) / total if total > 0 else np.zeros(len(y_true))


def gini(y_true, y_pred) -> float:
    """Gini of the gain chart: 2 * area under the gain curve - 1."""
    return float(2.0 * gain_curve(y_true, y_pred).mean() - 1.0)


def normalized_gini(y_true, y_pred) -> float:
    best = gini(y_true, y_true)
    return gini(y_true, y_pred) / best if best > 0 else float("nan")


def spearman(y_true, y_pred) -> float:
    a, b = rankdata(y_true), rankdata(y_pred)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / denominator) if denominator > 0 else float("nan")


def decile_table(y_true, y_pred, deciles: int = 10) -> dict[str, list[float]]:
    """Mean predicted and mean actual revenue (USD) per decile of prediction, top decile first."""
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    order = np.argsort(-y_pred, kind="stable")
    groups = np.array_split(order, deciles)
    return {
        "decile": list(range(1, deciles + 1)),
        "mean_predicted": [float(y_pred[g].mean()) for g in groups],
        "mean_actual": [float(y_true[g].mean()) for g in groups],
    }


def decile_mape(y_true, y_pred, deciles: int = 10) -> float:
    """Mean absolute percentage error of decile means (deciles with zero actual are skipped)."""
    table = decile_table(y_true, y_pred, deciles)
    actual, predicted = np.array(table["mean_actual"]), np.array(table["mean_predicted"])
    keep = actual > 0
    return float(np.mean(np.abs(predicted[keep] - actual[keep]) / actual[keep])) if keep.any() else float("nan")


def total_ratio(y_true, y_pred) -> float:
    """Total predicted over total actual revenue: 1 when a cohort's sum is right."""
    total = float(np.sum(y_true))
    return float(np.sum(y_pred)) / total if total > 0 else float("nan")


def share_at_or_below(y_true, bound) -> float:
    """Share of users whose revenue is <= their bound (0.9 expected for a calibrated p90)."""
    return float(np.mean(np.asarray(y_true) <= np.asarray(bound)))


def share_below(y_true, bound) -> float:
    """Share of users whose revenue is < their bound."""
    return float(np.mean(np.asarray(y_true) < np.asarray(bound)))


def brier(payer, probability) -> float:
    """Mean squared error of P(payer) against 0/1 outcomes."""
    return float(np.mean((np.asarray(probability, float) - np.asarray(payer, float)) ** 2))


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """The metrics any candidate has (it predicts only expected revenue)."""
    return {
        "mae": mae(y_true, y_pred), "rmse": rmse(y_true, y_pred), "r2": r2(y_true, y_pred),
        "normalized_gini": normalized_gini(y_true, y_pred), "spearman": spearman(y_true, y_pred),
        "decile_mape": decile_mape(y_true, y_pred), "total_ratio": total_ratio(y_true, y_pred),
    }


def full_metrics(y_true, predictions: dict) -> dict[str, float]:
    """regression_metrics plus the distribution metrics of a model with the contract's outputs."""
    y_true = np.asarray(y_true, float)
    out = regression_metrics(y_true, predictions["predicted_revenue"])
    out.update({
        "share_at_or_below_p90": share_at_or_below(y_true, predictions["revenue_p90"]),
        "share_below_p10": share_below(y_true, predictions["revenue_p10"]),
        "brier": brier(y_true > 0, predictions["payer_probability"]),
    })
    return out
