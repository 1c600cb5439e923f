"""The /shadow comparison, as SQL: champion and shadow rows of the same users joined.

A shadow row has its champion row's ``row_key`` and ``timestamp`` (serving/shadow.py), so each
pair is found through the log's primary key (row_key, role, timestamp), partition by partition.
Only users both models scored (status 200, a prediction) count, each once: by user_id, its latest
pair (a row without user_id is a user of its own).

Cost: ``shadow_pairs`` reads every row of the window (the join scans both roles' rows there:
measured in docs/performance.md, "GET /shadow at scale"); ``shadow_sample`` reads only the newest
days that hold ``limit`` pairs, as counted per day by ``shadow_pairs``.
"""

from __future__ import annotations

from datetime import date, datetime, time, timezone

_PAIRED = """
    FROM predictions s
    JOIN predictions c ON c.row_key = s.row_key AND c.timestamp = s.timestamp AND c.role = 'champion'
    WHERE s.role = 'shadow' AND s.timestamp >= %(since)s AND c.timestamp >= %(since)s
      AND s.status_code = 200 AND c.status_code = 200
      AND s.predicted_revenue IS NOT NULL AND c.predicted_revenue IS NOT NULL"""

# One pair per user and pair of versions: the user's latest (a user_id scored twice is one user; a
# row without user_id is a user of its own).
_LATEST = f"""
    SELECT DISTINCT ON (c.model_version, s.model_version, coalesce('u' || s.user_id, 'k' || s.row_key))
           c.model_version AS champion_version, s.model_version AS shadow_version, s.timestamp, s.row_key,
           c.predicted_revenue AS champion_revenue, s.predicted_revenue AS shadow_revenue
    {_PAIRED} {{versions}}
    ORDER BY c.model_version, s.model_version, coalesce('u' || s.user_id, 'k' || s.row_key), s.timestamp DESC, s.row_key DESC"""

PAIRS = f"""
    SELECT champion_version, shadow_version, (timestamp AT TIME ZONE 'UTC')::date, count(*),
           sum(shadow_revenue), sum(champion_revenue), max(timestamp)
    FROM ({_LATEST.format(versions="")}) latest
    GROUP BY 1, 2, 3"""

# The newest users of one pair of versions, for the rank comparisons (bounded: they sort in Python).
SAMPLE = f"""
    SELECT champion_revenue, shadow_revenue
    FROM ({_LATEST.format(versions="AND c.model_version = %(champion)s AND s.model_version = %(shadow)s")}) latest
    ORDER BY timestamp DESC, row_key
    LIMIT %(limit)s"""


def shadow_pairs(connection, since: datetime) -> list[dict]:
    """Each (champion version, shadow version) with users both scored at or after ``since``:
    ``n_users``, ``mean_ratio`` (the shadow's mean predicted revenue over the champion's, on
    those users), ``last`` (the newest row's time) and ``days`` ({UTC day: users})."""
    with connection.cursor() as cursor:
        cursor.execute(PAIRS, {"since": since})
        rows = cursor.fetchall()
    connection.rollback()
    pairs: dict[tuple, dict] = {}
    for champion, shadow, day, n, shadow_sum, champion_sum, last in rows:
        pair = pairs.setdefault((champion, shadow), {"champion_version": champion, "shadow_version": shadow,
                                                     "n_users": 0, "sums": [0.0, 0.0], "last": last, "days": {}})
        pair["n_users"] += n
        pair["sums"][0] += shadow_sum
        pair["sums"][1] += champion_sum
        pair["last"] = max(pair["last"], last)
        pair["days"][day] = n
    for pair in pairs.values():
        shadow_sum, champion_sum = pair.pop("sums")
        pair["mean_ratio"] = shadow_sum / champion_sum if champion_sum else None
    return list(pairs.values())


def newest_days_start(days: dict[date, int], since: datetime, limit: int) -> datetime:
    """The start of the oldest of the newest days that together hold ``limit`` users (or ``since``)."""
    total = 0
    for day in sorted(days, reverse=True):
        total += days[day]
        if total >= limit:
            return max(since, datetime.combine(day, time(), tzinfo=timezone.utc))
    return since


def shadow_sample(connection, since: datetime, pair: dict, limit: int) -> tuple[list, list]:
    """Predicted revenue (USD) of the newest ``limit`` users both versions of ``pair`` (from
    ``shadow_pairs``) scored: (champion's, shadow's)."""
    start = newest_days_start(pair["days"], since, limit)
    with connection.cursor() as cursor:
        cursor.execute(SAMPLE, {"since": start, "champion": pair["champion_version"],
                                "shadow": pair["shadow_version"], "limit": limit})
        rows = cursor.fetchall()
    connection.rollback()
    return [c for c, _ in rows], [s for _, s in rows]
