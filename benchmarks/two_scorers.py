"""Two scorers at once: what a shadow costs the champion, side by side, and what two scorers weigh.

    .venv/bin/python -m benchmarks.two_scorers            # about 5 minutes on 2 cores
    .venv/bin/python -m benchmarks.two_scorers --rounds 5 --requests 400

Three services run at the same time on one PostgreSQL, on the same champion:
``none`` (no shadow), ``share_1.0`` and ``share_0.1`` (SHADOW_URI on a second
model). Single-user /predict latencies are taken from the client, ten requests to
each service in turn (``benchmarks.run.interleaved``: a burst from the machine's
other tenants falls on all three alike; the first request of each block is not
counted, which also keeps the shadow work the previous block left behind out of
the figures). Every request has its own user_id, so share 0.1 shadows about a
tenth of them. Per service: p50/p90/p99 (medians over rounds) and each against
``none``; CPU seconds per request of the service and its scorers; resident memory
(RSS) of the service, of one scorer, and of two.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np
import psutil
from mlflow import MlflowClient

from benchmarks.run import Process, interleaved, percentiles
from pipelines.datasets import split_users
from pipelines.model_logging import log_revenue_model
from revenue_model.contract import FEATURE_INPUTS
from revenue_model.predictor import fit_predictor
from revenue_model.synthetic import generate_users
from serving.scorer_process import free_port

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "benchmarks" / "results"
CONFIGS = {"none": {}, "share_1.0": {"SHADOW_SHARE": "1.0"}, "share_0.1": {"SHADOW_SHARE": "0.1"}}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    p.add_argument("--requests", type=int, default=300, help="single-user requests per service per round")
    p.add_argument("--output", default=str(RESULTS / "two_scorers.json"))
    return p.parse_args(argv)


def register_two_models(work: Path) -> str:
    """A tracking store with a champion (60,000 rows) and a challenger (another seed, 20,000 rows)."""
    tracking = f"sqlite:///{work}/mlflow.db"
    mlflow.set_tracking_uri(tracking)
    client = MlflowClient()
    experiment = client.create_experiment("two-scorers", artifact_location=str(work / "artifacts"))
    for alias, rows, seed in (("champion", 60_000, 0), ("challenger", 20_000, 1)):
        train, dev, _ = split_users(generate_users(rows, seed=seed), seed=seed)
        with mlflow.start_run(experiment_id=experiment):
            info = log_revenue_model(fit_predictor(train, dev, seed=seed), train[list(FEATURE_INPUTS)].head(3),
                                     registered_model_name="revenue_model")
        client.set_registered_model_alias("revenue_model", alias, info.registered_model_version)
    return tracking


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root] + root.children(recursive=True)


def cpu_s(pid: int) -> float:
    total = 0.0
    for process in tree(pid):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def memory_mb(pid: int) -> dict:
    """RSS (MB) of the service process and of each scorer (a scorer with its workers)."""
    service = psutil.Process(pid)
    scorers = [child for child in service.children() if "serving.scorer_main" in " ".join(child.cmdline())]
    rss = lambda ps: sum(p.memory_info().rss for p in ps) / 2 ** 20  # noqa: E731
    return {"service": rss([service]),
            "scorers": sorted((rss([s] + s.children(recursive=True)) for s in scorers), reverse=True)}


async def wait_ready(url: str, shadowed: bool, timeout_s: float = 300) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url + "/model/info") as r:
                    info = await r.json() if r.status == 200 else {}
                if info.get("scorer_ready") and (not shadowed or (info.get("shadow") or {}).get("model_version")):
                    return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError(f"{url} did not become ready")


def summary(rounds: list[dict[str, dict]]) -> dict:
    """Per service, the median over rounds of each percentile, and its ratio to ``none``'s."""
    out = {}
    for name in rounds[0]:
        out[name] = {k: float(np.median([r[name][k] for r in rounds])) for k in ("p50_ms", "p90_ms", "p99_ms")}
    for name in out:
        out[name].update({f"{k}_vs_none": out[name][k] / out["none"][k] for k in ("p50_ms", "p90_ms", "p99_ms")})
    return out


def main(argv=None):
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="two-scorers-"))
    print(f"working in {work}; training two models", flush=True)
    tracking = register_two_models(work)
    import pgserver

    database_url = pgserver.get_server(work / "pgdata").get_uri()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "DATABASE_URL": database_url, "MODEL_POLL_S": "0",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    users = generate_users(args.requests * args.rounds, seed=2)[list(FEATURE_INPUTS)]
    records = json.loads(users.to_json(orient="records"))
    for i, record in enumerate(records):
        record["user_id"] = f"bench-{i}"
    services, url = {}, {}
    try:
        for name, extra in CONFIGS.items():
            port = free_port()
            shadow = {"SHADOW_URI": "models:/revenue_model@challenger", **extra} if extra else {}
            services[name] = Process([sys.executable, "-m", "serving"],
                                     {**env, "PORT": str(port), "SPILL_DIR": str(work / f"spill-{name}"), **shadow},
                                     work / f"{name}.log")
            url[name] = f"http://127.0.0.1:{port}"
        for name in CONFIGS:
            asyncio.run(wait_ready(url[name], bool(CONFIGS[name])))
        print("three services ready", flush=True)
        memory = {name: memory_mb(services[name].process.pid) for name in CONFIGS}
        cpu_before = {name: cpu_s(services[name].process.pid) for name in CONFIGS}
        rounds = []
        for k in range(args.rounds):
            chunk = records[k * args.requests:(k + 1) * args.requests]
            latencies = asyncio.run(interleaved({name: (url[name] + "/predict", chunk) for name in CONFIGS}))
            rounds.append({name: percentiles(values) for name, values in latencies.items()})
            print(f"  round {k + 1}/{args.rounds}: " + ", ".join(
                f"{name} p50 {r['p50_ms']:.2f} ms" for name, r in rounds[-1].items()), flush=True)
        time.sleep(2)  # the shadow's last calls
        sent = args.requests * args.rounds + args.rounds * -(-args.requests // 10)  # with the uncounted ones
        cpu = {name: (cpu_s(services[name].process.pid) - cpu_before[name]) / sent * 1000 for name in CONFIGS}
    finally:
        for process in services.values():
            process.stop()
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "load_average": os.getloadavg()},
               "requests_per_service_per_round": args.requests, "rounds": args.rounds,
               "latency": summary(rounds), "rounds_raw": rounds, "cpu_ms_per_request": cpu, "memory_mb": memory}
    report(results)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.output}")


def report(r: dict) -> None:
    print(f"\nsingle-user /predict, {r['rounds']} rounds of {r['requests_per_service_per_round']} per service "
          f"(medians over rounds; load average at the end {r['machine']['load_average'][0]:.1f})")
    print(f"{'service':<10} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'p50/none':>9} {'p99/none':>9} "
          f"{'CPU ms/req':>11}")
    for name, s in r["latency"].items():
        print(f"{name:<10} {s['p50_ms']:8.2f} {s['p90_ms']:8.2f} {s['p99_ms']:8.2f} {s['p50_ms_vs_none']:9.2f} "
              f"{s['p99_ms_vs_none']:9.2f} {r['cpu_ms_per_request'][name]:11.2f}")
    print("\nresident memory (MB)")
    for name, m in r["memory_mb"].items():
        scorers = " + ".join(f"{v:.0f}" for v in m["scorers"])
        print(f"{name:<10} service {m['service']:.0f}, scorers {scorers} "
              f"(total {m['service'] + sum(m['scorers']):.0f})")


if __name__ == "__main__":
    main()
