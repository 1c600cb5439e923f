"""Realised performance of two model versions on the same users: the users both scored.

A champion and its shadow are compared on live evidence only when they are judged on the same
labelled users: the shadow scores a share of users, and either version may have scored users the
other never saw (before the shadow started, a swap, a share below 1). ``same_users_rows`` reads
``prediction_outcomes`` (each user's latest successful prediction per version, with the user's
label: serving/db/outcomes.py) for the users who have a row of BOTH versions in the window, and
groups them exactly as GET /performance does (``rows_sql``: the same statistics, so
``serving.performance.performance_groups`` turns them into the same metrics).

A user counts when both versions' latest predictions fall in [since, until). Both rows carry the
same label (a label is written to every row of its user at once).

Cost: the users of both versions in the window are joined through the table's primary key
(user_id, model_version), with no day cells (they are per version, not per pair of versions), so a
call reads every row of the two versions in the window once. The caller bounds it with a statement
timeout.
"""

from __future__ import annotations

from datetime import datetime

from serving.db.performance import range_parameters, rows_sql

_BOTH = """
    WITH paired AS MATERIALIZED (
        SELECT o.* FROM prediction_outcomes o
        JOIN prediction_outcomes c ON c.user_id = o.user_id AND c.model_version = %(first)s
        JOIN prediction_outcomes s ON s.user_id = o.user_id AND s.model_version = %(second)s
        WHERE o.model_version IN (%(first)s, %(second)s)
          AND c.timestamp >= %(since)s AND s.timestamp >= %(since)s
          AND (%(until)s::timestamptz IS NULL OR (c.timestamp < %(until)s AND s.timestamp < %(until)s)))
    """


def same_users_rows(connection, *, first: str, second: str, since: datetime, until: datetime | None,
                    by: str | None) -> list[tuple]:
    """GET /performance's statistics rows ``(value, model_version, kind, bin, *STATS)`` of versions
    ``first`` and ``second``, over only the users both scored in [since, until) (until None: no
    end), grouped by ``by`` (None: per version; 'day' by the UTC day of each version's own row)."""
    if first == second:
        raise ValueError("two different versions are compared")
    parameters = {"first": first, "second": second, "since": since, "until": until,
                  **range_parameters([(since, until)])}
    with connection.cursor() as cursor:
        cursor.execute(_BOTH + rows_sql(by or "none", 1, source="paired"), parameters)
        rows = cursor.fetchall()
    connection.rollback()
    return rows
