"""The service's PostgreSQL, for the pipelines that read the log or write labels.

Where it is, as for the service (serving/config.py): DATABASE_URL, else the embedded PostgreSQL in
PGDATA_DIR (.pgdata). A running service's embedded server is attached to, not restarted: pgserver
counts the processes using a data directory and only the last one to leave stops the server.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timezone

from serving.app import parse_since
from serving.config import Settings
from serving.core import RequestRejected
from serving.db.connection import connect, start_embedded
from serving.db.schema import migrate


@contextmanager
def log_database(settings: Settings | None = None, *, statement_timeout_ms: int = 0):
    """A connection to the service's database, brought to this release's layout; closed after."""
    settings = settings or Settings.from_env()
    server = None
    url = settings.database_url
    if not url:
        server, url = start_embedded(settings.pgdata_dir)
    connection = connect(url, statement_timeout_ms=statement_timeout_ms, application_name="revenue-pipelines")
    try:
        migrate(connection)
        yield connection
    finally:
        connection.close()
        del server  # pgserver stops an embedded server at exit, if this process was its last user


def parse_time(text: str, name: str, now: datetime | None = None) -> datetime | None:
    """``since``/``until`` as the service parses them (ISO 8601 or 30m, 6h, 7d back); empty: None."""
    if not text:
        return None
    try:
        return parse_since(text, now or datetime.now(timezone.utc), name)
    except RequestRejected as error:
        raise SystemExit(error.message) from None
