"""Make sure the registry has a champion: if not, generate data, train and promote.

    python -m pipelines.bootstrap        # what `make serve` and docker-compose's trainer run

Each step is the project's own `mlflow run` entry point, so a bootstrapped
model is recorded exactly like a weekly retrain.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

PROJECT = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-name", default="revenue_model")
    p.add_argument("--rows", type=int, default=60_000)
    p.add_argument("--data-path", default="data/users.parquet")
    return p.parse_args(argv)


def has_champion(name: str) -> bool:
    try:
        MlflowClient().get_model_version_by_alias(name, "champion")
        return True
    except MlflowException:
        return False


def mlflow_run(entry: str, **params) -> None:
    command = [sys.executable, "-m", "mlflow", "run", str(PROJECT), "-e", entry, "--env-manager", "local"]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    subprocess.run(command, env=env, check=True)


def main(argv=None) -> None:
    args = parse_args(argv)
    if has_champion(args.model_name):
        print(f"models:/{args.model_name}@champion exists; nothing to train")
        return
    if not Path(args.data_path).exists():
        mlflow_run("generate_data", rows=args.rows, output=args.data_path)
    mlflow_run("train", data_path=args.data_path, model_name=args.model_name)
    mlflow_run("promote", model_name=args.model_name)


if __name__ == "__main__":
    main()
