"""How two models' predictions for the same users compare: pure functions on arrays (no I/O)."""

from __future__ import annotations

import numpy as np

from revenue_model.metrics import spearman


def top_share_overlap(a, b, share: float = 0.1) -> float:
    """Share of the top ``share`` of users by ``a`` who are also in the top ``share`` by ``b``
    (1: the same users on top; about ``share`` for unrelated rankings). Ties keep input order."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    k = max(1, int(round(len(a) * share)))
    top_a = np.argsort(-a, kind="stable")[:k]
    top_b = np.argsort(-b, kind="stable")[:k]
    return len(np.intersect1d(top_a, top_b)) / k


def compare(champion, shadow) -> dict:
    """``spearman`` rank correlation and ``top_decile_overlap`` of the shadow's predicted revenue
    against the champion's for the same users (None without users), and ``sample_users``."""
    n = len(champion)
    if n == 0:
        return {"spearman": None, "top_decile_overlap": None, "sample_users": 0}
    rho = spearman(champion, shadow)
    return {"spearman": rho if np.isfinite(rho) else None, "top_decile_overlap": top_share_overlap(champion, shadow),
            "sample_users": n}
