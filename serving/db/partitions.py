"""The log's day partitions: created ahead of time, on demand for the days a batch of rows needs,
and dropped whole past the retention period.

A row whose day has no partition is refused by PostgreSQL, so every writer of log rows asks
``Partitions.ensure`` for its rows' days first. Creating a partition locks the parent table
briefly, so this is done once per day and process (remembered), and ``AHEAD_DAYS`` ahead so that
midnight never waits for it (the service also does it periodically: serving/log_upkeep.py).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Iterable

AHEAD_DAYS = 2


def utc_day(moment: datetime | str) -> date:
    """The UTC day of a row's timestamp (a datetime, or its ISO text as the spill file keeps it)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc)
    return moment.date()


class Partitions:
    """Which day partitions exist, as far as this process knows; creates the missing ones."""

    def __init__(self):
        self._known: set[date] = set()

    def ensure(self, connection, days: Iterable[date]) -> int:
        """Create the partitions of ``days`` (and of the next ``AHEAD_DAYS``) that do not exist yet.

        Runs in the caller's transaction: the rows that need the partitions commit with them.
        Returns how many were created.
        """
        today = datetime.now(timezone.utc).date()
        # Older days are asked again: retention may have dropped them (a replay then makes them anew).
        self._known = {day for day in self._known if day >= today - timedelta(days=1)}
        wanted = set(days) | {today + timedelta(days=k) for k in range(AHEAD_DAYS + 1)}
        missing = sorted(wanted - self._known)
        if not missing:
            return 0
        with connection.cursor() as cursor:
            cursor.execute("SELECT ensure_prediction_partitions(%s::date[])", (missing,))
            (created,) = cursor.fetchone()
        self._known.update(missing)
        return created

    def forget(self) -> None:
        """After a rollback or a new connection: the partitions made in it may not exist."""
        self._known.clear()


_DAY_PARTITIONS = """
    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'predictions'::regclass AND c.relname ~ '^predictions_[0-9]{8}$'"""


def drop_days_before(connection, first_kept: date) -> list[str]:
    """Drop the log's day partitions before ``first_kept`` and the /stats and /drift rollups' hours
    before the first day kept; commit. Returns the partitions dropped (oldest first).

    Only what every rollup has read goes: a partition holding a row past any feed's mark (a rollup
    behind, a spill replayed into an old day) stays, with every later one, until a later pass.
    What stays after a drop: the realised-performance rollup (prediction_outcomes and its day cells,
    one row per user and model version, no inputs), so /performance keeps covering the rows dropped.
    """
    dropped, cut = [], first_kept
    try:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '5s'")  # dropping locks the parent: never queue long
            # The feeds' rows first, as every refresher takes its own first: a refresh in progress (which
            # reads the partitions and rewrites cells) finishes before the drop, and the two never deadlock.
            marks = []
            for feed in ("outcome_feed", "stats_feed", "drift_feed"):
                cursor.execute(f"SELECT last_log_id FROM {feed} WHERE id = 1 FOR UPDATE")
                marks.append(cursor.fetchone()[0])
            read_through = min(marks)
            cursor.execute(_DAY_PARTITIONS)
            for name in sorted(name for (name,) in cursor.fetchall()):
                day = datetime.strptime(name[-8:], "%Y%m%d").date()
                if day >= first_kept:
                    break
                cursor.execute(f'SELECT coalesce(max(id), 0) FROM "{name}"')
                if cursor.fetchone()[0] > (read_through or 0):
                    cut = day
                    break
                cursor.execute(f'DROP TABLE "{name}"')
                dropped.append(name)
            for cells in ("stats_cells", "drift_cells"):
                cursor.execute(f"DELETE FROM {cells} WHERE hour < %s::date::timestamp AT TIME ZONE 'UTC'", (cut,))
    except BaseException:
        connection.rollback()  # a lock not had in 5 s: nothing dropped, the connection usable
        raise
    connection.commit()
    return dropped
