"""Connections to PostgreSQL: the embedded server, and connections that never wait forever.

Every connection has a connect timeout, a statement timeout, and TCP keepalives with a
user timeout, so a half-open connection (a database host that vanished without closing
its sockets) is noticed in seconds instead of blocking its caller for many minutes.
Over a Unix socket (the embedded server) the TCP settings do not apply and are ignored.
"""

from __future__ import annotations

from pathlib import Path

import psycopg2

CONNECT_TIMEOUT_S = 3
# The log writer's statements write at most a few thousand rows; a statement running this long
# means a lock or a sick server, and the rows are better kept in the spill file meanwhile.
WRITE_STATEMENT_TIMEOUT_MS = 30_000
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
               "tcp_user_timeout": 30_000}


def start_embedded(pgdata_dir: Path) -> tuple[object, str]:
    """Start (or reuse) the pgserver PostgreSQL in ``pgdata_dir``; (server, URL).

    The server stops when the process that started it exits.
    """
    import pgserver

    pgdata_dir.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata_dir.resolve())
    return server, server.get_uri()


def connect(url: str, *, timeout_s: int = CONNECT_TIMEOUT_S,
            statement_timeout_ms: int = WRITE_STATEMENT_TIMEOUT_MS, application_name: str = "revenue-service"):
    """A connection (autocommit off) whose every statement is cancelled after ``statement_timeout_ms``."""
    # UTF-8 whatever the database's or PGCLIENTENCODING's: COPY sends the log's text as UTF-8 bytes.
    connection = psycopg2.connect(url, connect_timeout=timeout_s, application_name=application_name,
                                  options=f"-c statement_timeout={int(statement_timeout_ms)}",
                                  client_encoding="UTF8", **_KEEPALIVES)
    connection.autocommit = False
    return connection
