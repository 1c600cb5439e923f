"""`python -m pipelines.bootstrap` as `make serve` runs it: real `mlflow run` steps on a throwaway store.

What a person sees: one line per step with its time, one per candidate, none of MLflow's own
lines; a failing step shows its last lines, where the rest is and the command to rerun it.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from revenue_model.synthetic import generate_users


def bootstrap(root: Path, *args: str, **env) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and k != "LOG_LEVEL"}
    environ.update({"MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
                    "PATH": f"{Path(sys.executable).parent}:{environ['PATH']}", **env})
    return subprocess.run([sys.executable, "-m", "pipelines.bootstrap", "--log-dir", str(root / "logs"), *args],
                          cwd=root, env=environ, capture_output=True, text=True, timeout=900)


THIRD_PARTY = re.compile(r"INFO mlflow|=== Running command|UserWarning|FutureWarning|Add type hints")


@pytest.mark.slow
def test_a_fresh_store_gets_a_champion_with_one_line_per_step(tmp_path):
    data = tmp_path / "users.parquet"
    generate_users(3000, seed=5).to_parquet(data, index=False)
    first = bootstrap(tmp_path, "--data-path", str(data), "--candidates", "ziln")
    assert first.returncode == 0, first.stdout + first.stderr
    lines = first.stdout.splitlines()
    assert re.fullmatch(r"train: every candidate on .*users\.parquet.*\.\.\.", lines[0]), lines
    assert re.fullmatch(r"  data: 3000 users .*", lines[1]), lines
    assert re.fullmatch(r"  \[1/1\] ziln \.\.\. [\d.]+s, dev normalized Gini 0\.\d+, total ratio [\d.]+", lines[2]), lines
    assert re.fullmatch(r"  registered: models:/revenue_model/1 \(alias @challenger\)", lines[3]), lines
    assert re.fullmatch(r"train: done in [\d.]+ s|train: done in \d+ min \d+ s", lines[4]), lines
    assert lines[5].startswith("promote: "), lines
    assert lines[6].startswith("  PROMOTED: v1 is now @champion"), lines
    assert re.fullmatch(r"promote: done in .* s", lines[7]), lines
    assert re.fullmatch(r"model: models:/revenue_model@champion trained in .* s", lines[8]), lines
    assert len(lines) == 9, lines
    assert not THIRD_PARTY.search(first.stdout + first.stderr), first.stdout + first.stderr
    # Everything the steps printed is kept, what was not shown included.
    assert re.search(r"^run id: [0-9a-f]{32}$", (tmp_path / "logs" / "train.log").read_text(), re.M)

    second = bootstrap(tmp_path, "--data-path", str(data))
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout == "model: models:/revenue_model@champion exists; nothing to train\n"


@pytest.fixture(scope="module")
def broken_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("broken")
    data = root / "users.parquet"
    data.write_text("this is not a parquet file\n")
    return root, data


@pytest.mark.slow
def test_a_failed_training_shows_its_last_lines_and_how_to_rerun_it(broken_data):
    root, data = broken_data
    result = bootstrap(root, "--data-path", str(data))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.splitlines() == [f"train: every candidate on {data}, one line each (about a minute on 2 idle cores) ..."]
    err = result.stderr
    assert re.match(r"train FAILED after \d+ s \(exit status 1\)\. Its last lines:\n", err), err
    assert "Parquet" in err or "parquet" in err, err  # the reason, from the step's own output
    assert f"full output: {root / 'logs' / 'train.log'}" in err, err
    assert re.search(r"rerun this step alone: python -m mlflow run \S+ -e train --env-manager local "
                     rf"-P data_path={re.escape(str(data))} -P model_name=revenue_model -P candidates=all\n", err), err
    assert not THIRD_PARTY.search(result.stdout), result.stdout


@pytest.mark.slow
def test_log_level_brings_the_steps_own_output_back(broken_data):
    root, data = broken_data
    result = bootstrap(root, "--data-path", str(data), LOG_LEVEL="INFO")
    assert result.returncode == 1
    assert "=== Running command 'python -m pipelines.train" in result.stdout, result.stdout
    assert "INFO mlflow.projects" in result.stdout, result.stdout


def test_an_unknown_log_level_is_refused_by_name(tmp_path):
    result = bootstrap(tmp_path, LOG_LEVEL="LOUD")
    assert result.returncode == 2
    assert result.stderr == "bootstrap: LOG_LEVEL: 'LOUD' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL\n"
