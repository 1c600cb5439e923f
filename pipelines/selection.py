"""The rule that picks a model: it must rank users well and sum to the right total.

Bidding spends money in proportion to predicted value, so what matters is
(1) ranking: normalized Gini of the gain chart, which decides which users get
the higher bids; and (2) calibration of the sum: a cohort's predicted total
must be close to its actual total, or budgets are wrong. MAE is reported but
never used: it is minimised by predicting the median, which is 0 for most
users.

- A candidate qualifies when its total is within ``MAX_TOTAL_ERROR`` of actual.
- Among qualifying servable candidates, the highest normalized Gini wins.
- A challenger replaces the champion when it qualifies and its normalized Gini
  is at least the champion's plus ``min_gain`` on the same holdout.
"""

from __future__ import annotations

PRIMARY = "normalized_gini"
MAX_TOTAL_ERROR = 0.20  # heavy tails make a holdout's own total noisy by several percent


def qualifies(metrics: dict) -> bool:
    return abs(metrics["total_ratio"] - 1.0) <= MAX_TOTAL_ERROR


def pick_winner(results: dict[str, dict], servable: set[str]) -> str:
    """The name of the best servable candidate; results[name] are its dev metrics."""
    eligible = [n for n in results if n in servable and qualifies(results[n])] or \
               [n for n in results if n in servable]
    if not eligible:
        raise ValueError("no servable candidate was trained")
    return max(eligible, key=lambda n: results[n][PRIMARY])


def challenger_wins(challenger: dict, champion: dict | None, min_gain: float) -> tuple[bool, str]:
    """(promote?, why) for metrics of both on the same holdout. The total check applies with no
    champion too: a first model that gets budgets wrong is not served either."""
    if not qualifies(challenger):
        return False, (f"challenger's total is {challenger['total_ratio']:.3f} of actual, "
                       f"outside 1 ± {MAX_TOTAL_ERROR}")
    if champion is None:
        return True, "there is no champion"
    gain = challenger[PRIMARY] - champion[PRIMARY]
    verdict = gain >= min_gain
    return verdict, (f"normalized Gini {challenger[PRIMARY]:.4f} vs champion {champion[PRIMARY]:.4f} "
                     f"(gain {gain:+.4f}, needed {min_gain:+.4f})")
