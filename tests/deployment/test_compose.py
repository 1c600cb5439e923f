"""docker-compose.yml's promises, checked without a Docker engine: the API's stop grace period
outlasts the service's worst-case stop, and the compose MLflow server (MLflow's basic-auth app with
docker/mlflow-auth.ini) lets the API's user read the registry but not write it."""

import inspect
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from serving import server
from serving.config import Settings
from serving.log_writer import LogWriter
from serving.scorer_process import ScorerProcess
from tests.serving.conftest import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def default(function, name: str) -> float:
    return inspect.signature(function).parameters[name].default


def test_the_api_stop_grace_period_outlasts_the_worst_case_stop():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grace = compose["services"]["api"]["stop_grace_period"]
    grace_s = int(re.fullmatch(r"(\d+)s", grace)[1])
    worst_s = (Settings.scorer_timeout_s + server.DRAIN_MARGIN_S + server.CLEANUP_TIMEOUT_S
               + default(ScorerProcess.stop, "timeout_s") + default(LogWriter.stop, "timeout_s"))
    assert worst_s == 77  # the figure docs/reliability.md and the compose comment state
    assert grace_s > worst_s + 5  # and a margin for the spill file's fsync and the process exit


@pytest.mark.slow
def test_the_compose_registry_is_read_only_for_the_api_user(tmp_path):
    ini = (ROOT / "docker" / "mlflow-auth.ini").read_text().replace("sqlite:////mlauth/basic_auth.db",
                                                                     f"sqlite:///{tmp_path}/auth.db")
    (tmp_path / "auth.ini").write_text(ini)
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_AUTH_CONFIG_PATH=str(tmp_path / "auth.ini"), MLFLOW_AUTH_ADMIN_USERNAME="admin",
               MLFLOW_AUTH_ADMIN_PASSWORD="admin-secret-1234", MLFLOW_FLASK_SERVER_SECRET_KEY="csrf-secret-1234")
    log = open(tmp_path / "mlflow.log", "w")
    mlflow_server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp_path}/mlflow.db",
         "--artifacts-destination", str(tmp_path / "artifacts"), "--serve-artifacts", "--workers", "1"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        def up() -> bool:
            try:
                return urllib.request.urlopen(f"{uri}/health", timeout=2).status == 200
            except OSError:
                return False

        assert wait_until(up, 120, 0.5), (tmp_path / "mlflow.log").read_text()[-3000:]
        users = subprocess.run([sys.executable, str(ROOT / "docker" / "mlflow_users.py")], capture_output=True,
                               text=True, env={**env, "MLFLOW_TRACKING_URI": uri, "MLFLOW_TRACKING_USERNAME": "admin",
                                               "MLFLOW_TRACKING_PASSWORD": "admin-secret-1234",
                                               "MLFLOW_READER_PASSWORD": "reader-secret-1234"})
        assert users.returncode == 0, users.stderr[-3000:]

        def as_user(user: str | None, password: str | None, code: str) -> subprocess.CompletedProcess:
            creds = {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password} if user else {}
            return subprocess.run([sys.executable, "-c", "from mlflow import MlflowClient; c = MlflowClient(); " + code],
                                  capture_output=True, text=True, env={**env, "MLFLOW_TRACKING_URI": uri, **creds})

        written = as_user("admin", "admin-secret-1234", "c.create_registered_model('revenue_model')")
        assert written.returncode == 0, written.stderr[-2000:]
        read = as_user("reader", "reader-secret-1234", "print(len(c.search_registered_models()))")
        assert read.returncode == 0 and read.stdout.strip() == "1", read.stderr[-2000:]
        # The model the API serves cannot be changed by its user. (MLflow lets any user create models and
        # experiments of its own, which the API never serves: docs/reliability.md.)
        for write in ("c.set_registered_model_tag('revenue_model', 'planted', 'x')",
                      "c.rename_registered_model('revenue_model', 'planted')",
                      "c.delete_registered_model('revenue_model')"):
            refused = as_user("reader", "reader-secret-1234", write)
            assert refused.returncode != 0 and "error code 403" in refused.stderr, (write, refused.stderr[-2000:])
        anonymous = as_user(None, None, "c.search_registered_models()")
        assert anonymous.returncode != 0 and "401" in anonymous.stderr, anonymous.stderr[-2000:]
    finally:
        mlflow_server.terminate()
        mlflow_server.wait(30)
