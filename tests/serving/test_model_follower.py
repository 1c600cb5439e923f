"""The follower's decisions against a real registry, on versions that fail before any scorer starts."""

from __future__ import annotations

import asyncio

import pytest
from mlflow import MlflowClient

from serving.config import Settings
from serving.model_follower import ModelFollower
from serving.model_identity import movable
from serving.scorer_supervisor import ScorerStats


@pytest.mark.parametrize("uri, expected", [
    ("models:/revenue_model@champion", True), ("models:/revenue_model/Production", True),
    ("models:/revenue_model/3", False), ("runs:/abc123/model", False), ("/srv/models/revenue", False),
])
def test_only_an_alias_or_a_stage_can_move(uri, expected):
    assert movable(uri) is expected


@pytest.fixture
def gone(tmp_path, monkeypatch):
    """A registry where models:/gone@champion is a version whose files do not exist."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    client.create_registered_model("gone")
    client.create_model_version("gone", source=str(tmp_path / "no-such-model"))
    client.set_registered_model_alias("gone", "champion", "1")
    return tmp_path


def test_a_version_that_fails_is_retried_after_a_doubling_backoff_unless_forced(gone):
    follower = ModelFollower("models:/gone@champion", "champion", Settings(model_poll_s=60), gone / "downloads",
                             stats=ScorerStats())

    async def checks():
        return [(await follower.check())["status"], (await follower.check())["status"],
                (await follower.check(force=True))["status"]]

    first, second, forced = asyncio.run(checks())
    assert (first, second, forced) == ("failed", "backing_off", "failed")
    assert follower.failures == 2 and follower.current is None and follower.swap_count == 0
    assert "next attempt in 12" in asyncio.run(follower.check())["error"]  # 60 s, then 120 s
    assert list((gone / "downloads").iterdir()) == []  # a failed download leaves nothing behind


def test_an_alias_that_does_not_exist_is_an_error_not_a_crash(gone):
    follower = ModelFollower("models:/gone@nope", "shadow", Settings(), gone / "downloads", stats=ScorerStats())
    outcome = asyncio.run(follower.check())
    assert outcome["status"] == "error" and "models:/gone@nope" in outcome["error"]
    assert follower.failures == 1
