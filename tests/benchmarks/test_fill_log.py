"""The log filler writes rows the service's own queries read as they read real ones."""

from datetime import datetime, timedelta, timezone

import psycopg2

from benchmarks import fill_log
from serving.db.connection import connect
from serving.db.stats import prediction_stats


def test_a_small_fill_spreads_rows_over_the_days_with_their_partitions(fresh_database):
    result = fill_log.main(["--database-url", fresh_database, "--rows", "3000", "--days", "10",
                            "--versions", "2", "--shadow-share", "0.5"])
    with psycopg2.connect(fresh_database) as connection, connection.cursor() as cursor:
        cursor.execute("""SELECT role, count(*), count(DISTINCT tableoid), min(timestamp), max(timestamp),
                                 count(*) FILTER (WHERE status_code = 400), count(DISTINCT model_version)
                          FROM predictions GROUP BY role ORDER BY role""")
        (role, n, partitions, first, last, rejected, versions), (shadow_role, shadows, *_) = cursor.fetchall()
    connection.close()
    now = datetime.now(timezone.utc)
    assert (role, n, versions) == ("champion", 3000, 2)
    assert partitions >= 10 and first < now - timedelta(days=9.5) and last <= now
    assert 5 <= rejected <= 80  # about 1%
    assert shadow_role == "shadow" and 1200 < shadows < 1800 and result["rows"] == 3000 + shadows
    stats = prediction_stats(connect(fresh_database), datetime(1970, 1, 1, tzinfo=timezone.utc))
    assert stats["total_rows"] == 3000 and stats["total_requests"] == 60
