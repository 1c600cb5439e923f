"""The log's day partitions: created ahead of time, and on demand for the days a batch of rows needs.

A row whose day has no partition is refused by PostgreSQL, so every writer of log rows asks
``Partitions.ensure`` for its rows' days first. Creating a partition locks the parent table
briefly, so this is done once per day and process (remembered), and ``AHEAD_DAYS`` ahead so that
midnight never waits for it.
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
