"""batch_score's throughput and memory: engine=local and engine=spark against the pyfunc in process.

    .venv/bin/python -m benchmarks.batch_score                 # 100k and 1M rows, 3 rounds; about 30 min here
    .venv/bin/python -m benchmarks.batch_score --sizes 100000 --rounds 1 --engines local

For each size, in interleaved rounds (one run of each method per round; medians reported):
- ``pyfunc``: a fresh process that loads the model (importing nothing of this project first) and
  calls ``predict`` once on the whole frame, already in memory: the model's own cost, the floor.
  ``pyfunc_e2e`` is the same process's read Parquet + predict + write Parquet, in memory at once;
  its wall users/s adds the process's start and the model's load.
- ``local`` / ``spark``: ``python -m pipelines.batch_score`` as a user runs it, Parquet in and out.
  ``users/s`` counts from the model's resolution to the last row written (what the run logs to
  MLflow: spawning the scoring processes or starting Spark, and loading the model, included);
  ``wall users/s`` adds the command's own start (Python and MLflow imports).
- peak RSS: the whole process tree's resident memory (sum over processes), sampled every 50 ms;
  for the pyfunc, the process's own peak (``ru_maxrss``).
- CPU s: user + system seconds of the whole command's process tree, start and model loads
  included. On a shared machine wall time says how much CPU the others left; CPU seconds
  say what the work costs.

Results go to benchmarks/results/batch_score.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import psutil
from mlflow import MlflowClient

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "benchmarks" / "results"

# The pyfunc in a process of its own, so it runs the model's bundled code; prints one JSON line.
_PYFUNC = r"""
import json, resource, sys, time
import pandas as pd, mlflow.pyfunc
model_uri, source, output = sys.argv[1:4]
model = mlflow.pyfunc.load_model(model_uri)
start = time.perf_counter()
frame = pd.read_parquet(source)
inputs = [c["name"] for c in model.metadata.metadata["inputs"] if c["name"] in frame]  # no input schema: docs/model.md
users = frame[inputs].astype({c: float for c in ("event_1", "event_2", "event_3") if c in frame})
read = time.perf_counter()
out = model.predict(users)
predicted = time.perf_counter()
pd.concat([frame, pd.DataFrame(out).set_index(frame.index)], axis=1).to_parquet(output, index=False)
done = time.perf_counter()
print(json.dumps({"rows": len(frame), "predict_s": predicted - read, "e2e_s": done - start,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000", help="input rows, comma separated")
    p.add_argument("--rounds", type=int, default=3, help="interleaved runs of each method per size")
    p.add_argument("--engines", default="local,spark")
    p.add_argument("--chunk-rows", type=int, default=50_000)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--output", default=str(RESULTS / "batch_score.json"))
    return p.parse_args(argv)


def register_champion(work: Path) -> str:
    """A model trained as `train` does (60,000 users), champion in a throwaway store; its URI."""
    from pipelines.datasets import split_users
    from pipelines.model_logging import log_revenue_model
    from revenue_model.predictor import fit_predictor
    from revenue_model.synthetic import generate_users

    tracking = f"sqlite:///{work}/mlflow.db"
    client = MlflowClient(tracking)
    experiment = client.create_experiment("batch-benchmark", artifact_location=str(work / "artifacts"))
    mlflow.set_tracking_uri(tracking)
    data = generate_users(60_000, seed=0)
    train, dev, _ = split_users(data, seed=0)
    with mlflow.start_run(experiment_id=experiment):
        info = log_revenue_model(fit_predictor(train, dev), data.drop(columns=["revenue"]).head(3),
                                 registered_model_name="revenue_model")
    client.set_registered_model_alias("revenue_model", "champion", info.registered_model_version)
    return tracking


def write_installs(path: Path, rows: int) -> Path:
    from revenue_model.synthetic import generate_users

    generate_users(rows, seed=rows).drop(columns=["revenue"]).to_parquet(path, index=False)
    return path


def tree_sample(process: psutil.Process, cpu: dict[int, float]) -> int:
    """The tree's resident memory now (bytes); records each process's CPU seconds so far in ``cpu``."""
    total = 0
    for p in [process] + process.children(recursive=True):
        try:
            with p.oneshot():
                total += p.memory_info().rss
                times = p.cpu_times()
                cpu[p.pid] = times.user + times.system
        except psutil.Error:
            pass
    return total


def run_measured(command: list[str], env: dict, log: Path) -> tuple[float, float, float, str]:
    """(wall seconds, peak RSS of the process tree in MB, its CPU seconds, stdout) of a command
    that must succeed. CPU is sampled with memory, every 50 ms (a process living less is missed,
    and a process's last 50 ms), and read exactly at the end for the processes the command waited
    for (getrusage of this process's children): the larger of the two."""
    peak, cpu = 0, {}
    waited_before = _children_cpu_s()
    start = time.perf_counter()
    with open(log, "w") as errors:
        child = subprocess.Popen(command, env=env, cwd=PROJECT, stdout=subprocess.PIPE, stderr=errors, text=True)
        watched = psutil.Process(child.pid)
        done = threading.Event()

        def sample():
            nonlocal peak
            while not done.is_set():
                try:
                    peak = max(peak, tree_sample(watched, cpu))
                except psutil.Error:
                    pass
                done.wait(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout = child.communicate()[0]
        done.set()
        sampler.join()
    wall = time.perf_counter() - start
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({child.returncode}); see {log}")
    return wall, peak / 2**20, max(sum(cpu.values()), _children_cpu_s() - waited_before), stdout


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def engine_run(engine: str, source: Path, work: Path, env: dict, args) -> dict:
    output = work / f"scored-{engine}-{source.stem}{'.parquet' if engine == 'local' else ''}"
    command = [sys.executable, "-m", "pipelines.batch_score", "--input-path", str(source),
               "--output-path", str(output), "--engine", engine, "--chunk-rows", str(args.chunk_rows),
               "--workers", str(args.workers)]
    wall, peak, cpu, _ = run_measured(command, env, work / f"{engine}.log")
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    run = client.search_runs(["0"], f"params.output_path = '{output}'", order_by=["start_time DESC"])[0]
    return {"seconds": run.data.metrics["seconds"], "wall_s": wall, "rows": run.data.metrics["rows"],
            "peak_rss_mb": peak, "cpu_s": cpu}


def pyfunc_run(model_uri: str, source: Path, work: Path, env: dict) -> dict:
    command = [sys.executable, "-c", _PYFUNC, model_uri, str(source), str(work / "pyfunc.parquet")]
    wall, _, cpu, stdout = run_measured(command, {**env, "PYTHONPATH": ""}, work / "pyfunc.log")
    return {**json.loads(stdout.strip().splitlines()[-1]), "wall_s": wall, "cpu_s": cpu}


def median(values) -> float:
    return float(np.median(list(values)))


def main(argv=None):
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    print(f"working in {work}", flush=True)
    tracking = register_champion(work)
    version = MlflowClient(tracking).get_model_version_by_alias("revenue_model", "champion").version
    model_uri = f"models:/revenue_model/{version}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_TRACKING_URI"] = tracking
    engines = [e for e in args.engines.split(",") if e]
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "load_average_at_start": os.getloadavg()[0]},
               "chunk_rows": args.chunk_rows, "workers": args.workers or os.cpu_count(), "sizes": {}}
    for rows in (int(s) for s in args.sizes.split(",")):
        source = write_installs(work / f"installs-{rows}.parquet", rows)
        runs = {name: [] for name in ["pyfunc"] + engines}
        for round_ in range(args.rounds):
            runs["pyfunc"].append(pyfunc_run(model_uri, source, work, env))
            for engine in engines:
                runs[engine].append(engine_run(engine, source, work, env, args))
            print(f"{rows} rows, round {round_ + 1}: " + json.dumps({k: v[-1] for k, v in runs.items()}),
                  flush=True)
        summary = {
            "pyfunc": {"users_per_s": rows / median(r["predict_s"] for r in runs["pyfunc"]),
                       "e2e_users_per_s": rows / median(r["e2e_s"] for r in runs["pyfunc"]),
                       "wall_users_per_s": rows / median(r["wall_s"] for r in runs["pyfunc"]),
                       "cpu_s": median(r["cpu_s"] for r in runs["pyfunc"]),
                       "peak_rss_mb": median(r["peak_rss_mb"] for r in runs["pyfunc"])}}
        for engine in engines:
            summary[engine] = {"users_per_s": rows / median(r["seconds"] for r in runs[engine]),
                               "wall_users_per_s": rows / median(r["wall_s"] for r in runs[engine]),
                               "cpu_s": median(r["cpu_s"] for r in runs[engine]),
                               "peak_rss_mb": median(r["peak_rss_mb"] for r in runs[engine])}
        results["sizes"][str(rows)] = {"summary": summary, "runs": runs}
    results["machine"]["load_average_at_end"] = os.getloadavg()[0]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(report(results))
    return results


def report(results: dict) -> str:
    lines = ["| rows | method | users/s | wall users/s | vs pyfunc predict | CPU s (whole command) | peak RSS MB |",
             "|---:|---|---:|---:|---:|---:|---:|"]
    for rows, entry in results["sizes"].items():
        summary = entry["summary"]
        pyfunc, floor, n = summary["pyfunc"], summary["pyfunc"]["users_per_s"], f"{int(rows):,}"
        lines.append(f"| {n} | pyfunc predict (in memory) | {floor:,.0f} | | 1.00 | | {pyfunc['peak_rss_mb']:,.0f} |")
        lines.append(f"| {n} | pyfunc read+predict+write | {pyfunc['e2e_users_per_s']:,.0f} | "
                     f"{pyfunc['wall_users_per_s']:,.0f} | {pyfunc['e2e_users_per_s'] / floor:.2f} | "
                     f"{pyfunc['cpu_s']:,.1f} | |")
        for engine, figures in summary.items():
            if engine != "pyfunc":
                lines.append(f"| {n} | batch_score {engine} | {figures['users_per_s']:,.0f} | "
                             f"{figures['wall_users_per_s']:,.0f} | {figures['users_per_s'] / floor:.2f} | "
                             f"{figures['cpu_s']:,.1f} | {figures['peak_rss_mb']:,.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
