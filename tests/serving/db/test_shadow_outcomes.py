"""Two versions' realised metrics on the same users, on a real PostgreSQL, against metrics computed
independently here from the rows test_outcomes' story wrote (every even user scored by versions 1
and 2, every odd one by version 1 only)."""

from __future__ import annotations

import time
from datetime import timedelta

import numpy as np
import pytest

from serving.db import outcomes
from serving.db.performance import performance_rows
from serving.db.shadow_outcomes import same_users_rows
from serving.performance import performance_groups
from tests.serving.test_outcomes import (MIDNIGHT, TODAY, check, database, expected_groups, log_row,  # noqa: F401
                                         prediction, store_labels, story, write)

EPOCH = MIDNIGHT - timedelta(days=3650)


def both_scored(user) -> bool:
    return int(user["user_id"].split("-")[1]) % 2 == 0


def test_each_version_is_judged_on_the_users_both_scored_only(story):
    connection, matched = story
    outcomes.catch_up(connection)
    groups = performance_groups(same_users_rows(connection, first="1", second="2", since=EPOCH, until=None,
                                                by=None), None, min_labelled=200)
    check(groups, expected_groups(matched, keep=both_scored))
    version_1, version_2 = groups
    assert version_1["n_labelled"] == version_2["n_labelled"] > 0
    # Version 1 over all its users (what /performance's groups say) is a different population.
    everyone = performance_groups(performance_rows(connection, since=EPOCH, until=None, by=None, today=TODAY),
                                  None, min_labelled=200)
    assert everyone[0]["n_labelled"] > 1.8 * version_1["n_labelled"]


def test_a_user_counts_only_when_both_versions_scored_them_in_the_window(story):
    """Users whose version-2 prediction is older than the window are out, for both versions."""
    connection, matched = story
    rng = np.random.default_rng(5)
    old, new = MIDNIGHT - timedelta(days=20), MIDNIGHT - timedelta(hours=1)
    late = {f"late-{i}": (prediction(rng), prediction(rng)) for i in range(40)}
    write(connection, [log_row(u, "2", old, p2) for u, (_, p2) in late.items()]
          + [log_row(u, "1", new, p1) for u, (p1, _) in late.items()])
    store_labels(connection, {u: float(i % 3) for i, u in enumerate(late)})
    outcomes.catch_up(connection)
    since = MIDNIGHT - timedelta(days=10)
    groups = performance_groups(same_users_rows(connection, first="1", second="2", since=since, until=None,
                                                by=None), None, min_labelled=200)
    check(groups, expected_groups(matched, keep=lambda u: both_scored(u) and u["timestamp"] >= since))
    everything = performance_groups(same_users_rows(connection, first="1", second="2", since=EPOCH, until=None,
                                                    by=None), None, min_labelled=200)
    assert [g["n_labelled"] for g in everything] == [g["n_labelled"] + 40 for g in groups]


def test_grouped_by_country_the_same_users_per_value(story):
    connection, matched = story
    outcomes.catch_up(connection)
    groups = performance_groups(same_users_rows(connection, first="1", second="2", since=EPOCH, until=None,
                                                by="country"), "country", min_labelled=200)
    check(groups, expected_groups(matched, keep=both_scored, key=lambda u: u["country"].lower()))


def test_one_version_against_itself_is_refused(story):
    connection, _ = story
    with pytest.raises(ValueError):
        same_users_rows(connection, first="1", second="1", since=EPOCH, until=None, by=None)


def test_a_comparison_over_its_time_bound_is_given_up_with_a_reason(fresh_database, monkeypatch):
    """A statement PostgreSQL cancels at the bound: same_users says so instead of failing /performance."""
    from serving import routes_models

    def slow(connection, **_):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(10)")

    monkeypatch.setattr(routes_models, "_TIMEOUT_S", 1)
    monkeypatch.setattr(routes_models, "same_users_rows", slow)
    started = time.monotonic()
    out = routes_models.same_users_performance(fresh_database, ("1", "2"), since=EPOCH, until=None, by=None,
                                               min_labelled=1)
    assert time.monotonic() - started < 5
    assert (out["groups"], out["n_users"]) == ([], None) and out["reason"].startswith("query_timeout"), out
