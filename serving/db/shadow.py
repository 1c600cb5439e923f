"""The /shadow comparison, as SQL: champion and shadow rows of the same users joined.

A shadow row has its champion row's ``row_key`` and ``timestamp`` (serving/shadow.py), so the
pair is found through the log's primary key (row_key, role, timestamp), partition by partition.
Only users both models scored (status 200, a prediction) count.
"""

from __future__ import annotations

from datetime import datetime

_PAIRED = """
    FROM predictions s
    JOIN predictions c ON c.row_key = s.row_key AND c.timestamp = s.timestamp AND c.role = 'champion'
    WHERE s.role = 'shadow' AND s.timestamp >= %(since)s AND c.timestamp >= %(since)s
      AND s.status_code = 200 AND c.status_code = 200
      AND s.predicted_revenue IS NOT NULL AND c.predicted_revenue IS NOT NULL"""

PAIRS = f"""
    SELECT c.model_version, s.model_version, count(*), sum(s.predicted_revenue) / nullif(sum(c.predicted_revenue), 0),
           max(s.timestamp)
    {_PAIRED}
    GROUP BY 1, 2"""

# The newest users of one pair of versions, for the rank comparisons (bounded: they sort in Python).
SAMPLE = f"""
    SELECT c.predicted_revenue, s.predicted_revenue
    {_PAIRED} AND c.model_version = %(champion)s AND s.model_version = %(shadow)s
    ORDER BY s.timestamp DESC, s.row_key
    LIMIT %(limit)s"""


def shadow_pairs(connection, since: datetime) -> list[dict]:
    """Each (champion version, shadow version) with users both scored at or after ``since``:
    ``n_users``, ``mean_ratio`` (the shadow's mean predicted revenue over the champion's, on
    those users) and ``last`` (the newest row's time)."""
    with connection.cursor() as cursor:
        cursor.execute(PAIRS, {"since": since})
        rows = cursor.fetchall()
    connection.rollback()
    return [{"champion_version": c, "shadow_version": s, "n_users": n, "mean_ratio": ratio, "last": last}
            for c, s, n, ratio, last in rows]


def shadow_sample(connection, since: datetime, champion: str, shadow: str, limit: int) -> tuple[list, list]:
    """Predicted revenue (USD) of the newest ``limit`` users both versions scored: (champion's, shadow's)."""
    with connection.cursor() as cursor:
        cursor.execute(SAMPLE, {"since": since, "champion": champion, "shadow": shadow, "limit": limit})
        rows = cursor.fetchall()
    connection.rollback()
    return [c for c, _ in rows], [s for _, s in rows]
