"""Shared fixtures: small seeded data, one model trained per session, a store where it is champion,
a real PostgreSQL (pgserver) and fresh databases in it, and a model whose bundled code differs from
this checkout's."""

import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import mlflow
import psycopg2
import pytest
from mlflow import MlflowClient

from pipelines.model_logging import log_revenue_model
from revenue_model.code_identity import PACKAGE_DIR
from revenue_model.predictor import fit_predictor
from revenue_model.synthetic import generate_users


@pytest.fixture(scope="session")
def users():
    """20,000 synthetic installs with revenue and the generator's truth columns."""
    return generate_users(20_000, seed=7, with_truth=True)


@pytest.fixture(scope="session")
def predictor(users):
    return fit_predictor(users.iloc[:14_000], users.iloc[14_000:17_000], seed=7)


@pytest.fixture(scope="session")
def holdout(users):
    return users.iloc[17_000:].reset_index(drop=True)


@contextmanager
def tracking_store(root: Path, experiment_name: str):
    """A fresh MLflow store (sqlite, artifacts beside it) under ``root``, the tracking URI for the
    block: yields (uri, client, experiment id)."""
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment(experiment_name, artifact_location=str(root / "artifacts"))
    mlflow.set_tracking_uri(uri)
    try:
        yield uri, client, experiment
    finally:
        mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def champion_store(predictor, holdout, tmp_path_factory):
    """A tracking store where models:/revenue_model@champion is the session's predictor."""
    with tracking_store(tmp_path_factory.mktemp("store"), "serving-tests") as (uri, client, experiment):
        with mlflow.start_run(experiment_id=experiment):
            info = log_revenue_model(predictor, holdout.drop(columns=["revenue"]).iloc[:3],
                                     registered_model_name="revenue_model")
    version = str(info.registered_model_version)
    client.set_registered_model_alias("revenue_model", "champion", version)
    client.set_model_version_tag("revenue_model", version, "test_normalized_gini", "0.8")
    return uri


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("pgdata"))
    yield server.get_uri()
    server.cleanup()


def new_database(postgres: str, prefix: str = "t", options: str = "") -> str:
    """Creates a new, empty database in the PostgreSQL at ``postgres`` (``options``: the rest of
    CREATE DATABASE, e.g. an encoding); its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(postgres)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name} {options}")
    admin.close()
    return postgres.replace("/postgres?", f"/{name}?", 1)


@pytest.fixture
def fresh_database(postgres):
    """A new, empty database in the session's PostgreSQL; its URL."""
    return new_database(postgres)


@pytest.fixture
def migrated_database(fresh_database):
    """A connection to a new database holding the service's schema."""
    from serving.db.connection import connect
    from serving.db.schema import migrate

    connection = connect(fresh_database)
    migrate(connection)
    yield connection
    connection.close()


# Appended to predictor.py in a copy of the package: a change nobody could miss in the numbers.
DOUBLING = """

_unaltered_predict = RevenuePredictor.predict


def _doubled_predict(self, users):
    out = _unaltered_predict(self, users)
    out["predicted_revenue"] = out["predicted_revenue"] * 2
    return out


RevenuePredictor.predict = _doubled_predict
"""


@pytest.fixture(scope="session")
def altered_model(champion_store, predictor, holdout, tmp_path_factory):
    """models:/altered_model/1 in the champion store: the session's predictor logged with a bundled
    copy of revenue_model that doubles predicted_revenue, unlike the copy installed here."""
    copy = tmp_path_factory.mktemp("altered") / "revenue_model"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "predictor.py", "a") as f:
        f.write(DOUBLING)
    mlflow.set_tracking_uri(champion_store)
    try:
        with mlflow.start_run(experiment_id=MlflowClient().get_experiment_by_name("serving-tests").experiment_id):
            log_revenue_model(predictor, holdout.drop(columns=["revenue"]).iloc[:3],
                              registered_model_name="altered_model", package_dir=copy)
    finally:
        mlflow.set_tracking_uri(None)
    return "models:/altered_model/1"
