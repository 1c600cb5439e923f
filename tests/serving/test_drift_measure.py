"""GET /drift's bounds, in process against a real PostgreSQL: the count's time limit and a database away."""

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from aiohttp import web

from revenue_model import drift as D
from revenue_model.synthetic import generate_users
from revenue_model.validation import validate_columns
from serving.app import READS, SERVICE, SETTINGS, STATS_DB
from serving.config import Settings
from serving.db.connection import connect
from serving.db.schema import migrate
from serving.model_identity import ModelIdentity
from serving.drift_references import Reference, References
from serving.read_queries import Reads, ReadUnavailable
from serving.routes_drift import REFERENCES, measure
from serving.scorer_process import free_port
from tests.serving.db.test_drift_counts import logged, outputs_for

NOW = datetime.now(timezone.utc)
URI = "models:/revenue_model/3"


@dataclass
class Served:
    identity: ModelIdentity


@pytest.fixture(scope="module")
def profile():
    users = generate_users(3_000, seed=21)
    answers = outputs_for(3_000, 22)
    return D.build_profile(validate_columns(users), {c: [a[c] for a in answers] for c in D.OUTPUTS})


def app_for(url: str, profile: dict, **settings) -> web.Application:
    app = web.Application()
    app[SETTINGS] = Settings(**settings)
    app[STATS_DB] = url
    app[READS] = Reads(url, max_concurrent=app[SETTINGS].read_queries_max,
                       statement_timeout_s=app[SETTINGS].read_statement_timeout_s)
    app[SERVICE] = Served(ModelIdentity(URI, "revenue_model", "3"))
    app[REFERENCES] = References()
    app[REFERENCES]._known[URI] = Reference(URI, profile, "test")  # as if read from the registry
    return app


def test_a_count_over_drift_query_timeout_is_a_503_naming_the_setting(fresh_database, profile):
    connection = connect(fresh_database)
    migrate(connection)
    for seed in range(10):
        logged(connection, generate_users(5_000, seed=seed), outputs_for(5_000, seed), at=NOW)
    connection.close()
    window = (NOW - timedelta(hours=1), NOW + timedelta(hours=1))

    _, report = asyncio.run(measure(app_for(fresh_database, profile), "3", *window))
    assert report["n"] == 50_000
    with pytest.raises(ReadUnavailable) as raised:
        asyncio.run(measure(app_for(fresh_database, profile, drift_query_timeout_s=0.001), "3", *window))
    assert (raised.value.status, raised.value.error) == (503, "query_timeout")
    assert "DRIFT_QUERY_TIMEOUT_S=0.001" in raised.value.message


def test_a_database_away_is_a_503_database_unavailable(profile):
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(ReadUnavailable) as raised:
        asyncio.run(measure(app_for(url, profile), "3", NOW - timedelta(hours=1), NOW))
    assert (raised.value.status, raised.value.error) == (503, "database_unavailable")
