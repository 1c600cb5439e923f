"""Make sure the registry has a champion: if not, generate data, train and promote.

    python -m pipelines.bootstrap        # what `make serve` and docker-compose's trainer run

Each step is the project's own `mlflow run` entry point, so a bootstrapped
model is recorded exactly like a weekly retrain. Each step prints one line
when it starts and one with its time when it ends, and training one line per
candidate; everything else the steps print (MLflow's own lines, warnings) goes
to a log file, whose last lines are shown if the step fails. ``LOG_LEVEL``
(DEBUG, INFO ...) shows all of it as it comes instead.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

from serving import logging_setup

PROJECT = Path(__file__).resolve().parents[1]
# The lines of the steps' own output that say how far they are (pipelines/train.py, promote.py).
PROGRESS = re.compile(r"^(\[\d+/\d+\] |data: |registered: |PROMOTED|REFUSED|wrote )")
TAIL_LINES = 25


class StepFailed(Exception):
    pass


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-name", default="revenue_model")
    p.add_argument("--rows", type=int, default=60_000)
    p.add_argument("--data-path", default="data/users.parquet")
    p.add_argument("--candidates", default="all", help="passed to train: comma-separated names, or 'all'")
    p.add_argument("--log-dir", default="", help="where each step's full output goes; empty: a temporary folder")
    return p.parse_args(argv)


def has_champion(name: str) -> bool:
    from mlflow import MlflowClient  # imported once the environment says how loud MLflow is
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient().get_model_version_by_alias(name, "champion")
        return True
    except MlflowException:
        return False


def mlflow_run(entry: str, what: str, log_dir: Path, verbose: bool, **params) -> float:
    """Run one entry point; its progress lines are printed, the rest goes to ``log_dir/<entry>.log``.

    Returns the seconds it took; raises StepFailed with the last lines and the command to rerun.
    """
    command = [sys.executable, "-m", "mlflow", "run", str(PROJECT), "-e", entry, "--env-manager", "local"]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    print(f"{entry}: {what} ...", flush=True)
    log_path, tail = log_dir / f"{entry}.log", deque(maxlen=TAIL_LINES)
    began = time.monotonic()
    with open(log_path, "w") as log, subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                                       stderr=subprocess.STDOUT, text=True, bufsize=1) as child:
        for line in child.stdout:
            log.write(line)
            tail.append(line.rstrip())
            if verbose:
                print(line, end="", flush=True)
            elif PROGRESS.match(line):
                print(f"  {line.strip()}", flush=True)
    seconds = time.monotonic() - began
    if child.returncode != 0:
        rerun = " ".join(command[1:]).replace(sys.executable, "python")
        raise StepFailed(f"{entry} FAILED after {seconds:.0f} s (exit status {child.returncode}). Its last lines:\n"
                         + "\n".join(f"    {t}" for t in tail)
                         + f"\nfull output: {log_path}\nrerun this step alone: python {rerun}")
    print(f"{entry}: done in {_duration(seconds)}", flush=True)
    return seconds


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)} min {seconds % 60:.0f} s"


def main(argv=None) -> int:
    args = parse_args(argv)
    level = os.environ.get("LOG_LEVEL", "")
    try:
        logging_setup.configure(level)
    except ValueError as error:
        print(f"bootstrap: {error}", file=sys.stderr)
        return 2
    os.environ.update(logging_setup.child_environment(level))
    if has_champion(args.model_name):
        print(f"model: models:/{args.model_name}@champion exists; nothing to train")
        return 0
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="bootstrap-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    try:
        if not Path(args.data_path).exists():
            mlflow_run("generate_data", f"{args.rows:,} synthetic users into {args.data_path}", log_dir, bool(level),
                       rows=args.rows, output=args.data_path)
        mlflow_run("train", f"every candidate on {args.data_path}, one line each (about a minute on 2 idle cores)",
                   log_dir, bool(level), data_path=args.data_path, model_name=args.model_name,
                   candidates=args.candidates)
        mlflow_run("promote", "the winner to @champion if it passes the gate", log_dir, bool(level),
                   model_name=args.model_name)
    except StepFailed as failure:
        print(failure, file=sys.stderr)
        return 1
    print(f"model: models:/{args.model_name}@champion trained in {_duration(time.monotonic() - began)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
