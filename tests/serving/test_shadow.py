"""Shadow scoring's pure parts: who is shadowed, how the queue is bounded, how two rankings compare."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from revenue_model.validation import validate_columns
from serving.config import Settings
from serving.core import RequestRecord
from serving.model_identity import ModelIdentity
from serving.routes_models import _pick
from serving.scorer_process import ScorerProcess
from serving.served_model import ServedModel
from serving.shadow import ShadowScorer, chosen
from serving.shadow_compare import compare, top_share_overlap

USER = {"country": "es", "source": "Organic", "platform": "iOS", "event_1": 1, "event_2": 2}


@pytest.mark.parametrize("share, expected", [(1.0, [0, 1, 2]), (0.0, [])])
def test_share_one_takes_everyone_and_zero_no_one(share, expected):
    assert chosen(["a", None, "c"], "req", share) == expected


def test_a_user_is_in_or_out_by_user_id_whatever_the_request_and_about_share_of_users_are_in():
    ids = [f"user-{i}" for i in range(20_000)]
    first = set(chosen(ids, "request-1", 0.3))
    assert first == set(chosen(ids, "request-2", 0.3))  # the request does not matter when there is an id
    assert abs(len(first) / len(ids) - 0.3) < 0.01
    # the rule itself, from the contract: crc32 of the user_id in the lowest share of its range
    assert first == {i for i, u in enumerate(ids) if zlib.crc32(u.encode()) < 0.3 * 2 ** 32}


def test_users_without_an_id_go_in_or_out_together_by_the_request_id():
    requests = [f"request-{k}" for k in range(400)]
    decisions = [chosen([None, None, None], rid, 0.5) for rid in requests]
    assert all(d in ([], [0, 1, 2]) for d in decisions)
    assert 150 < sum(1 for d in decisions if d) < 250


def _record(users: list[dict], request_id: str = "r") -> RequestRecord:
    record = RequestRecord(request_id, "/batch_predict")
    record.users, record.columns = users, validate_columns(users)
    record.outputs = [{"predicted_revenue": 1.0}] * len(users)
    return record


def test_a_full_queue_drops_the_shadow_work_and_counts_it_without_waiting(tmp_path: Path):
    served = ServedModel(ModelIdentity("models:/m/2", name="m", version="2"),
                         ScorerProcess(tmp_path, port=1, workers=1, threads=1), Settings())
    served.supervisor.ready = True  # as once its scorer answers; nothing is sent here
    shadow = ShadowScorer(writer=None, share=1.0, max_queue_users=5)
    shadow.use(served)
    champion = ModelIdentity("models:/m/1", name="m", version="1")
    shadow.offer(_record([USER] * 3), 200, champion)
    shadow.offer(_record([USER] * 3), 200, champion)        # 3 + 3 > 5: dropped whole
    shadow.offer(_record([USER] * 2), 200, champion)        # 3 + 2 fits
    assert (shadow.queued_users, shadow.dropped_users) == (5, 3)
    shadow.offer(_record([USER]), 503, champion)            # not answered: nothing to shadow
    shadow.offer(_record([USER]), 200, ModelIdentity("models:/m/2", name="m", version="2"))  # itself
    assert (shadow.queued_users, shadow.dropped_users) == (5, 3)
    served.supervisor.ready = False                         # restarting: dropped, not queued
    shadow.offer(_record([USER]), 200, champion)
    assert (shadow.queued_users, shadow.dropped_users) == (5, 4)


def test_top_share_overlap_at_its_extremes_and_against_sets():
    rng = np.random.default_rng(0)
    a = rng.lognormal(size=1000)
    assert top_share_overlap(a, a) == 1.0
    assert top_share_overlap(a, -a) == 0.0
    b = a + rng.normal(scale=2.0, size=1000)
    by_sets = len(set(np.argsort(-a)[:100]) & set(np.argsort(-b)[:100])) / 100
    assert top_share_overlap(a, b) == by_sets
    unrelated = [top_share_overlap(a, rng.permutation(a)) for _ in range(50)]
    assert abs(np.mean(unrelated) - 0.1) < 0.02


def test_compare_uses_spearman_and_says_none_without_users():
    rng = np.random.default_rng(1)
    a, b = rng.lognormal(size=500), rng.lognormal(size=500)
    got = compare(a, a * 0.5 + b)
    assert got["spearman"] == pytest.approx(spearmanr(a, a * 0.5 + b).statistic, rel=1e-12)
    assert got["sample_users"] == 500
    assert compare([], []) == {"spearman": None, "top_decile_overlap": None, "sample_users": 0}


PAIRS = [{"champion_version": "1", "shadow_version": "2", "last": 3},
         {"champion_version": "1", "shadow_version": "3", "last": 2},
         {"champion_version": "2", "shadow_version": "3", "last": 1}]


@pytest.mark.parametrize("wanted, serving, expected", [
    ((None, None), ("2", "3"), ("2", "3")),      # the pair serving now, though not the newest
    ((None, None), ("4", "5"), ("1", "2")),      # serving nothing logged yet: the newest pair
    ((None, None), ("1", None), ("1", "2")),     # no shadow loaded: the champion's newest
    (("1", "3"), ("2", "3"), ("1", "3")),        # asked for
    ((None, "3"), ("1", "2"), ("1", "3")),       # half asked for: its newest
    (("9", None), ("1", "2"), None),             # asked for and absent: nothing, not another pair
])
def test_the_report_compares_the_pair_asked_for_else_serving_else_newest(wanted, serving, expected):
    found = _pick(PAIRS, wanted, serving)
    assert (found and (found["champion_version"], found["shadow_version"])) == expected


def test_without_a_shadow_model_info_says_so_and_a_report_without_pairs_is_empty(http):
    status, _, body = http.get("/shadow?since=1h&champion_version=no-such-version")
    assert status == 200, body
    assert [body[k] for k in ("champion_version", "shadow_version", "n_users", "spearman")] == [None, None, 0, None]
    info = http.get("/model/info")[2]
    assert info["shadow"] is None and info["swaps"] == []
    status, _, body = http.get("/shadow?since=yesterday")
    assert status == 400 and body["problems"] == [{"row": None, "field": "since",
                                                    "reason": "is not a time or a duration"}]


def test_the_sample_reads_only_the_newest_days_that_hold_enough_users():
    from datetime import date, datetime, timezone

    from serving.db.shadow import newest_days_start

    since = datetime(2026, 11, 1, tzinfo=timezone.utc)
    days = {date(2026, 11, 20): 50, date(2026, 11, 21): 30, date(2026, 11, 22): 40}
    assert newest_days_start(days, since, 40) == datetime(2026, 11, 22, tzinfo=timezone.utc)
    assert newest_days_start(days, since, 41) == datetime(2026, 11, 21, tzinfo=timezone.utc)
    assert newest_days_start(days, since, 121) == since            # not enough: the whole window
    late = datetime(2026, 11, 22, 6, tzinfo=timezone.utc)           # a window starting within the day
    assert newest_days_start(days, late, 10) == late


def test_stopping_counts_the_shadow_work_cut_off_as_dropped(tmp_path: Path):
    import asyncio
    import socket

    async def scenario():
        with socket.socket() as silent:  # accepts connections, never answers: a call in flight for good
            silent.bind(("127.0.0.1", 0))
            silent.listen()
            served = ServedModel(ModelIdentity("models:/m/2", name="m", version="2"),
                                 ScorerProcess(tmp_path, port=silent.getsockname()[1], workers=1, threads=1),
                                 Settings())
            served.supervisor.ready = True
            shadow = ShadowScorer(writer=None, share=1.0, max_queue_users=100).start()
            shadow.use(served)
            champion = ModelIdentity("models:/m/1", name="m", version="1")
            shadow.offer(_record([USER] * 3), 200, champion)
            shadow.offer(_record([USER] * 2), 200, champion)
            await asyncio.sleep(0.2)
            await shadow.stop(wait_s=0.3)
            served.http.close()
            return shadow

    shadow = asyncio.run(scenario())
    assert (shadow.queued_users, shadow.dropped_users, shadow.scored_users) == (0, 5, 0)
