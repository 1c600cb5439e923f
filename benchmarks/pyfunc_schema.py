"""What the pyfunc's input signature costs per call, through MLflow's own paths, side by side.

    .venv/bin/python -m benchmarks.pyfunc_schema            # about 5 minutes on 2 cores

One model is logged once; copies of it differ only in the input schema written in
their MLmodel (the code and boosters are the same files):

- ``typed``: strings ``string``, events ``double`` (what the model had before issue 12);
- ``any_events``: the events ``AnyType``, strings ``string``;
- ``any_all``: every column ``AnyType``;
- ``none``: no input schema (the model's own validator judges everything).

Measured, with medians of repeated runs taken in turn (each round times every
variant, so a burst of load from the machine's other tenants falls on all alike):
``PyFuncModel.predict`` in process on 1 and 10,000 users (float events, which
every variant accepts); and a real scorer process per variant (``serving.scorer_app``,
as the service starts it), single-user ``/invocations`` latency with the "inputs"
JSON the service's proxy sends (``serving.scorer.to_scorer_columns``), and a
10,000-user "inputs" call. It also records which variants take a frame as
``pd.read_csv`` gives it (integer events) at all.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import shutil
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import Model
from mlflow.models.signature import ModelSignature
from mlflow.types.schema import AnyType, ColSpec, Schema

from benchmarks.run import RESULTS, batches, inputs_body, interleaved, median_seconds, percentiles
from pipelines.datasets import split_users
from pipelines.model_logging import log_revenue_model
from revenue_model.contract import EVENT_COLUMNS, INPUT_COLUMNS, REQUIRED_COLUMNS
from revenue_model.predictor import fit_predictor
from revenue_model.synthetic import generate_users
from serving.scorer_process import ScorerProcess

VARIANTS = ("typed", "any_events", "any_all", "none")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5, help="rounds, each timing every variant in turn")
    p.add_argument("--singles", type=int, default=300, help="single-user requests per variant and round")
    p.add_argument("--output", default=str(RESULTS / "pyfunc_schema.json"))
    return p.parse_args(argv)


def input_schema(variant: str) -> Schema | None:
    if variant == "none":
        return None
    anything = {"typed": (), "any_events": EVENT_COLUMNS, "any_all": INPUT_COLUMNS}[variant]
    return Schema([ColSpec(AnyType() if c in anything else "double" if c in EVENT_COLUMNS else "string",
                           c, required=c in REQUIRED_COLUMNS) for c in INPUT_COLUMNS])


def model_copies(source: Path, work: Path) -> dict[str, Path]:
    """One copy of the logged model per variant, its MLmodel's input schema replaced."""
    out = {}
    for variant in VARIANTS:
        target = work / f"model-{variant}"
        shutil.copytree(source, target)
        meta = Model.load(str(target / "MLmodel"))
        meta.signature = ModelSignature(inputs=input_schema(variant), outputs=meta.signature.outputs)
        meta.save(str(target / "MLmodel"))
        out[variant] = target
    return out


def in_process(models: dict[str, Path], users: pd.DataFrame, rounds: int) -> dict:
    loaded = {v: mlflow.pyfunc.load_model(str(path)) for v, path in models.items()}
    out = {}
    for rows in (1, 10_000):
        frame = users.iloc[:rows].reset_index(drop=True)
        seconds = {v: [] for v in loaded}
        for _ in range(rounds):
            for v, model in loaded.items():
                seconds[v].append(median_seconds(lambda: model.predict(frame), rows))
        out[rows] = {v: float(np.median(s)) * 1000 for v, s in seconds.items()}
        print(f"  in process, {rows:>6} users: "
              + ", ".join(f"{v} {ms:.3f} ms" for v, ms in out[rows].items()), flush=True)
    return out


def accepts_csv(models: dict[str, Path], users: pd.DataFrame) -> dict[str, str]:
    """Whether ``predict(pd.read_csv(...))`` works: counts written as integers, as real files have them."""
    buffer = io.StringIO()
    users.head(100).astype({"event_1": int, "event_2": int}).to_csv(buffer, index=False)
    frame = pd.read_csv(io.StringIO(buffer.getvalue()))
    out = {}
    for v, path in models.items():
        try:
            mlflow.pyfunc.load_model(str(path)).predict(frame)
            out[v] = "accepted"
        except Exception as error:  # what a user would see (its last sentence), for the report
            out[v] = "refused: " + str(error).rsplit("Error: ", 1)[-1].strip()[:120]
    return out


def wait_ping(port: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no scorer on port {port}")


def served(models: dict[str, Path], records: list[dict], args) -> dict:
    scorers = {v: ScorerProcess(path, port=0, workers=1, threads=2).start() for v, path in models.items()}
    try:
        for scorer in scorers.values():
            wait_ping(scorer.port)
        singles = [inputs_body([u]) for u in records[:args.singles]]
        big = inputs_body(records[:10_000])
        targets = {v: (f"http://127.0.0.1:{s.port}/invocations", singles) for v, s in scorers.items()}
        latencies = {v: [] for v in scorers}
        batch = {v: [] for v in scorers}
        for round_ in range(args.rounds):
            for v, values in asyncio.run(interleaved(targets)).items():
                latencies[v] += values
            for v, (url, _) in targets.items():
                batch[v].append(asyncio.run(batches(url, big, 10_000, repeats=3)))
            print(f"  served, round {round_ + 1}/{args.rounds}: single-user p50 "
                  + ", ".join(f"{v} {np.median(latencies[v]):.2f} ms" for v in scorers), flush=True)
    finally:
        for scorer in scorers.values():
            scorer.stop()
    return {"single_user": {v: percentiles(values) for v, values in latencies.items()},
            "users_per_s_10000": {v: float(np.median(values)) for v, values in batch.items()}}


def report(results: dict) -> str:
    single, batch = results["served"]["single_user"], results["served"]["users_per_s_10000"]
    inproc = results["in_process"]
    lines = ["| input schema | in process, 1 user (ms) | in process, 10,000 users (ms) "
             "| /invocations, 1 user p50 / p90 (ms) | /invocations, 10,000 users (users/s) | pd.read_csv frame |",
             "|---|--:|--:|--:|--:|---|"]
    for v in VARIANTS:
        lines.append(f"| {v} | {inproc[1][v]:.3f} | {inproc[10_000][v]:.1f} "
                     f"| {single[v]['p50_ms']:.2f} / {single[v]['p90_ms']:.2f} | {batch[v]:,.0f} "
                     f"| {results['read_csv'][v]} |")
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="revenue-schema-bench-"))
    print(f"working in {work}", flush=True)
    mlflow.set_tracking_uri(f"sqlite:///{work}/mlflow.db")
    experiment = mlflow.create_experiment("schema-benchmark", artifact_location=str(work / "artifacts"))
    data = generate_users(30_000, seed=0)
    train, dev, _ = split_users(data, seed=0)
    with mlflow.start_run(experiment_id=experiment):
        info = log_revenue_model(fit_predictor(train, dev), data.drop(columns=["revenue", "install_date"]).head(3))
    source = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(work / "logged")))
    models = model_copies(source, work)
    users = generate_users(20_000, seed=1).drop(columns=["revenue", "install_date"])
    floats = users.astype({c: float for c in EVENT_COLUMNS})
    results = {"mlflow": mlflow.__version__, "pandas": pd.__version__,
               "in_process": in_process(models, floats, args.rounds),
               "read_csv": accepts_csv(models, users)}
    results["served"] = served(models, json.loads(floats.to_json(orient="records")), args)
    print("\n" + report(results))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.output}")
    shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
