"""Sustained 10,000-user /batch_predict: this service until every row is stored, beside the common
approach answering without logging at all, in one run, in turn.

    .venv/bin/python -m benchmarks.sustained [--rounds 3] [--seconds 20] [--clients 2] [--before DIR]

Each round sends batches of ``--users`` generated users from ``--clients`` clients for
``--seconds`` to each target in turn (every request started is waited for, so every answered user
is counted). This service's figure runs from the first request until the last of its rows is in
PostgreSQL (``count(*)`` of the rows logged since the round began, polled every 0.2 s):
PostgreSQL's own work and the writer's backlog included. The common approach (benchmarks/
common_approach.py's model behind ``mlflow models serve``, benchmarks/common_proxy.py without
DATABASE_URL) runs until its last answer. Medians over the rounds; the machine's load average is
printed beside them, since other tenants share the cores.

``--before DIR`` runs a third target in turn with the other two: the service of another checkout
(e.g. a worktree of ``main``: ``python -m serving`` run from DIR, with DIR's .venv when it has one, on its own database in
the same PostgreSQL), measured as this one is, so a change is seen before and after in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import psutil
import mlflow
import psycopg2
from mlflow import MlflowClient

from benchmarks import common_approach
from benchmarks.run import PROJECT, Process, wait_answer
from pipelines.datasets import split_users
from pipelines.model_logging import log_revenue_model
from revenue_model.predictor import fit_predictor
from revenue_model.synthetic import generate_users
from serving.scorer_process import free_port


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0, help="sending time per target and round")
    p.add_argument("--clients", type=int, default=2, help="concurrent clients, one batch in flight each")
    p.add_argument("--users", type=int, default=10_000, help="users per request")
    p.add_argument("--before", help="another checkout (with its .venv) whose service is measured too")
    return p.parse_args(argv)


async def load(url: str, bodies: list[bytes], clients: int, seconds: float) -> tuple[int, float, float]:
    """(users answered, time of the first request, time of the last answer); perf_counter times."""
    answered = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def client(k: int):
        nonlocal answered
        i = k
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            while time.perf_counter() < deadline:
                body = bodies[i % len(bodies)]
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    assert r.status == 200, (url, r.status)
                answered += body.count(b'"country"')  # one per user: the users' only required text field
                i += clients

    await asyncio.gather(*(client(k) for k in range(clients)))
    return answered, started, time.perf_counter()


def stored_since(database_url: str, since: datetime, expected: int, timeout_s: float = 600) -> float:
    """perf_counter time at which ``expected`` rows logged since ``since`` are in PostgreSQL."""
    connection = psycopg2.connect(database_url)
    connection.autocommit = True
    deadline = time.perf_counter() + timeout_s
    try:
        while time.perf_counter() < deadline:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM predictions WHERE timestamp >= %s AND role = 'champion'",
                               (since,))
                (rows,) = cursor.fetchone()
            if rows >= expected:
                return time.perf_counter()
            time.sleep(0.2)
    finally:
        connection.close()
    raise RuntimeError(f"only {rows} of {expected} rows stored after {timeout_s} s")


def cpu_seconds(pid: int) -> float:
    """User and system CPU seconds of a process and its live children (PostgreSQL's backends)."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        for process in [root, *root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def setup_models(work: Path) -> tuple[str, str, str]:
    tracking = f"sqlite:///{work}/mlflow.db"
    mlflow.set_tracking_uri(tracking)
    client = MlflowClient()
    experiment = client.create_experiment("sustained", artifact_location=str(work / "artifacts"))
    data = generate_users(60_000, seed=0)
    train, dev, _ = split_users(data, seed=0)
    example = data.drop(columns=["revenue", "install_date"]).head(3)
    with mlflow.start_run(experiment_id=experiment):
        ours = log_revenue_model(fit_predictor(train, dev), example, registered_model_name="revenue_model")
        common = common_approach.train_and_log(train, dev, example)
    client.set_registered_model_alias("revenue_model", "champion", ours.registered_model_version)
    return tracking, ours.model_uri, common.model_uri


def main(argv=None) -> dict:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="revenue-sustained-"))
    tracking, _, common_uri = setup_models(work)
    import pgserver

    server = pgserver.get_server(work / "pgdata")
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("DATABASE_URL", None)
    services = {"ours": (sys.executable, PROJECT)}
    if args.before:
        before = Path(args.before).resolve()
        python = before / ".venv" / "bin" / "python"  # else this one's: run from DIR, DIR's code is imported
        services["before"] = (str(python) if python.exists() else sys.executable, before)
    ports = {name: free_port() for name in (*services, *(f"{n}_scorer" for n in services), "common_scorer", "common")}
    url = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    users = json.loads(generate_users(4 * args.users, seed=1).drop(columns=["revenue", "install_date"])
                       .to_json(orient="records"))
    bodies = [json.dumps({"users": users[k:k + args.users]}).encode() for k in range(0, len(users), args.users)]
    databases, processes = {}, {}
    for name, (python, checkout) in services.items():
        if name != "ours":
            server.psql(f"CREATE DATABASE {name};")
        databases[name] = server.get_uri(None if name == "ours" else name)
        processes[name] = Process([python, "-m", "serving"],
                                  {**env, "DATABASE_URL": databases[name], "PORT": str(ports[name]),
                                   "SCORER_PORT": str(ports[f"{name}_scorer"]), "SPILL_DIR": str(work / f"spill-{name}")},
                                  work / f"{name}.log", cwd=checkout)
    processes["common_scorer"] = Process(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", common_uri, "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(ports["common_scorer"]), "-w", "1"], env, work / "common_scorer.log")
    processes["common"] = Process(
        [sys.executable, "-m", "uvicorn", "benchmarks.common_proxy:app", "--host", "127.0.0.1",
         "--port", str(ports["common"]), "--no-access-log"],
        {**env, "SCORER_URL": url["common_scorer"]}, work / "common_proxy.log")
    one = {"users": users[:1]}
    runs = {**{f"{name}_{k}": [] for name in services for k in ("answered", "stored")},
            "common_answered": [], "load": [],
            "cpu_ms_per_1000": {**{f"{name} service": [] for name in services},
                                **{f"{name} postgres": [] for name in services}, "common": []}}
    postmaster = int((work / "pgdata" / "postmaster.pid").read_text().split()[0])
    common_pids = [processes["common_scorer"].process.pid, processes["common"].process.pid]
    try:
        for target in (*services, "common_scorer"):
            name = target.removesuffix("_scorer")
            asyncio.run(wait_answer(url[name] + "/batch_predict", one, processes[target].started))
        for round_ in range(args.rounds):
            runs["load"].append(os.getloadavg()[0])
            line = []
            for name in services:
                pids = {"service": processes[name].process.pid, "postgres": postmaster}
                since = datetime.now(timezone.utc)
                cpu = {k: cpu_seconds(pid) for k, pid in pids.items()}
                n, first, last = asyncio.run(load(url[name] + "/batch_predict", bodies, args.clients, args.seconds))
                stored = stored_since(databases[name], since, n)
                for k, pid in pids.items():
                    runs["cpu_ms_per_1000"][f"{name} {k}"].append((cpu_seconds(pid) - cpu[k]) * 1e6 / n)
                runs[f"{name}_answered"].append(n / (last - first))
                runs[f"{name}_stored"].append(n / (stored - first))
                line.append(f"{name} {runs[f'{name}_answered'][-1]:,.0f} users/s answered, "
                            f"{runs[f'{name}_stored'][-1]:,.0f} until stored ({n:,} users, last row "
                            f"{stored - last:.1f} s after the last answer)")
            cpu_common = sum(map(cpu_seconds, common_pids))
            n_common, first_common, last_common = asyncio.run(load(url["common"] + "/batch_predict", bodies,
                                                                   args.clients, args.seconds))
            runs["cpu_ms_per_1000"]["common"].append((sum(map(cpu_seconds, common_pids)) - cpu_common) * 1e6 / n_common)
            runs["common_answered"].append(n_common / (last_common - first_common))
            print(f"  round {round_ + 1}: " + "; ".join(line) + "; CPU ms per 1,000 users: "
                  + ", ".join(f"{k} {v[-1]:.0f}" for k, v in runs["cpu_ms_per_1000"].items())
                  + f"; common {runs['common_answered'][-1]:,.0f} answered, no log; "
                  f"load average {runs['load'][-1]:.1f}", flush=True)
    finally:
        for process in processes.values():
            process.stop()
        server.cleanup()
        shutil.rmtree(work, ignore_errors=True)  # GBs of PostgreSQL data and logs a run
    cpu = {k: statistics.median(v) for k, v in runs.pop("cpu_ms_per_1000").items()}
    out = {k: statistics.median(v) for k, v in runs.items()}
    out["cpu_ms_per_1000_users"] = cpu
    print(f"\n| {args.users:,}-user /batch_predict, {args.clients} clients, {args.seconds:.0f} s, "
          f"median of {args.rounds} | users/s |\n|---|--:|")
    for name in services:
        label = "this service" if name == "ours" else f"before ({args.before})"
        print(f"| {label}, answered | {out[f'{name}_answered']:,.0f} |")
        print(f"| {label}, until the last row is stored | {out[f'{name}_stored']:,.0f} |")
    print(f"| common approach, answered, no log | {out['common_answered']:,.0f} |")
    for name in services:
        label = "this service" if name == "ours" else "before"
        print(f"| ratio stored / common answered, {label} | {out[f'{name}_stored'] / out['common_answered']:.2f} |")
    print("CPU ms per 1,000 users (process trees; PostgreSQL: its live backends): "
          + ", ".join(f"{k} {v:.0f}" for k, v in cpu.items()))
    print(f"load average (1 min) at the rounds' start: {', '.join(f'{x:.1f}' for x in runs['load'])}")
    return out


if __name__ == "__main__":
    main()
