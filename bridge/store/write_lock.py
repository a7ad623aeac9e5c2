"""A cross-process write lock for SQLite, so writers queue on a kernel lock instead of SQLite's busy loop.

SQLite's busy handler makes a waiting writer sleep 1, 2, 5 ... 100 ms and try again; with several
processes committing often (HTTP workers, the processor, the dispatcher) that turns into 100 ms+ tail
latencies. An advisory `flock` on a file beside the database wakes the next writer as soon as the lock is
free. Only the hot writers take it; anyone else still falls back on the busy handler, so it is an
optimisation, never a correctness requirement. On PostgreSQL it does nothing.

Checkpoints run outside the lock. SQLite copies the WAL back into the database file inside the COMMIT
that pushes the WAL past 1,000 pages; under the lock that made every waiting ingest writer wait for the
copy too. Background writers (`write_transaction`: the processor, the dispatcher, history jobs) turn
that off and run a PASSIVE checkpoint after they release the lock instead; ingest writers keep committing
meanwhile.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine

CHECKPOINT_EVERY = 1.0  # seconds between WAL checkpoints by background writers, outside the lock
SQLITE_AUTOCHECKPOINT = 1000  # SQLite's default, restored on pooled connections
INGEST_AUTOCHECKPOINT = 10000  # pages (~40 MB): only if no background writer checkpoints
_last_checkpoint: dict[str, float] = {}


def sqlite_path(engine: Engine) -> str | None:
    """The database file of a SQLite engine, or None (PostgreSQL, in-memory SQLite)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    return database if database and database != ":memory:" else None


@contextlib.contextmanager
def _open(path: str, mode: int) -> Iterator[int]:
    """A fresh descriptor of `path`, locked with `mode`; closing it releases the lock.

    A fresh descriptor per acquisition: `flock` excludes open file descriptions, so threads of one
    process exclude each other too.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, mode)
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def write_lock(path: str | None) -> Iterator[None]:
    """Hold the write lock of the SQLite file at `path` (no-op for None)."""
    if path is None:
        yield
        return
    with _open(path + ".write-lock", fcntl.LOCK_EX):
        yield


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """`engine.begin()` under the SQLite write lock, as a background writer.

    The connection is checked out of the pool before the lock is taken, and the WAL checkpoint runs
    after it is released (see `_checkpoint_outside_the_lock`), so the lock is held only for the
    transaction itself.
    """
    path = sqlite_path(engine)
    with engine.connect() as conn:
        if path is None:
            with conn.begin():
                yield conn
            return
        with (
            _checkpoint_outside_the_lock(conn.connection.dbapi_connection, path),
            write_lock(path),
            conn.begin(),
        ):
            yield conn


@contextlib.contextmanager
def _checkpoint_outside_the_lock(dbapi_connection: Any, path: str) -> Iterator[None]:
    """Run the block without SQLite's automatic checkpoint, then checkpoint if one is due.

    SQLite checkpoints inside the COMMIT that pushes the WAL past 1,000 pages, copying the WAL into the
    database file. Under the write lock that stalls every ingest writer for as long as the copy takes
    (~150 ms for the 20 MB a burst leaves behind). A PASSIVE checkpoint after the lock is released
    does the same work while ingest writers keep committing. The ingest writer's own connection keeps
    an automatic checkpoint at a much larger size (`INGEST_AUTOCHECKPOINT`) as a safety net.
    """
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")
    try:
        yield
        now = time.monotonic()
        if now - _last_checkpoint.get(path, 0.0) >= CHECKPOINT_EVERY:
            _last_checkpoint[path] = now
            with contextlib.suppress(sqlite3.Error):  # the transaction is committed; the next one retries
                dbapi_connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        with contextlib.suppress(sqlite3.Error):  # never hide the block's own error
            dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={SQLITE_AUTOCHECKPOINT}")
