"""What scoring with the model's own code costs evaluate and promote, side by side with loading in process.

    .venv/bin/python -m benchmarks.own_code_scoring          # about 3 minutes on 2 cores

``in_process``: ``mlflow.pyfunc.load_model(uri).predict(users)`` in this process, as
evaluate did before issue 12 (it ran whichever revenue_model this process had imported).
``own_code``: ``pipelines.own_code_scoring.score_with_own_code(uri, users)``, a fresh
process per call that runs the model's bundled code. Seconds per call, medians of
``--repeats`` calls taken in turn, for 1,000 and 100,000 users, and the largest child's
peak memory (max RSS).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np

from benchmarks.run import RESULTS
from pipelines.datasets import split_users
from pipelines.model_logging import log_revenue_model
from pipelines.own_code_scoring import score_with_own_code
from revenue_model.predictor import fit_predictor
from revenue_model.synthetic import generate_users


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--output", default=str(RESULTS / "own_code_scoring.json"))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="revenue-own-code-bench-"))
    mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
    experiment = mlflow.create_experiment("own-code-benchmark", artifact_location=str(work / "artifacts"))
    data = generate_users(30_000, seed=0)
    train, dev, _ = split_users(data, seed=0)
    with mlflow.start_run(experiment_id=experiment):
        uri = log_revenue_model(fit_predictor(train, dev), data.drop(columns=["revenue", "install_date"]).head(3),
                                registered_model_name="revenue_model").model_uri
    users = generate_users(100_000, seed=1).drop(columns=["revenue", "install_date"])
    ways = {"in_process": lambda frame: mlflow.pyfunc.load_model(uri).predict(frame),
            "own_code": lambda frame: score_with_own_code(uri, frame)}
    results = {}
    for rows in (1_000, 100_000):
        frame = users.head(rows)
        seconds = {name: [] for name in ways}
        outputs = {}
        for _ in range(args.repeats):
            for name, score in ways.items():
                started = time.perf_counter()
                outputs[name] = score(frame)
                seconds[name].append(time.perf_counter() - started)
        assert np.array_equal(outputs["in_process"].to_numpy(), outputs["own_code"].to_numpy())
        results[rows] = {name: float(np.median(s)) for name, s in seconds.items()}
        # The largest child so far: the 100,000-user calls come last, so that row is theirs.
        results[rows]["child_max_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"  {rows:>7} users: " + ", ".join(f"{name} {results[rows][name]:.2f} s" for name in ways)
              + f" (own_code / in_process {results[rows]['own_code'] / results[rows]['in_process']:.1f}x),"
              f" largest child {results[rows]['child_max_rss_mb']:.0f} MB",
              flush=True)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.output}")
    shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
