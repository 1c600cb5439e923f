"""Reading the log and the labels incrementally, without skipping a row that commits late.

``predictions.id`` and ``labels.seq`` come from sequences, but a transaction can take a number
and commit after another that took a later one: a reader that remembered "everything up to the
largest number seen" would skip it for good. So every writer takes a shared advisory lock in its
transaction (``hold_shared``) before taking numbers, and the reader takes the same lock
exclusively, for an instant, to read the sequence (``high_water_mark``): at that instant no writer
is between taking a number and committing, so every number up to the mark is committed or gone.
"""

from __future__ import annotations

from contextlib import contextmanager

import psycopg2.errors

# How long a refresher waits for another one (or for writers in flight) before giving up its turn.
LOCK_TIMEOUT = "5s"

# Advisory lock keys (any constants; one per feed, so label writes never wait for log writes).
LOG_FEED = 0x7265765F6C6F67      # 'rev_log'
LABEL_FEED = 0x7265765F6C6162    # 'rev_lab'
SEQUENCES = {LOG_FEED: "prediction_log_id_seq", LABEL_FEED: "label_seq"}


def hold_shared(cursor, feed: int) -> None:
    """In a writer's transaction, before its inserts: held until it commits or rolls back."""
    cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", (feed,))


def high_water_mark(cursor, feed: int) -> int:
    """The largest number taken from the feed's sequence, once every writer holding one committed.

    Waits for the writers in flight (milliseconds; new ones queue meanwhile) at most as long as the
    transaction's lock_timeout allows, then raises psycopg2's LockNotAvailable.
    """
    cursor.execute("SELECT pg_advisory_lock(%s)", (feed,))
    try:
        cursor.execute(f"SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM {SEQUENCES[feed]}")
        (mark,) = cursor.fetchone()
    finally:
        cursor.execute("SELECT pg_advisory_unlock(%s)", (feed,))
    return int(mark)


class FeedBusy(Exception):
    """Another refresher held the feed (or writers held its lock) for longer than LOCK_TIMEOUT."""


@contextmanager
def feed_transaction(connection):
    """A cursor in one transaction of a feed's reader: committed when the block ends, rolled back
    when it raises; FeedBusy instead of psycopg2's LockNotAvailable."""
    try:
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            yield cursor
        connection.commit()
    except psycopg2.errors.LockNotAvailable:
        connection.rollback()
        raise FeedBusy from None
    except BaseException:
        connection.rollback()
        raise


def read_log_batch(connection, feed_table: str, batch_rows: int, apply, then=None) -> int | None:
    """One refresh of a rollup fed by the log: take the feed row ``feed_table`` (its
    ``last_log_id``), ``apply(cursor, after, through)`` to the next ``batch_rows`` committed log
    ids, move the feed, ``then(cursor, through)`` in the same transaction, and commit; the rows
    still pending, or None when another refresher held the feed for longer than LOCK_TIMEOUT."""
    try:
        with feed_transaction(connection) as cursor:
            cursor.execute(f"SELECT last_log_id FROM {feed_table} WHERE id = 1 FOR UPDATE")
            (last,) = cursor.fetchone()
            mark = high_water_mark(cursor, LOG_FEED)
            through = min(mark, last + batch_rows)
            if through > last:
                apply(cursor, last, through)
                cursor.execute(f"UPDATE {feed_table} SET last_log_id = %s WHERE id = 1", (through,))
            if then is not None:
                then(cursor, through)
    except FeedBusy:
        return None
    return max(mark - through, 0)
