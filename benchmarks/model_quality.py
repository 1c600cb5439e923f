"""How close the model gets to the truth, on generated data where the truth is known.

    .venv/bin/python -m benchmarks.model_quality            # about a minute per seed

For each seed: generate 60,000 users, train through the pipeline's own split
(70/15/15 by install date) and `fit_predictor`, then score 100,000 fresh users
of another seed. The generator's expected revenue and payer probability given
each user's hidden traits (engagement, willingness to pay) are an oracle no
model of the observed columns can reach, so the ratios below are lower bounds
of "how close to the best achievable".
"""

from __future__ import annotations

import argparse

from pipelines.candidates import all_candidates
from pipelines.datasets import split_users
from revenue_model import metrics as M
from revenue_model.predictor import fit_predictor
from revenue_model.synthetic import generate_users
from revenue_model.ziln import ZilnParams


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--rows", type=int, default=60_000)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        train, dev, _ = split_users(generate_users(args.rows, seed), seed)
        fresh = generate_users(100_000, seed + 1000, with_truth=True)
        y, truth = fresh["revenue"].to_numpy(), fresh["true_expected_revenue"].to_numpy()
        out = fit_predictor(train, dev, seed=seed).predict(fresh)
        original = next(c for c in all_candidates(ZilnParams(), seed) if c.name == "lightgbm_l2")
        original_pred = original.fit(train, dev)(fresh)["predicted_revenue"]
        row = {
            "seed": seed,
            "gini / oracle gini": M.normalized_gini(y, out.predicted_revenue) / M.normalized_gini(y, truth),
            "total / true expected": out.predicted_revenue.sum() / truth.sum(),
            "share <= p90": M.share_at_or_below(y, out.revenue_p90),
            "brier / oracle brier": M.brier(y > 0, out.payer_probability)
            / M.brier(y > 0, fresh["true_payer_probability"]),
            "gini, original approach": M.normalized_gini(y, original_pred),
            "gini, this model": M.normalized_gini(y, out.predicted_revenue),
            "rmse, original approach": M.rmse(y, original_pred),
            "rmse, this model": M.rmse(y, out.predicted_revenue),
        }
        truth_train = generate_users(args.rows, seed, with_truth=True).set_index("user_id")
        row["train total / its true expected"] = (
            train["revenue"].sum() / truth_train.loc[train["user_id"], "true_expected_revenue"].sum())
        rows.append(row)
        print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
              flush=True)
    print("\n| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]))
    for row in rows:
        print("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
