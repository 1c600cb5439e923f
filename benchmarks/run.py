"""The performance benchmark: this service against the common approach, side by side, in one run.

    .venv/bin/python -m benchmarks.run            # about 10 minutes on 2 cores; JSON in benchmarks/results/

Measures, with medians of repeated, interleaved runs:
- in process: the boosters on ready arrays (the floor), this project's pyfunc, the common pyfunc;
- served: direct /invocations and through each proxy: single-user p50/p90/p99 (sequential,
  ten requests to each of the four in turn),
  requests/s with 8 concurrent clients, users/s in batches of 1,000 and 10,000;
- that every request of the load tests is in PostgreSQL;
- cold start (command to first answer) and training time on 100,000 and 1,000,000 rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import aiohttp
import mlflow
import numpy as np
import pandas as pd
import psycopg2
from mlflow import MlflowClient

from benchmarks import common_approach
from pipelines.datasets import split_users
from pipelines.model_logging import log_revenue_model
from revenue_model.contract import EVENT_COLUMNS, FEATURE_INPUTS
from revenue_model.predictor import fit_predictor
from revenue_model.synthetic import generate_users
from revenue_model.validation import validate_columns
from serving.scorer_process import free_port

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "benchmarks" / "results"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds per served measurement")
    p.add_argument("--load-seconds", type=float, default=8.0, help="length of each concurrency run")
    p.add_argument("--training-rows", default="100000,1000000", help="row counts to time training on")
    p.add_argument("--output", default=str(RESULTS / "latest.json"))
    return p.parse_args(argv)


# -- in process ------------------------------------------------------------------------------

def median_seconds(fn, rows: int) -> float:
    repeats, number = {1: (7, 300), 100: (7, 50)}.get(rows, (5, 1))
    return float(np.median([timeit.timeit(fn, number=number) / number for _ in range(repeats)]))


def in_process(predictor, ours_uri: str, common_uri: str, users: pd.DataFrame) -> dict:
    ours = mlflow.pyfunc.load_model(ours_uri)
    common = mlflow.pyfunc.load_model(common_uri)
    common_model = common.unwrap_python_model()
    out = {}
    for rows in (1, 100, 10_000, 100_000):
        frame = users.iloc[:rows].astype({c: float for c in EVENT_COLUMNS}).reset_index(drop=True)
        X = predictor.plan.transform(validate_columns(frame))
        boosters = list(predictor.ziln.fast.values())
        threads = predictor.num_threads if rows >= 5000 else 1
        common_X = common_approach.add_features(frame, common_model.enc)
        timings = {
            "floor_boosters": median_seconds(lambda: [b.predict(X, num_threads=threads) for b in boosters], rows),
            "ours_predictor": median_seconds(lambda: predictor.predict(frame), rows),
            "ours_pyfunc": median_seconds(lambda: ours.predict(frame), rows),
            "common_booster": median_seconds(lambda: common_model.booster.predict(common_X, num_threads=1), rows),
            "common_pyfunc": median_seconds(lambda: common.predict(frame), rows),
        }
        out[rows] = {k: {"ms": v * 1000, "rows_per_s": rows / v} for k, v in timings.items()}
        print(f"  in process, {rows:>7} rows: " + ", ".join(f"{k} {v * 1000:.3f} ms" for k, v in timings.items()),
              flush=True)
    return out


# -- processes ---------------------------------------------------------------------------------

class Process:
    def __init__(self, command, env, log_path, cwd=PROJECT):
        self.log = open(log_path, "w")
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command, env=env, cwd=cwd, stdout=self.log,
                                        stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self):
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, signal.SIGKILL)


async def wait_answer(url: str, body: dict, started: float, timeout_s: float = 240) -> float:
    """Seconds from `started` until POST url answers 200."""
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - started < timeout_s:
            try:
                async with session.post(url, json=body, timeout=aiohttp.ClientTimeout(total=5)) as r:
                    if r.status == 200:
                        return time.perf_counter() - started
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


# -- load ------------------------------------------------------------------------------------

def inputs_body(users: list[dict]) -> dict:
    """What this service's proxy sends its scorer (serving.scorer.to_scorer_columns)."""
    from serving.scorer import to_scorer_columns
    return {"inputs": to_scorer_columns(validate_columns(users))}


def split_body(users: list[dict]) -> dict:
    columns = list(FEATURE_INPUTS)
    return {"dataframe_split": {"columns": columns, "data": [[u.get(c) for c in columns] for u in users]}}


async def interleaved(targets: dict[str, tuple[str, list[dict]]], block: int = 10) -> dict[str, list[float]]:
    """Single-user latencies (ms): ``block`` requests to each target in turn, so that a burst of
    load from the machine's other tenants falls on every target alike.

    The first request of each block is not counted: after calls to another process, the first
    call to a target paid about 0.5 ms more here (cold caches), whichever the target was.
    """
    latencies = {name: [] for name in targets}
    count = min(len(bodies) for _, bodies in targets.values())
    async with aiohttp.ClientSession() as session:  # keeps a connection to each target
        for start in range(0, count, block):
            for name, (url, bodies) in targets.items():
                for i in range(start - 1, min(start + block, count)):
                    data = json.dumps(bodies[max(i, 0)]).encode()
                    started = time.perf_counter()
                    async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        assert r.status == 200, (url, r.status)
                    if i >= start:
                        latencies[name].append((time.perf_counter() - started) * 1000)
    return latencies


async def concurrent(url: str, bodies: list[dict], clients: int, seconds: float) -> dict:
    done, errors, ids = 0, 0, []
    deadline = time.perf_counter() + seconds
    payloads = [json.dumps(b).encode() for b in bodies]

    async def client(k: int):
        nonlocal done, errors
        i = k
        async with aiohttp.ClientSession() as session:
            while time.perf_counter() < deadline:
                try:
                    async with session.post(url, data=payloads[i % len(payloads)],
                                            headers={"Content-Type": "application/json"}) as r:
                        await r.read()
                        if r.status == 200:
                            done += 1
                            ids.append(r.headers.get("X-Request-Id"))
                        else:
                            errors += 1
                except aiohttp.ClientError:
                    errors += 1
                i += clients

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - started
    return {"requests_per_s": done / elapsed, "requests": done, "errors": errors, "request_ids": ids}


async def batches(url: str, body: dict, users: int, repeats: int = 3) -> float:
    seconds = []
    async with aiohttp.ClientSession() as session:
        data = json.dumps(body).encode()
        for _ in range(repeats):
            started = time.perf_counter()
            async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as r:
                await r.read()
                assert r.status == 200, (url, r.status)
            seconds.append(time.perf_counter() - started)
    return users / float(np.median(seconds))


async def settled(service_url: str, timeout_s: float = 120) -> None:
    """Wait until the service's log writer has nothing queued."""
    deadline = time.perf_counter() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() < deadline:
            async with session.get(service_url + "/stats") as r:
                if (await r.json())["rows_waiting_to_be_written"] == 0:
                    break
            await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)  # the writer's batching window and its last insert


def percentiles(values) -> dict:
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99), "n": len(values)}


# -- the run -------------------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="revenue-bench-"))
    print(f"working in {work}", flush=True)
    tracking = f"sqlite:///{work}/mlflow.db"
    mlflow.set_tracking_uri(tracking)
    client = MlflowClient()
    experiment = client.create_experiment("benchmark", artifact_location=str(work / "artifacts"))
    data = generate_users(60_000, seed=0)
    train, dev, _ = split_users(data, seed=0)
    example = data.drop(columns=["revenue", "install_date"]).head(3)
    with mlflow.start_run(experiment_id=experiment):
        predictor = fit_predictor(train, dev)
        ours_info = log_revenue_model(predictor, example, registered_model_name="revenue_model")
        common_info = common_approach.train_and_log(train, dev, example)
    client.set_registered_model_alias("revenue_model", "champion", ours_info.registered_model_version)
    users = generate_users(100_000, seed=1).drop(columns=["revenue", "install_date"])
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "platform": platform.platform(), "pandas": pd.__version__, "mlflow": mlflow.__version__},
               "in_process": in_process(predictor, ours_info.model_uri, common_info.model_uri, users)}

    import pgserver
    database_url = pgserver.get_server(work / "pgdata").get_uri()
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking, "DATABASE_URL": database_url,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    ports = {name: free_port() for name in ("ours", "ours_scorer", "common_scorer", "common")}
    records = json.loads(users.head(20_000).to_json(orient="records"))
    one = records[0]
    processes = []
    try:
        ours = Process([sys.executable, "-m", "serving"],
                       {**env, "PORT": str(ports["ours"]), "SCORER_PORT": str(ports["ours_scorer"]),
                        "SPILL_DIR": str(work / "spill")}, work / "ours.log")
        processes.append(ours)
        common_scorer = Process([sys.executable, "-m", "mlflow", "models", "serve", "-m", common_info.model_uri,
                                 "--env-manager", "local", "-h", "127.0.0.1", "-p", str(ports["common_scorer"]),
                                 "-w", "1"], env, work / "common_scorer.log")
        common_proxy = Process([sys.executable, "-m", "uvicorn", "benchmarks.common_proxy:app", "--host",
                                "127.0.0.1", "--port", str(ports["common"]), "--no-access-log"],
                               {**env, "SCORER_URL": f"http://127.0.0.1:{ports['common_scorer']}"},
                               work / "common_proxy.log")
        processes += [common_scorer, common_proxy]
        url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        async def both():
            return await asyncio.gather(wait_answer(url["ours"] + "/predict", one, ours.started),
                                        wait_answer(url["common"] + "/predict", one, common_scorer.started))
        cold = asyncio.run(both())
        results["cold_start_s"] = {"ours": cold[0], "common": cold[1]}
        print(f"  cold start (both started together): ours {cold[0]:.1f} s, common {cold[1]:.1f} s", flush=True)
        results["served"] = served(url, records, args)
        results["logged"] = logged(database_url, results["served"])
    finally:
        for process in processes:
            process.stop()
    results["training_s"] = training_times([int(r) for r in args.training_rows.split(",") if r])
    report(results)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwrote {args.output}")


def served(url: dict, records: list[dict], args) -> dict:
    singles = records[:300]
    targets = {
        "ours_direct": (url["ours_scorer"] + "/invocations", [inputs_body([u]) for u in singles]),
        "ours_proxy": (url["ours"] + "/predict", singles),
        "common_direct": (url["common_scorer"] + "/invocations", [split_body([u]) for u in singles]),
        "common_proxy": (url["common"] + "/predict", singles),
    }
    latencies = {name: [] for name in targets}
    concurrency = {"ours_proxy": [], "common_proxy": []}
    request_ids = {"ours_proxy": [], "common_proxy": []}
    batch = {f"{who}_{n}": [] for who in ("ours_proxy", "common_proxy", "ours_direct", "common_direct")
             for n in (1000, 10_000)}
    for round_ in range(args.rounds):
        print(f"  round {round_ + 1}/{args.rounds}", flush=True)
        # The previous round's batches leave tens of thousands of log rows to write: single users
        # are measured on a settled service, not against that backlog.
        asyncio.run(settled(url["ours"]))
        for name, values in asyncio.run(interleaved(targets)).items():
            latencies[name] += values
        for name in concurrency:
            got = asyncio.run(concurrent(targets[name][0], singles, 8, args.load_seconds))
            request_ids[name] += got.pop("request_ids")
            concurrency[name].append(got)
        for n in (1000, 10_000):
            users = records[:n]
            batch[f"ours_proxy_{n}"].append(asyncio.run(batches(url["ours"] + "/batch_predict", {"users": users}, n)))
            batch[f"common_proxy_{n}"].append(asyncio.run(batches(url["common"] + "/batch_predict", {"users": users}, n)))
            batch[f"ours_direct_{n}"].append(asyncio.run(batches(url["ours_scorer"] + "/invocations", inputs_body(users), n)))
            batch[f"common_direct_{n}"].append(asyncio.run(batches(url["common_scorer"] + "/invocations", split_body(users), n)))
    return {
        "single_user": {name: percentiles(v) for name, v in latencies.items()},
        "concurrent_8": {name: {"requests_per_s": float(np.median([r["requests_per_s"] for r in runs])),
                                "requests": sum(r["requests"] for r in runs), "errors": sum(r["errors"] for r in runs)}
                         for name, runs in concurrency.items()},
        "batch_users_per_s": {name: float(np.median(v)) for name, v in batch.items()},
        "request_ids": request_ids,
    }


def logged(database_url: str, served_results: dict) -> dict:
    ids = [i for i in served_results.pop("request_ids")["ours_proxy"] if i]
    deadline = time.monotonic() + 60
    while True:
        with psycopg2.connect(database_url) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT count(DISTINCT request_id), count(*) FROM predictions WHERE request_id = ANY(%s)",
                           (ids,))
            requests, rows = cursor.fetchone()
        connection.close()
        if requests >= len(ids) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    out = {"load_test_requests": len(ids), "requests_in_postgres": requests, "rows_in_postgres": rows}
    print(f"  logged: {requests} of {len(ids)} load-test requests are in PostgreSQL ({rows} rows)", flush=True)
    return out


def training_times(row_counts: list[int]) -> dict:
    out = {}
    for rows in row_counts:
        data = generate_users(rows, seed=3)
        train, dev, _ = split_users(data, seed=3)
        started = time.perf_counter()
        fit_predictor(train, dev)
        out[rows] = time.perf_counter() - started
        print(f"  training on {rows} rows ({len(train)} train): {out[rows]:.1f} s", flush=True)
    return out


def report(r: dict) -> None:
    s = r["served"]
    single, conc, batch = s["single_user"], s["concurrent_8"], s["batch_users_per_s"]
    lines = ["", "| measure | this service | common approach | ratio | target |", "|---|--:|--:|--:|---|"]

    def row(name, ours, common, ratio, target):
        lines.append(f"| {name} | {ours} | {common} | {ratio} | {target} |")

    for kind in ("direct", "proxy"):
        o, c = single[f"ours_{kind}"], single[f"common_{kind}"]
        label = "/invocations direct" if kind == "direct" else "/predict through the proxy"
        row(f"single user, {label}: p50 / p90 / p99 ms",
            f"{o['p50_ms']:.2f} / {o['p90_ms']:.2f} / {o['p99_ms']:.2f}",
            f"{c['p50_ms']:.2f} / {c['p90_ms']:.2f} / {c['p99_ms']:.2f}",
            f"{o['p50_ms'] / c['p50_ms']:.2f}x p50", "p50 <= 0.3x, p99 < 10 ms" if kind == "proxy" else "")
    hop = single["ours_proxy"]["p50_ms"] - single["ours_direct"]["p50_ms"]
    row("proxy hop over direct /invocations, p50 ms", f"{hop:+.2f}",
        f"{single['common_proxy']['p50_ms'] - single['common_direct']['p50_ms']:+.2f}", "", "<= 1 ms")
    o, c = conc["ours_proxy"], conc["common_proxy"]
    row("8 concurrent clients on /predict, requests/s (errors)", f"{o['requests_per_s']:.0f} ({o['errors']})",
        f"{c['requests_per_s']:.0f} ({c['errors']})", f"{o['requests_per_s'] / c['requests_per_s']:.1f}x", ">= 5x, no errors")
    for n in (1000, 10_000):
        for kind in ("proxy", "direct"):
            o, c = batch[f"ours_{kind}_{n}"], batch[f"common_{kind}_{n}"]
            label = "/batch_predict" if kind == "proxy" else "/invocations direct"
            row(f"batch of {n:,}, {label}, users/s", f"{o:,.0f}", f"{c:,.0f}", f"{o / c:.1f}x",
                ">= 1.5x" if (kind, n) == ("proxy", 10_000) else "")
    cold = r["cold_start_s"]
    row("cold start, command to first /predict answer, s", f"{cold['ours']:.1f}", f"{cold['common']:.1f}",
        f"{cold['ours'] / cold['common']:.2f}x", "<= 1x")
    lg = r["logged"]
    row("load-test requests recorded in PostgreSQL", f"{lg['requests_in_postgres']} of {lg['load_test_requests']}",
        "", "", "all")
    lines += ["", "| in process, rows | boosters on ready arrays (floor) | this pyfunc (our code only) |"
              " this pyfunc via MLflow | common pyfunc | this / floor throughput |", "|--:|--:|--:|--:|--:|--:|"]
    for rows, t in r["in_process"].items():
        lines.append(f"| {int(rows):,} | {t['floor_boosters']['ms']:.3f} ms | {t['ours_predictor']['ms']:.3f} ms | "
                     f"{t['ours_pyfunc']['ms']:.3f} ms | {t['common_pyfunc']['ms']:.3f} ms | "
                     f"{t['floor_boosters']['ms'] / t['ours_pyfunc']['ms']:.2f} |")
    lines += ["", "training: " + ", ".join(f"{int(k):,} rows {v:.1f} s" for k, v in r["training_s"].items())]
    print("\n".join(lines))
    r["table"] = "\n".join(lines)


if __name__ == "__main__":
    main()
