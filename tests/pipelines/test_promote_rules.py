"""promote/rollback's registry rules on a throwaway registry, without scoring (the refusals come
first). The forced promotion, which scores, is in test_mlproject.py's story."""

import pytest
from mlflow import MlflowClient

from pipelines.promote import CHAMPION, REFUSED, promote, rollback
from pipelines.train import CHALLENGER

NAME = "revenue_model"


@pytest.fixture
def client(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model(NAME)
    for v in (1, 2, 3):
        (tmp_path / f"m{v}").mkdir()
        client.create_model_version(NAME, source=str(tmp_path / f"m{v}"))
    # v1 was champion; v3 was promoted over it and is still @challenger (promote leaves the alias).
    client.set_registered_model_alias(NAME, CHAMPION, "3")
    client.set_registered_model_alias(NAME, CHALLENGER, "3")
    client.set_model_version_tag(NAME, "3", "promoted_from", "1")
    return client


def not_scored(challenger, champion):
    pytest.fail("a refused challenger was scored")


def champion(client) -> str:
    return str(client.get_model_version_by_alias(NAME, CHAMPION).version)


def test_a_rollback_is_not_undone_by_the_next_promote(client):
    assert rollback(client, NAME) == 0
    assert champion(client) == "1"
    assert CHALLENGER not in client.get_registered_model(NAME).aliases  # it pointed at v3: taken off
    assert "rolled_back_at" in client.get_model_version(NAME, "3").tags
    assert promote(client, NAME, 0.0, not_scored) == REFUSED  # no challenger: nothing to promote
    assert champion(client) == "1"
    client.set_registered_model_alias(NAME, CHALLENGER, "3")  # someone points it back
    assert promote(client, NAME, 0.0, not_scored) == REFUSED  # tagged rolled back: refused without force
    assert champion(client) == "1"


def test_a_refused_version_is_not_promoted_again_without_force(client, capsys):
    client.set_model_version_tag(NAME, "2", "promotion_refused", '{"reason": "worse"}')
    client.set_registered_model_alias(NAME, CHALLENGER, "2")
    assert promote(client, NAME, 0.0, not_scored) == REFUSED
    assert "was refused before" in capsys.readouterr().out and champion(client) == "3"
