"""Telling the database's failures (gone, locked, timed out) from a value it refuses."""

from __future__ import annotations

import sqlite3

from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError


def transient(exc: BaseException) -> bool:
    """Whether a failure is the database's, not the data's: retrying the same write later may succeed.

    Anything else (a value out of range, a NUL in text, a constraint) fails the same way every time, so
    the caller isolates the row that caused it instead of retrying it forever.
    """
    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError | TimeoutError):
        return True
    if isinstance(exc, sqlite3.OperationalError | sqlite3.InterfaceError):
        return True
    return bool(getattr(exc, "connection_invalidated", False))


def describe(exc: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line, bounded, for logs and stored error texts. For a database error,
    the driver's own error and the first line of its message (not the SQL statement)."""
    exc = getattr(exc, "orig", None) or exc
    lines = str(exc).strip().splitlines()
    text = " ".join(lines[0].split())[:limit] if lines else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
