"""The window arithmetic of GET /performance: which spans of days come from cells, which rows are read."""

from datetime import date, datetime, timedelta, timezone

import numpy as np
import pytest

from serving.performance import cover, fold, performance_groups, spans_to_build, split_window

DAY0 = date(1970, 1, 1)
T = date(2026, 11, 27)  # day number 20,419 (odd)


def n(day: date) -> int:
    return (day - DAY0).days


def d(number: int) -> date:
    return DAY0 + timedelta(days=number)


def at(day: date, hour: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=timezone.utc)


def everything_built(first: int, end: int) -> set:
    out, length = set(), 1
    while length <= 512:
        out |= {(d(s), length) for s in range(first // length * length, end - length + 1, length)}
        length *= 2
    return out


def test_a_run_of_built_days_is_a_few_aligned_spans():
    built = everything_built(n(T) - 100, n(T))
    spans, days = cover(n(T) - 30, n(T), built, T - timedelta(days=100), 512)
    assert days == [] and sum(length for _, length in spans) == 30
    assert len(spans) <= 8 and all(start % length == 0 for start, length in spans)


def test_a_span_not_built_is_read_as_its_halves_and_a_day_not_built_as_rows():
    built = everything_built(n(T) - 100, n(T))
    dirty = n(T) - 9
    built = {(s, length) for s, length in built if not (n(s) <= dirty < n(s) + length)}
    spans, days = cover(n(T) - 30, n(T), built, T - timedelta(days=100), 512)
    assert days == [dirty]
    covered = sorted(day for start, length in spans for day in range(start, start + length))
    assert covered == [x for x in range(n(T) - 30, n(T)) if x != dirty]


def test_spans_before_the_first_row_are_empty_not_missing():
    spans, days = cover(0, n(T), set(), T - timedelta(days=2), 512)
    assert spans == [] and days == [n(T) - 2, n(T) - 1]


def test_the_window_becomes_spans_and_the_rows_of_its_partial_days_and_today():
    first = T - timedelta(days=20)
    built = everything_built(n(first), n(T))
    since, until = at(T - timedelta(days=10), 6), None
    spans, ranges = split_window(since, until, built, T, first)
    assert sorted(day for s, length in spans for day in range(n(s), n(s) + length)) == list(range(n(T) - 9, n(T)))
    assert ranges == [(since, at(T - timedelta(days=9))), (at(T), None)]


def test_a_window_inside_one_day_is_read_as_rows():
    built = everything_built(n(T) - 5, n(T))
    since, until = at(T - timedelta(days=3), 2), at(T - timedelta(days=3), 9)
    assert split_window(since, until, built, T, T - timedelta(days=5)) == ([], [(since, until)])


def test_an_unbuilt_day_joins_the_rows_next_to_it():
    first = T - timedelta(days=6)
    built = {(x, 1) for x in (T - timedelta(days=k) for k in (2, 3, 4, 5, 6))}  # yesterday not built
    spans, ranges = split_window(at(first), None, built, T, first, max_days=1)
    assert sorted(spans) == sorted(built)
    assert ranges == [(at(T - timedelta(days=1)), None)]


def test_by_day_reads_single_days_only():
    first = T - timedelta(days=8)
    spans, _ = split_window(at(first), None, everything_built(n(first), n(T)), T, first, max_days=1)
    assert {length for _, length in spans} == {1} and len(spans) == 8


def test_spans_are_built_days_first_then_longer_spans_from_built_halves():
    first = T - timedelta(days=3)
    built: set = set()
    order = []
    while todo := spans_to_build(built, first, T):
        built |= set(todo)
        order += todo
    assert order[:3] == [(T - timedelta(days=1), 1), (T - timedelta(days=2), 1), (T - timedelta(days=3), 1)]
    assert all(n(s) + length <= n(T) and n(s) % length == 0 for s, length in order)
    assert spans_to_build(built, first, T) == [] and spans_to_build(set(), None, T) == []
    # Every span that holds a day with rows, ends before today and fits is built.
    assert len(order) == len({(s, x) for s, x in everything_built(n(first), n(T)) if n(s) + x > n(first)})


@pytest.mark.parametrize("by, raw, folded", [
    ("platform", "IOS ", "ios"), ("platform", "android", "android"), ("country", " PE", "pe"),
    ("country", None, "(missing)"), ("source", "Unity  Ads", "unity ads"), ("route", "/predict", "/predict"),
    ("day", "2026-11-20", "2026-11-20"), (None, None, None),
])
def test_values_are_folded_as_the_model_folds_them(by, raw, folded):
    assert fold(by, raw) == folded


def test_bins_as_arrays_merge_to_the_groups_of_the_same_bins_as_rows():
    """outcome_bins' form (a row of arrays per span, value, version and kind, statistics a kind does not
    keep as None) gives the groups the row-per-bin form gives: spellings folded, spans' bins added."""
    rng = np.random.default_rng(5)
    per_bin, as_arrays = [], []
    for span in range(3):
        for value in ("PE", "pe ", "ES"):
            for version in ("1", "2"):
                users = 150
                predicted = rng.lognormal(0, 1, users)
                actual = np.where(rng.random(users) < 0.3, rng.lognormal(1, 1, users), 0.0)
                probability = rng.uniform(0.01, 0.6, users)
                totals = (users, users, predicted.sum(), actual.sum(), np.abs(predicted - actual).sum(),
                          ((predicted - actual) ** 2).sum(), ((probability - (actual > 0)) ** 2).sum(),
                          users, 0, int((actual > 0).sum()))
                per_bin.append((value, version, "c", None, *totals))
                as_arrays.append((value, version, "c", None, *totals))
                for kind, score in (("p", predicted), ("q", probability), ("a", actual)):
                    bins = np.round(np.arcsinh(score * 1000) * 50).astype(int)
                    stats = {b: (int((bins == b).sum()), predicted[bins == b].sum(), actual[bins == b].sum(),
                                 int((actual[bins == b] > 0).sum())) for b in np.unique(bins)}
                    for b, (n, p, a, payers) in stats.items():
                        per_bin.append((value, version, kind, int(b), 0, n, p, a, 0, 0, 0, 0, 0, payers))
                    keys = sorted(stats)
                    column = lambda k, keep: [float(stats[b][k]) for b in keys] if keep else None  # noqa: E731
                    as_arrays.append((value, version, kind, [int(b) for b in keys], None, column(0, True),
                                      column(1, kind == "p"), column(2, kind in "pa"), None, None, None, None, None,
                                      column(3, kind == "q")))
    rng.shuffle(as_arrays)
    expected, got = performance_groups(per_bin, "country", 200), performance_groups(as_arrays, "country", 200)
    assert [(g["model_version"], g["value"], g["n_labelled"]) for g in got] == \
        [(v, c, 3 * 150 * (2 if c == "pe" else 1)) for v in ("1", "2") for c in ("es", "pe")]
    for mine, theirs in zip(got, expected):
        assert mine["metrics"].keys() == theirs["metrics"].keys()
        for name, value in theirs["metrics"].items():
            if isinstance(value, list):  # deciles: a dict each
                assert [d.keys() for d in mine["metrics"][name]] == [d.keys() for d in value]
                assert [x for d in mine["metrics"][name] for x in d.values()] == pytest.approx(
                    [x for d in value for x in d.values()], rel=1e-12), name
            else:
                assert mine["metrics"][name] == pytest.approx(value, rel=1e-12), name
