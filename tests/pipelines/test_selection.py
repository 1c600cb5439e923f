import pytest

from pipelines.selection import challenger_wins, pick_winner


def m(gini, total=1.0):
    return {"normalized_gini": gini, "total_ratio": total}


def test_the_best_ranking_servable_candidate_wins():
    results = {"a": m(0.9), "b": m(0.7), "c": m(0.8)}
    assert pick_winner(results, servable={"b", "c"}) == "c"


def test_a_candidate_whose_total_is_far_off_does_not_qualify():
    results = {"a": m(0.9, total=1.5), "b": m(0.7)}
    assert pick_winner(results, servable={"a", "b"}) == "b"


def test_without_servable_candidates_there_is_no_winner():
    with pytest.raises(ValueError):
        pick_winner({"a": m(0.9)}, servable=set())


@pytest.mark.parametrize("challenger, champion, min_gain, wins", [
    (m(0.5), None, 0.0, True),
    (m(0.9, total=1.3), None, 0.0, False),  # the total check applies with no champion (it was skipped)
    (m(0.81), m(0.80), 0.0, True),
    (m(0.80), m(0.80), 0.0, True),
    (m(0.805), m(0.80), 0.01, False),
    (m(0.79), m(0.80), 0.0, False),
    (m(0.90, total=0.7), m(0.80), 0.0, False),
    (m(0.70), m(0.80), -1.0, True),
])
def test_challenger_rule(challenger, champion, min_gain, wins):
    assert challenger_wins(challenger, champion, min_gain)[0] is wins
