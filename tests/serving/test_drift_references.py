"""The reference profiles' cache: what a client can make it hold, and how many profiles are computed at once."""

import asyncio
import sys

import mlflow
import pytest

from serving import drift_references
from serving.drift_references import MAX_COMPUTING, MAX_VERSIONS, NoReference, References
from serving.reference_profile import NO_REFERENCE_EXIT


def test_versions_the_registry_does_not_have_do_not_push_real_ones_out(champion_store):
    references, real = References(), "models:/revenue_model/1"
    mlflow.set_tracking_uri(champion_store)
    try:
        async def ask():
            try:
                await references.get(real)
            except NoReference:
                pass  # the session's model may have no profile: remembered all the same
            for version in range(100, 100 + MAX_VERSIONS + 4):
                with pytest.raises(NoReference, match="has no model"):
                    await references.get(f"models:/revenue_model/{version}")
        asyncio.run(ask())
    finally:
        mlflow.set_tracking_uri(None)
    assert list(references._known) == [real]


def test_profiles_are_computed_one_at_a_time(tmp_path, monkeypatch):
    """Each computation is a process holding a test split and a model: a client asking for many old
    versions at once must not start one per version."""
    spans = tmp_path / "spans"
    real_exec = asyncio.create_subprocess_exec

    async def a_slow_computation(*_, **options):  # a real process, timed by itself
        code = ("import sys, time; start = time.time(); time.sleep(0.3); "
                f"open({str(spans)!r}, 'a').write(f'{{start}} {{time.time()}}\\n'); sys.exit({NO_REFERENCE_EXIT})")
        return await real_exec(sys.executable, "-c", code, **options)

    monkeypatch.setattr(drift_references, "_logged", lambda uri: None)  # no profile in the model: compute
    monkeypatch.setattr(asyncio, "create_subprocess_exec", a_slow_computation)
    references = References()

    async def ask_many():
        answers = await asyncio.gather(*(references.get(f"models:/old/{v}") for v in range(4)),
                                       return_exceptions=True)
        assert all(isinstance(a, NoReference) for a in answers), answers
    asyncio.run(ask_many())
    intervals = sorted(tuple(map(float, line.split())) for line in spans.read_text().splitlines())
    assert len(intervals) == 4 and MAX_COMPUTING == 1
    assert all(later[0] >= earlier[1] for earlier, later in zip(intervals, intervals[1:])), intervals
