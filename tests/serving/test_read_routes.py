"""The read routes (/stats, /stats/timeseries, /performance) against a real service and PostgreSQL:
a statement timeout, a cap on concurrent queries, and 503 ``database_unavailable`` without
internal details when PostgreSQL is down (serving/read_queries.py). /drift runs its count through
the same helper, but the session's model has no drift reference, so /drift answers 404 before it
would query: it is not covered here."""

import threading
import time

import psycopg2
import pytest

from tests.serving.conftest import Service, wait_until
from tests.serving.test_reliability import USER

READ_ROUTES = ["/stats", "/stats/timeseries", "/performance"]
CAP, TIMEOUT_S = 2, 3


def read_backends(url: str) -> int:
    """Reads waiting on the test's lock: the read queries the service runs at this moment (the log
    writer's INSERT or partition DDL may wait on the lock too: not a read)."""
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                       "AND pid <> pg_backend_pid() AND query ~* '^\\s*(select|with)'")
        (count,) = cursor.fetchone()
    connection.close()
    return count


@pytest.mark.slow
def test_read_routes_are_capped_timed_out_and_answer_503_without_details_when_postgresql_is_down(
        champion_store, tmp_path):
    import pgserver

    database = pgserver.get_server(tmp_path / "pg")
    url = database.get_uri()
    service = Service(tmp_path, champion_store, url, READ_QUERIES_MAX=CAP, READ_STATEMENT_TIMEOUT_S=TIMEOUT_S,
                      DRIFT_QUERY_TIMEOUT_S=TIMEOUT_S, PERFORMANCE_REFRESH_S=0, DRIFT_REFRESH_S=0).start()
    try:
        assert service.http.post("/predict", USER)[0] == 200
        for path in READ_ROUTES:
            status, _, body = service.http.get(path)
            assert status == 200, (path, body)

        time.sleep(1.5)  # the log writer has written the rows of the requests above
        # A lock held on the log: every read waits on it, so queries pile up.
        locker = psycopg2.connect(url)
        with locker.cursor() as cursor:
            cursor.execute("LOCK TABLE predictions IN ACCESS EXCLUSIVE MODE")
        answers, peak = [], [0]
        threads = [threading.Thread(target=lambda: answers.append(service.http.get("/stats", timeout=30)))
                   for _ in range(6)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            peak[0] = max(peak[0], read_backends(url))
            time.sleep(0.1)
        took = time.monotonic() - started
        locker.rollback()
        locker.close()
        assert peak[0] == CAP  # never more than READ_QUERIES_MAX at once, and the cap was reached
        errors = sorted(body["error"] for status, _, body in answers)
        assert {status for status, _, _ in answers} == {503} and set(errors) <= {"query_timeout", "database_busy"}
        assert "query_timeout" in errors and "database_busy" in errors, errors
        assert all(head.get("Retry-After") for _, head, _ in answers)
        # Each request waits at most TIMEOUT_S for a place and TIMEOUT_S for its query (plus connecting).
        assert took < 2 * TIMEOUT_S + 8, took

        database.cleanup()  # PostgreSQL stops
        for path in READ_ROUTES:
            status, head, body = service.http.get(path)
            assert (status, body["error"]) == (503, "database_unavailable"), (path, body)
            assert set(body) == {"error", "message", "request_id"} and head.get("Retry-After"), (path, body)
            # Nothing of the driver's message (socket paths, host names, SQL) reaches the client.
            assert not any(word in body["message"].lower() for word in
                           ("socket", "postgres", "psycopg", "connection to server", "/tmp", "select")), body
        assert service.http.get("/health")[0] == 200  # the log spills meanwhile; predictions go on
        assert wait_until(lambda: service.http.post("/predict", USER)[0] == 200, 10)
    finally:
        service.stop()
        database.cleanup()
