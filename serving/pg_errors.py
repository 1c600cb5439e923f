"""Whose fault a PostgreSQL error is, from its SQLSTATE: the connection's, the database's or a row's.

The writer acts on the answer: a connection error spills and reconnects; a
whole-database error (no right to insert, a read-only database, a missing
table or column, a full disk) spills too and raises an alarm, because no row
would get in; only a row's own fault (classes 22 data, 23 constraint, 54
limits) is worth retrying row by row, and in the end setting that row aside.
An unknown class counts as the database's: keeping rows costs disk, setting
them aside loses them. https://www.postgresql.org/docs/16/errcodes-appendix.html
"""

from __future__ import annotations

import psycopg2

CONNECTION = "connection"
DATABASE = "database"
ROW = "row"

_ROW_CLASSES = {"22", "23", "54"}
# Transient states of a sound database: retried on a new connection, no alarm.
_TRANSIENT = {
    "08",                  # connection exception
    "57P01", "57P02", "57P03",  # admin or crash shutdown, cannot connect now
    "57014",               # query canceled: a statement timeout
    "53300",               # too many connections
    "40001", "40P01",      # serialization failure, deadlock
}


def classify(error: BaseException) -> str:
    """CONNECTION, DATABASE or ROW for an exception raised while connecting or writing."""
    if not isinstance(error, psycopg2.Error):
        return DATABASE  # e.g. a schema check of ours that refused the table
    code = error.pgcode or ""
    if not code:  # the driver's own: the server went away, a socket error, a closed connection
        return CONNECTION if isinstance(error, (psycopg2.OperationalError, psycopg2.InterfaceError)) else DATABASE
    if code in _TRANSIENT or code[:2] in _TRANSIENT:
        return CONNECTION
    if code[:2] in _ROW_CLASSES:
        return ROW
    return DATABASE


def describe(error: BaseException) -> str:
    """One line for logs and /health: the SQLSTATE and the message's first line."""
    code = getattr(error, "pgcode", None)
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f"{code}: {text}" if code else f"{type(error).__name__}: {text}"
