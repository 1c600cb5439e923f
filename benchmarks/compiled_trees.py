"""The boosters' trees compiled (revenue_model/compiled_trees.py) against LightGBM's own prediction,
side by side, on one model trained as benchmarks/sustained.py trains it.

    .venv/bin/python -m benchmarks.compiled_trees [--rows 10000,100000] [--repeats 7]

Per booster and for the whole pyfunc ``predict`` (validation and features included): CPU ms per
call, medians of ``--repeats``, one thread for the boosters (the pyfunc's own rule for the whole
call: 2 threads from 5,000 rows), and the time ``log_revenue_model`` spent compiling. Every
compiled output is checked equal to LightGBM's, bit for bit, before it is timed.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np

from pipelines.datasets import split_users
from pipelines.model_logging import log_revenue_model
from revenue_model import compiled_trees
from revenue_model.predictor import BOOSTERS, fit_predictor
from revenue_model.synthetic import generate_users
from revenue_model.validation import validate_columns


def cpu_ms(run, repeats: int) -> float:
    spent = []
    for _ in range(repeats):
        started = time.process_time()
        run()
        spent.append(time.process_time() - started)
    return statistics.median(spent) * 1000


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default="10000,100000")
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="compiled-trees-"))
    mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
    data = generate_users(60_000, seed=0)
    train, dev, _ = split_users(data, seed=0)
    predictor = fit_predictor(train, dev)
    example = data.drop(columns=["revenue", "install_date"]).head(3)
    with mlflow.start_run():
        started = time.perf_counter()
        info = log_revenue_model(predictor, example)
        logged_s = time.perf_counter() - started
    model = mlflow.pyfunc.load_model(info.model_uri)
    ziln = model.unwrap_python_model().predictor.ziln
    assert ziln.compiled is not None, "the model was logged without compiled trees (is lleaves installed?)"
    print(f"log_revenue_model, compiling included: {logged_s:.1f} s; trees: "
          + ", ".join(f"{n} {getattr(ziln, n).num_trees()}" for n in BOOSTERS))
    out = {}
    print("\n| rows | what | LightGBM CPU ms | compiled CPU ms | ratio |\n|--:|---|--:|--:|--:|")
    for rows in map(int, args.rows.split(",")):
        users = generate_users(rows, seed=1).drop(columns=["revenue", "install_date"])
        X = predictor.plan.transform(validate_columns(users))
        for name in BOOSTERS:
            lightgbm = ziln.fast[name].predict(X)
            assert np.array_equal(compiled_trees.predict(ziln.compiled[name], X, 1), lightgbm), name
            pair = (cpu_ms(lambda: ziln.fast[name].predict(X), args.repeats),
                    cpu_ms(lambda: compiled_trees.predict(ziln.compiled[name], X, 1), args.repeats))
            out[f"{rows} {name}"] = pair
        own = ziln.compiled
        ziln.compiled = None
        without = cpu_ms(lambda: model.predict(users), args.repeats)
        ziln.compiled = own
        out[f"{rows} pyfunc predict"] = (without, cpu_ms(lambda: model.predict(users), args.repeats))
        for key, (a, b) in out.items():
            if key.startswith(f"{rows} "):
                print(f"| {rows:,} | {key.split(' ', 1)[1]} | {a:.0f} | {b:.0f} | {a / b:.1f}x |")
    return out


if __name__ == "__main__":
    main()
