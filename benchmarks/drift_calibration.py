"""How often drift is flagged when nothing moved, and what it says when something did.

    .venv/bin/python -m benchmarks.drift_calibration            # about 2 minutes of CPU

Trains the model as `train` does (generated users, 70/15/15 split by install
date), builds the reference profile from the training split and the dev
split's predictions, then:

- in-distribution windows: fresh users of another seed, cut into disjoint
  windows of 500, 1,000 and 5,000 rows; per size, the worst column's PSI
  (median, p95, max) and the share of windows whose status was warn or drift:
  the false-alarm rate at the contract's thresholds;
- shifted windows: 5,000 fresh users with one change each (spelling only, a
  new ad network, a country campaign, an app update that halves event
  counts, a new OS major); the columns flagged and their PSI; for the
  spelling-only change, also the PSI a comparison of raw values (no folding,
  as drift tools do) would report.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from pipelines.datasets import split_users
from revenue_model import drift as D
from revenue_model.predictor import fit_predictor
from revenue_model.synthetic import generate_users
from revenue_model.validation import validate_columns


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=60_000, help="users generated for training")
    p.add_argument("--windows", type=int, default=100, help="in-distribution windows per size")
    p.add_argument("--sizes", default="500,1000,5000")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _respell(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["platform"] = out["platform"].map({"iOS": "iPhone OS", "ios": " IOS", "IOS": "iPad"}).fillna(
        out["platform"].str.upper())
    out["country"] = " " + out["country"].str.swapcase() + " "
    out["source"] = out["source"].str.upper()
    return out


def _raw_psi(reference: pd.Series, window: pd.Series) -> float:
    """PSI over raw values, unfolded: what a tool that does not know the model's folding computes."""
    ref = reference.fillna("(missing)").value_counts(normalize=True)
    win = window.fillna("(missing)").value_counts(normalize=True)
    keys = ref.index.union(win.index)
    return D.psi(ref.reindex(keys, fill_value=0.0), win.reindex(keys, fill_value=0.0))


def _shifts(rng) -> dict:
    def part(frame, share):
        return rng.random(len(frame)) < share

    def network(f):
        return f.assign(source=f["source"].where(~part(f, 0.2), "Snapchat Ads"))

    def campaign(f):
        return f.assign(country=f["country"].where(~part(f, 0.5), "IN"))

    def update(f):
        return f.assign(event_1=np.floor(f["event_1"] / 2), event_2=np.floor(f["event_2"] / 2))

    def os_major(f):
        return f.assign(os_version=f["os_version"].where(~part(f, 0.3), "19.0.1"))

    return {"spelling only (platform, country, source)": _respell,
            "new ad network, 20% of installs": network,
            "country campaign, half the installs from IN": campaign,
            "app update halves event_1 and event_2": update,
            "new OS major 19 on 30% of installs": os_major}


def main(argv=None) -> dict:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    train, dev, _ = split_users(generate_users(args.rows, seed=args.seed), args.seed)
    predictor = fit_predictor(train, dev, seed=args.seed)
    dev_columns = validate_columns(dev, with_target=True)
    profile = D.build_profile(validate_columns(train, with_target=True), predictor.predict_columns(dev_columns))

    def report(frame: pd.DataFrame) -> dict:
        columns = validate_columns(frame)
        return D.frame_drift(profile, columns, predictor.predict_columns(columns))

    sizes = [int(s) for s in args.sizes.split(",")]
    pool = generate_users(max(sizes) * args.windows, seed=args.seed + 1000)
    result = {"reference_n": profile["reference_n"], "null": {}, "shifts": {}}
    print(f"reference: {profile['reference_n']} training users; thresholds warn {D.WARN_PSI}, "
          f"drift {D.DRIFT_PSI}\n\nin-distribution windows ({args.windows} per size), worst column's PSI:")
    print(f"{'rows':>6} {'median':>8} {'p95':>8} {'max':>8} {'warn+':>7}  most often worst")
    for size in sizes:
        worst, names = [], []
        for i in range(args.windows):
            columns = report(pool.iloc[i * size:(i + 1) * size])["columns"]
            name = max(columns, key=lambda c: columns[c]["psi"])
            worst.append(columns[name]["psi"])
            names.append(name)
        worst = np.array(worst)
        common = pd.Series(names).value_counts().head(2)
        row = {"median": float(np.median(worst)), "p95": float(np.quantile(worst, 0.95)),
               "max": float(worst.max()), "flagged_share": float(np.mean(worst >= D.WARN_PSI))}
        result["null"][size] = row
        print(f"{size:>6} {row['median']:>8.3f} {row['p95']:>8.3f} {row['max']:>8.3f} "
              f"{row['flagged_share']:>7.1%}  {', '.join(f'{k} ({v})' for k, v in common.items())}")

    fresh = generate_users(5000, seed=args.seed + 2000)
    print("\nshifted windows (5,000 users each):")
    for label, shift in _shifts(rng).items():
        out = report(shift(fresh))
        flagged = {c: v for c, v in out["columns"].items() if v["status"] in (D.WARN, D.DRIFT)}
        result["shifts"][label] = {"status": out["status"], "flagged": flagged}
        detail = ", ".join(f"{c} {v['status']} {v['psi']:.2f}"
                           + (f" (unseen {v['unseen_share']:.1%})" if "unseen_share" in v else "")
                           for c, v in flagged.items()) or "nothing flagged"
        print(f"  {label}: {out['status']}: {detail}")
    raw = {c: _raw_psi(train[c], _respell(fresh)[c]) for c in ("platform", "country", "source")}
    result["raw_value_psi_of_spelling_only"] = raw
    print("  spelling only, compared as raw values (no folding): "
          + ", ".join(f"{c} {v:.2f}" for c, v in raw.items()))
    return result


if __name__ == "__main__":
    main()
