"""A cross-process write lock for SQLite, so writers queue on a kernel lock instead of SQLite's busy loop.

SQLite's busy handler makes a waiting writer sleep 1, 2, 5 ... 100 ms and try again; with several
processes committing often (HTTP workers, the processor, the dispatcher) that turns into 100 ms+ tail
latencies. An advisory `flock` on a file beside the database wakes the next writer as soon as the lock is
free. Only the hot writers take it; anyone else still falls back on the busy handler, so it is an
optimisation, never a correctness requirement. On PostgreSQL it does nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

from sqlalchemy import Engine


def sqlite_path(engine: Engine) -> str | None:
    """The database file of a SQLite engine, or None (PostgreSQL, in-memory SQLite)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    return database if database and database != ":memory:" else None


@contextlib.contextmanager
def write_lock(path: str | None) -> Iterator[None]:
    """Hold the write lock of the SQLite file at `path` (no-op for None).

    A fresh descriptor per acquisition: `flock` excludes open file descriptions, so threads of one
    process exclude each other too.
    """
    if path is None:
        yield
        return
    fd = os.open(path + ".write-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[object]:
    """`engine.begin()` under the SQLite write lock."""
    with write_lock(sqlite_path(engine)), engine.begin() as conn:
        yield conn
