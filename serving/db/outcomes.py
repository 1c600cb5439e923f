"""Keeping ``prediction_outcomes`` and the day cells current (migrations 0004 and 0007).

``refresh`` reads the log rows and labels written since it last looked (by id and seq, see
serving/db/feed.py) and keeps, per user_id and model version, the latest successful prediction
with the user's label. Predictions without a user_id are never matched. ``build_spans`` computes
the cells of spans of days before today that have none, or whose rows changed: a day's from its
rows, a longer span's from its two halves' cells.
Both take the ``outcome_feed`` row lock, so refreshers and builders (of any number of service
processes) take turns, and a day's cells are never built from rows a refresh is changing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone


from serving.db.feed import LABEL_FEED, LOG_FEED, FeedBusy, feed_transaction, high_water_mark
from serving.db.performance import BINS, CELL_DIMS, RANGE_PLANNING, TOTALS, range_parameters, rows_sql
from serving.performance import STATS, spans_to_build

# Rows read per refresh transaction: a few seconds of work on a busy 2-core machine at most,
# so a refresh on a request's path stays short and the background one commits as it goes.
BATCH_ROWS = 100_000

_DAY = "(timestamp AT TIME ZONE 'UTC')::date"
_COLUMNS = ("log_id, timestamp, route, country, platform, source, predicted_revenue, payer_probability, "
            "revenue_p10, revenue_p90, prediction_bin, probability_bin, revenue, revenue_bin")
_APPLY_LOG = f"""
    WITH batch AS (
        SELECT DISTINCT ON (user_id, model_version) user_id, model_version, id, timestamp, route, country,
               platform, source, predicted_revenue, payer_probability, revenue_p10, revenue_p90
        FROM predictions
        WHERE id > %(after)s AND id <= %(through)s AND status_code = 200 AND user_id IS NOT NULL
              AND model_version IS NOT NULL AND predicted_revenue IS NOT NULL
        ORDER BY user_id, model_version, timestamp DESC, id DESC),
    replaced AS (
        SELECT o.timestamp FROM prediction_outcomes o JOIN batch b USING (user_id, model_version)
        WHERE (b.timestamp, b.id) > (o.timestamp, o.log_id)),
    written AS (
        INSERT INTO prediction_outcomes AS o (user_id, model_version, {_COLUMNS})
        SELECT b.user_id, b.model_version, b.id, b.timestamp, b.route, b.country, b.platform, b.source,
               b.predicted_revenue, b.payer_probability, b.revenue_p10, b.revenue_p90,
               outcome_bin(b.predicted_revenue), outcome_bin(b.payer_probability), l.revenue, outcome_bin(l.revenue)
        FROM batch b LEFT JOIN labels l USING (user_id)
        ON CONFLICT (user_id, model_version) DO UPDATE SET ({_COLUMNS}) = ROW({
            ", ".join("excluded." + c.strip() for c in _COLUMNS.split(","))})
        WHERE (excluded.timestamp, excluded.log_id) > (o.timestamp, o.log_id)
        RETURNING o.timestamp),
    spans AS (
        DELETE FROM outcome_spans s USING (SELECT {_DAY} FROM written UNION SELECT {_DAY} FROM replaced) AS c(day)
        WHERE c.day >= s.start AND c.day < s.start + s.days)
    SELECT count(*) FROM written"""
_APPLY_LABELS = f"""
    WITH changed AS (
        UPDATE prediction_outcomes o SET revenue = l.revenue, revenue_bin = outcome_bin(l.revenue)
        FROM labels l
        WHERE l.seq > %(after)s AND l.seq <= %(through)s AND o.user_id = l.user_id
              AND o.revenue IS DISTINCT FROM l.revenue
        RETURNING o.timestamp),
    spans AS (
        DELETE FROM outcome_spans s USING (SELECT DISTINCT {_DAY} FROM changed) AS c(day)
        WHERE c.day >= s.start AND c.day < s.start + s.days)
    SELECT count(*) FROM changed"""


_CELL_COLUMNS = f"dim, model_version, value, kind, bin, {', '.join(STATS)}"
_SPAN = "(start, days) IN ((%(start)s::date, %(half)s), (%(second)s::date, %(half)s))"
_BUILD_DAY = (f"INSERT INTO outcome_cells (start, days, {_CELL_COLUMNS}) "
              f"SELECT %(start)s::date, 1, %(dim)s, model_version, value, kind, bin, {', '.join(STATS)} "
              f"FROM ({{rows}}) AS s(value, model_version, kind, bin, {', '.join(STATS)})")
_BUILD_SPAN = (f"INSERT INTO outcome_cells (start, days, {_CELL_COLUMNS}) "
               f"SELECT %(start)s::date, %(days)s, dim, model_version, value, kind, bin, "
               f"{', '.join(f'sum({c})' for c in STATS)} FROM outcome_cells WHERE {_SPAN} "
               "GROUP BY dim, model_version, value, kind, bin")
# Bins (serving/db/migrations/0007_outcome_bins.sql): a day's from its rows, a span's from its halves'
# arrays, unnested and summed per bin; NULL bins (no payer probability) are never read, so not kept.
_BIN_ARRAYS = "bins, n_labelled, predicted, actual, payers"
_AGGREGATE_BINS = ("array_agg(bin ORDER BY bin), array_agg(n_labelled ORDER BY bin), "
                   "array_agg(predicted ORDER BY bin), array_agg(actual ORDER BY bin), array_agg(payers ORDER BY bin)")
_BUILD_DAY_BINS = (f"INSERT INTO outcome_bins (start, days, dim, model_version, value, kind, {_BIN_ARRAYS}) "
                   f"SELECT %(start)s::date, 1, %(dim)s, model_version, value, kind, {_AGGREGATE_BINS} "
                   f"FROM ({{rows}}) AS s(value, model_version, kind, bin, {', '.join(STATS)}) WHERE bin IS NOT NULL "
                   "GROUP BY model_version, value, kind")
_BUILD_SPAN_BINS = (f"INSERT INTO outcome_bins (start, days, dim, model_version, value, kind, {_BIN_ARRAYS}) "
                    f"SELECT %(start)s::date, %(days)s, dim, model_version, value, kind, {_AGGREGATE_BINS} FROM ("
                    "  SELECT dim, model_version, value, kind, u.bin, sum(u.n_labelled) AS n_labelled, "
                    "         sum(u.predicted) AS predicted, sum(u.actual) AS actual, sum(u.payers) AS payers "
                    f"  FROM outcome_bins, unnest({_BIN_ARRAYS}) AS u(bin, n_labelled, predicted, actual, payers) "
                    f"  WHERE {_SPAN} GROUP BY dim, model_version, value, kind, u.bin) AS s "
                    "GROUP BY dim, model_version, value, kind")


@dataclass(frozen=True)
class Refreshed:
    predictions: int        # (user, version) rows written or replaced
    labels: int             # rows whose label changed
    pending_log_rows: int   # log ids still to read (0: current)
    pending_labels: int


def refresh(connection, *, batch_rows: int = BATCH_ROWS) -> Refreshed | None:
    """Read up to ``batch_rows`` new log rows and labels into prediction_outcomes, and commit.

    None when another refresher or builder holds the feed for longer than LOCK_TIMEOUT.
    """
    try:
        with feed_transaction(connection) as cursor:
            cursor.execute("SELECT last_log_id, last_label_seq FROM outcome_feed WHERE id = 1 FOR UPDATE")
            last_log, last_label = cursor.fetchone()
            log_mark, label_mark = high_water_mark(cursor, LOG_FEED), high_water_mark(cursor, LABEL_FEED)
            log_to, label_to = min(log_mark, last_log + batch_rows), min(label_mark, last_label + batch_rows)
            predictions = labels = 0
            if log_to > last_log:
                cursor.execute(_APPLY_LOG, {"after": last_log, "through": log_to})
                predictions = cursor.fetchone()[0]
            if label_to > last_label:
                cursor.execute(_APPLY_LABELS, {"after": last_label, "through": label_to})
                labels = cursor.fetchone()[0]
            cursor.execute("UPDATE outcome_feed SET last_log_id = %s, last_label_seq = %s WHERE id = 1",
                           (max(log_to, last_log), max(label_to, last_label)))
    except FeedBusy:
        return None
    return Refreshed(predictions, labels, max(log_mark - log_to, 0), max(label_mark - label_to, 0))


def catch_up(connection, *, batch_rows: int = BATCH_ROWS, max_batches: int = 1000) -> Refreshed | None:
    """Refresh batch after batch until nothing is pending (or ``max_batches``); the last result."""
    result = None
    for _ in range(max_batches):
        result = refresh(connection, batch_rows=batch_rows)
        if result is None or (result.pending_log_rows == 0 and result.pending_labels == 0):
            break
    return result


def build_spans(connection, *, today: date, max_spans: int = 1) -> list[tuple[date, int]]:
    """Build the cells of up to ``max_spans`` spans of days before ``today`` that have none or
    changed: single days from the rows (the most recent first), longer spans from their halves'
    cells; one transaction each. Returns the spans built, as (first day, days)."""
    done = []
    for _ in range(max_spans):
        try:
            with feed_transaction(connection) as cursor:
                cursor.execute("SELECT 1 FROM outcome_feed WHERE id = 1 FOR UPDATE")
                cursor.execute(RANGE_PLANNING)  # a day's rows through the timestamp index
                cursor.execute(f"SELECT min({_DAY}) FROM prediction_outcomes")
                (first_day,) = cursor.fetchone()
                cursor.execute("SELECT start, days FROM outcome_spans")
                todo = spans_to_build(set(cursor.fetchall()), first_day, today)
                if not todo:
                    break
                ((start, days),) = todo
                for table in ("outcome_cells", "outcome_bins"):
                    cursor.execute(f"DELETE FROM {table} WHERE start = %s AND days = %s", (start, days))
                if days == 1:
                    moment = datetime.combine(start, time(), tzinfo=timezone.utc)
                    parameters = range_parameters([(moment, moment + timedelta(days=1))])
                    for dim in CELL_DIMS:
                        cursor.execute(_BUILD_DAY.format(rows=rows_sql(dim, 1, TOTALS)),
                                       {**parameters, "start": start, "dim": dim})
                        cursor.execute(_BUILD_DAY_BINS.format(rows=rows_sql(dim, 1, BINS)),
                                       {**parameters, "start": start, "dim": dim})
                else:
                    half = days // 2
                    halves = {"start": start, "days": days, "second": start + timedelta(days=half), "half": half}
                    cursor.execute(_BUILD_SPAN, halves)
                    cursor.execute(_BUILD_SPAN_BINS, halves)
                cursor.execute("INSERT INTO outcome_spans (start, days) VALUES (%s, %s)", (start, days))
            done.append((start, days))
        except FeedBusy:
            break
    return done
