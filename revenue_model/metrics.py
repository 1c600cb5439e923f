"""Evaluation metrics for D7 revenue predictions, as pure functions on arrays.

``y_true`` is actual D7 revenue in USD, ``y_pred`` predicted (expected) D7
revenue in USD, both of shape (rows,). The ranking metrics follow Wang, Liu
and Miao (2019) and google/lifetime_value: the gain chart sorts users by
prediction and accumulates the share of actual revenue; normalized Gini is the
model's Gini over the Gini of sorting by the actual values (1 for a perfect
ranking, about 0 for a random one).

Every ranking metric is defined on *groups* of users: users with equal scores
form a group, groups are ordered from the highest score, and the users of a
group share its mean (ties are averaged, so row order never matters). The
per-user functions group by exact values; the service's realised metrics
(``Outcomes`` and ``realised_metrics``) get their groups from PostgreSQL,
where scores are rounded to 2% bins, so the same formulas give the same
numbers up to that rounding (normalized Gini within 0.005 for 200 users,
0.0012 for 1,000, less with more), while counts and sums stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

NAN = float("nan")


# -- groups: the one definition of ties ---------------------------------------------------------

def groups_of(scores, *weights) -> np.ndarray:
    """Rows grouped by equal score, highest score first: array (groups, 1 + len(weights)) of
    the group's row count and the sum of each weight."""
    scores = np.asarray(scores, float)
    _, inverse = np.unique(-scores, return_inverse=True)
    size = inverse.max() + 1 if len(inverse) else 0
    columns = [np.bincount(inverse, minlength=size).astype(float)]
    columns += [np.bincount(inverse, weights=np.asarray(w, float), minlength=size) for w in weights]
    return np.column_stack(columns) if columns[0].size else np.zeros((0, 1 + len(weights)))


def gini_of_groups(counts, actual_sums) -> float:
    """Gini of the gain chart (2 * area under it - 1) for users in groups ordered from the
    highest prediction, each group's users counted at the group's mean revenue.

    Equals ``2 * gain_curve(...).mean() - 1`` of the users: the curve's sum over a group of c
    users after S USD is c * S + s * (c + 1) / 2 for the group's s USD. NaN without revenue.
    """
    counts, sums = np.asarray(counts, float), np.asarray(actual_sums, float)
    total, n = sums.sum(), counts.sum()
    if total <= 0 or n <= 0:
        return NAN
    before = np.cumsum(sums) - sums
    return float(2.0 * np.sum(counts * before + sums * (counts + 1) / 2) / (total * n) - 1.0)


def gain_points(counts, actual_sums) -> tuple[np.ndarray, np.ndarray]:
    """The gain chart of groups ordered from the highest prediction, as points from (0, 0) to
    (1, 1): share of users against share of revenue at each group's end (straight within a group,
    as its users share its mean)."""
    counts, sums = np.asarray(counts, float), np.asarray(actual_sums, float)
    x = np.concatenate([[0.0], np.cumsum(counts)]) / max(counts.sum(), 1e-300)
    y = np.concatenate([[0.0], np.cumsum(sums)]) / max(sums.sum(), 1e-300)
    return x, y


def auc_of_groups(positives, negatives) -> float:
    """Area under the ROC curve for groups ordered from the highest score: the chance that a
    random positive scores above a random negative, a tie counting half. NaN without both."""
    positives, negatives = np.asarray(positives, float), np.asarray(negatives, float)
    p, n = positives.sum(), negatives.sum()
    if p <= 0 or n <= 0:
        return NAN
    lower = n - np.cumsum(negatives)  # negatives in the groups after this one
    return float(np.sum(positives * (lower + negatives / 2)) / (p * n))


def deciles_of_groups(counts, predicted_sums, actual_sums, deciles: int = 10) -> dict[str, list]:
    """Users in groups ordered from the highest prediction, cut into ``deciles`` of (nearly)
    equal size (decile d ends at user d * n // deciles, top decile first); a group across a
    cut is shared out at its means. Per decile: n, mean predicted and mean actual USD."""
    counts = np.asarray(counts, float)
    keep = counts > 0
    counts = counts[keep]
    sums = [np.asarray(s, float)[keep] for s in (predicted_sums, actual_sums)]
    n = int(round(counts.sum()))
    cuts = (np.arange(deciles + 1) * n) // deciles
    sizes = np.diff(cuts)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = [np.diff(_running_sum(cuts, counts, s)) / sizes for s in sums]
    return {"decile": list(range(1, deciles + 1)), "n": sizes.tolist(),
            "mean_predicted": means[0].tolist(), "mean_actual": means[1].tolist()}


def _running_sum(positions, counts, sums) -> np.ndarray:
    """Sum over the first x users (x in ``positions``), each group's users at the group's mean."""
    if not len(counts):
        return np.zeros(len(positions))
    edges = np.concatenate([[0.0], np.cumsum(counts)])
    before = np.concatenate([[0.0], np.cumsum(sums)])
    g = np.clip(np.searchsorted(edges, positions, side="right") - 1, 0, len(counts) - 1)
    return before[g] + (positions - edges[g]) / counts[g] * sums[g]


def mape_of_deciles(table: dict) -> float:
    """Mean absolute percentage error of decile means (deciles with zero actual are skipped)."""
    actual, predicted = np.array(table["mean_actual"], float), np.array(table["mean_predicted"], float)
    keep = actual > 0
    return float(np.mean(np.abs(predicted[keep] - actual[keep]) / actual[keep])) if keep.any() else NAN


# -- per-user metrics ----------------------------------------------------------------------------

def mae(y_true, y_pred) -> float:
    return float(np.mean(np.abs(np.asarray(y_true) - np.asarray(y_pred))))


def rmse(y_true, y_pred) -> float:
    return float(np.sqrt(np.mean((np.asarray(y_true) - np.asarray(y_pred)) ** 2)))


def r2(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true, float), np.asarray(y_pred, float)
    total = np.sum((y_true - y_true.mean()) ** 2)
    return float(1.0 - np.sum((y_true - y_pred) ** 2) / total) if total > 0 else NAN


def gain_curve(y_true, y_pred) -> np.ndarray:
    """Cumulative share of actual revenue in the top k users by prediction, k = 1..rows.

    Ties in y_pred are broken by averaging their revenue, so the order of tied
    rows does not matter (a constant prediction gives the diagonal).
    """
    groups = groups_of(y_pred, y_true)
    counts, sums = groups[:, 0], groups[:, 1]
    total = sums.sum()
    if total <= 0:
        return np.zeros(len(np.asarray(y_true)))
    return np.cumsum(np.repeat(sums / counts, counts.astype(int))) / total


def gini(y_true, y_pred) -> float:
    """Gini of the gain chart: 2 * area under the gain curve - 1 (NaN without revenue)."""
    groups = groups_of(y_pred, y_true)
    return gini_of_groups(groups[:, 0], groups[:, 1])


def normalized_gini(y_true, y_pred) -> float:
    best = gini(y_true, y_true)
    return gini(y_true, y_pred) / best if best > 0 else NAN


def payer_auc(payer, probability) -> float:
    """AUC of P(payer) against 0/1 outcomes (ties count half)."""
    payer = np.asarray(payer, bool)
    groups = groups_of(probability, payer, ~payer)
    return auc_of_groups(groups[:, 1], groups[:, 2])


def spearman(y_true, y_pred) -> float:
    a, b = rankdata(y_true), rankdata(y_pred)
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt(np.sum(a * a) * np.sum(b * b))
    return float(np.sum(a * b) / denominator) if denominator > 0 else NAN


def decile_table(y_true, y_pred, deciles: int = 10) -> dict[str, list]:
    """n, mean predicted and mean actual revenue (USD) per decile of prediction, top decile first.

    Users tied on the prediction are one group shared out at its means across a cut.
    """
    groups = groups_of(y_pred, y_pred, y_true)
    return deciles_of_groups(groups[:, 0], groups[:, 1], groups[:, 2], deciles)


def decile_mape(y_true, y_pred, deciles: int = 10) -> float:
    """Mean absolute percentage error of decile means (deciles with zero actual are skipped)."""
    return mape_of_deciles(decile_table(y_true, y_pred, deciles))


def total_ratio(y_true, y_pred) -> float:
    """Total predicted over total actual revenue: 1 when a cohort's sum is right."""
    total = float(np.sum(y_true))
    return float(np.sum(y_pred)) / total if total > 0 else NAN


def share_at_or_below(y_true, bound) -> float:
    """Share of users whose revenue is <= their bound (0.9 expected for a calibrated p90)."""
    return float(np.mean(np.asarray(y_true) <= np.asarray(bound)))


def share_below(y_true, bound) -> float:
    """Share of users whose revenue is < their bound."""
    return float(np.mean(np.asarray(y_true) < np.asarray(bound)))


def brier(payer, probability) -> float:
    """Mean squared error of P(payer) against 0/1 outcomes."""
    return float(np.mean((np.asarray(probability, float) - np.asarray(payer, float)) ** 2))


# -- realised metrics from sufficient statistics --------------------------------------------------

@dataclass(frozen=True)
class Outcomes:
    """Sufficient statistics of labelled predictions: every realised metric is computed from them.

    Sums are over the n labelled users (USD, or counts). The three groupings are ordered from the
    highest score: ``by_prediction`` rows are (users, predicted USD, actual USD) per predicted
    revenue, ``by_probability`` rows (users, payers) per payer probability, ``by_actual`` rows
    (users, actual USD) per actual revenue. Groups of exact values give the per-user metrics.
    """

    n: float
    predicted: float
    actual: float
    abs_error: float
    squared_error: float
    brier: float                 # sum of (payer probability - payer)^2
    at_or_below_p90: float       # users whose revenue is <= their revenue_p90
    below_p10: float             # users whose revenue is < their revenue_p10
    by_prediction: np.ndarray
    by_probability: np.ndarray
    by_actual: np.ndarray


def outcomes_of(y_true, predictions: dict) -> Outcomes:
    """``Outcomes`` of users (arrays of the contract's four outputs), grouped by exact values."""
    y = np.asarray(y_true, float)
    pred = np.asarray(predictions["predicted_revenue"], float)
    probability = np.asarray(predictions["payer_probability"], float)
    payer = y > 0
    return Outcomes(
        n=float(len(y)), predicted=float(pred.sum()), actual=float(y.sum()),
        abs_error=float(np.abs(pred - y).sum()), squared_error=float(((pred - y) ** 2).sum()),
        brier=float(((probability - payer) ** 2).sum()),
        at_or_below_p90=float(np.sum(y <= np.asarray(predictions["revenue_p90"], float))),
        below_p10=float(np.sum(y < np.asarray(predictions["revenue_p10"], float))),
        by_prediction=groups_of(pred, pred, y), by_probability=groups_of(probability, payer),
        by_actual=groups_of(y, y),
    )


def realised_metrics(o: Outcomes, deciles: int = 10) -> dict:
    """The service's realised metrics (the names of GET /performance) from ``Outcomes``."""
    if o.n <= 0:
        return {}
    table = deciles_of_groups(o.by_prediction[:, 0], o.by_prediction[:, 1], o.by_prediction[:, 2], deciles)
    best = gini_of_groups(o.by_actual[:, 0], o.by_actual[:, 1])
    model = gini_of_groups(o.by_prediction[:, 0], o.by_prediction[:, 2])
    payers = o.by_probability[:, 1]
    return {
        "norm_gini": model / best if best > 0 else NAN,
        "total_ratio": o.predicted / o.actual if o.actual > 0 else NAN,
        "mae": o.abs_error / o.n,
        "rmse": float(np.sqrt(o.squared_error / o.n)),
        "payer_auc": auc_of_groups(payers, o.by_probability[:, 0] - payers),
        "brier": o.brier / o.n,
        "p90_coverage": o.at_or_below_p90 / o.n,
        "p10_below": o.below_p10 / o.n,
        "decile_mape": mape_of_deciles(table),
        "deciles": [{"decile": d, "n": k, "mean_predicted": p, "mean_actual": a} for d, k, p, a in
                    zip(table["decile"], table["n"], table["mean_predicted"], table["mean_actual"])],
    }


def regression_metrics(y_true, y_pred) -> dict[str, float]:
    """The metrics any candidate has (it predicts only expected revenue)."""
    return {
        "mae": mae(y_true, y_pred), "rmse": rmse(y_true, y_pred), "r2": r2(y_true, y_pred),
        "normalized_gini": normalized_gini(y_true, y_pred), "spearman": spearman(y_true, y_pred),
        "decile_mape": decile_mape(y_true, y_pred), "total_ratio": total_ratio(y_true, y_pred),
    }


def full_metrics(y_true, predictions: dict) -> dict[str, float]:
    """regression_metrics plus the distribution metrics of a model with the contract's outputs
    (computed as the service computes realised metrics: one definition)."""
    y_true = np.asarray(y_true, float)
    realised = realised_metrics(outcomes_of(y_true, predictions))
    out = regression_metrics(y_true, predictions["predicted_revenue"])
    out.update({
        "share_at_or_below_p90": realised["p90_coverage"], "share_below_p10": realised["p10_below"],
        "brier": realised["brier"], "payer_auc": realised["payer_auc"],
    })
    return out
