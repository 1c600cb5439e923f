"""Labels: storing what users really spent (the ``labels`` table, migration 0003)."""

from __future__ import annotations

from typing import Sequence

from serving.db.feed import LABEL_FEED, hold_shared

_UPSERT = """
    WITH written AS (
        INSERT INTO labels AS l (user_id, revenue, observed_at, source)
        SELECT u, r, coalesce(o, now()), %(source)s
        FROM unnest(%(user_ids)s::text[], %(revenues)s::float8[], %(observed)s::timestamptz[]) AS t(u, r, o)
        ON CONFLICT (user_id) DO UPDATE
            SET revenue = excluded.revenue, observed_at = excluded.observed_at, source = excluded.source,
                updated_at = now(), seq = excluded.seq
        RETURNING xmax = 0 AS inserted)
    SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written"""


def upsert_labels(connection, user_ids: Sequence[str], revenues: Sequence[float],
                  observed_at: Sequence[str | None], source: str) -> tuple[int, int]:
    """Store labels (distinct user_ids; revenue USD; observed_at ISO 8601, None: now) in the
    caller's transaction; a label for a user_id already stored replaces it. (inserted, replaced)."""
    with connection.cursor() as cursor:
        hold_shared(cursor, LABEL_FEED)
        cursor.execute(_UPSERT, {"user_ids": list(user_ids), "revenues": [float(r) for r in revenues],
                                 "observed": list(observed_at), "source": source})
        inserted, replaced = cursor.fetchone()
    return int(inserted), int(replaced)
