"""A group-commit writer: request threads hand over raw events and wait until their batch is committed.

One thread per process owns the writes, so concurrent requests share one transaction (and one fsync)
instead of queueing on the database's write lock one by one. A request is answered 200 only after the
commit that holds its event has returned: a thread waits for it (`write`), a coroutine hands over a
callback (`submit_with`) that the writer thread calls after the commit.

When a group fails for a reason other than the database itself (a value one event carries that the
database refuses), its events are written one by one: the good ones are stored and acknowledged, and only
the bad one fails, with `EventRefused`.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial

from sqlalchemy import Engine

from bridge.store.errors import describe, transient
from bridge.store.raw_events import RawRecord, insert_raw_events, insert_raw_events_sqlite
from bridge.store.write_lock import INGEST_AUTOCHECKPOINT, sqlite_path, write_lock
from bridge.wakeup import sender_from_env

log = logging.getLogger(__name__)


class WriterStopped(RuntimeError):
    """The writer is shutting down and takes no more events."""


class EventRefused(ValueError):
    """The database refuses a value of this event (not a database outage): resending cannot help."""


Done = Callable[[bool | None, BaseException | None], None]
"""Called once per record on the writer thread: (True if stored / False if a duplicate, None) after its
commit, or (None, the error)."""


def _resolve(future: Future[bool], stored: bool | None, error: BaseException | None) -> None:
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(bool(stored))


class GroupCommitWriter:
    """Batches `RawRecord`s from many threads into few transactions."""

    def __init__(self, engine: Engine, *, max_batch: int = 256, on_commit: object | None = None) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[RawRecord, Done] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._stopped = threading.Event()
        # By default, tell the parent's processor about each commit (see bridge.wakeup).
        self._on_commit = on_commit if on_commit is not None else sender_from_env()
        self._sqlite_path = sqlite_path(engine)
        self._sqlite: sqlite3.Connection | None = None  # owned by the writer thread
        self._thread.start()

    def submit(self, record: RawRecord) -> Future[bool]:
        """Queue a record; the future resolves to True (stored) or False (a duplicate) after commit."""
        future: Future[bool] = Future()
        self.submit_with(record, partial(_resolve, future))
        return future

    def submit_with(self, record: RawRecord, done: Done) -> None:
        """Queue a record without waiting: `done` is called on the writer thread after its commit (it
        must be quick and must not block, e.g. `loop.call_soon_threadsafe`)."""
        if self._stopped.is_set():
            raise WriterStopped("the ingest writer is stopped")
        self._queue.put((record, done))

    def write(self, record: RawRecord, timeout: float = 10.0) -> bool:
        """Submit and wait for the commit; raises on a database error or timeout."""
        return self.submit(record).result(timeout=timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _take_batch(self) -> list[tuple[RawRecord, Done]] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self._queue.put(None)
                break
            batch.append(item)
        return batch

    def _commit(self, records: list[RawRecord]) -> set[str]:
        """Store a batch in one transaction; returns the dedup keys that were new."""
        if self._sqlite_path is None:
            with self._engine.begin() as conn:
                return insert_raw_events(conn, records)
        if self._sqlite is None:
            self._sqlite = sqlite3.connect(self._sqlite_path, isolation_level=None, timeout=10)
            # The processor checkpoints the WAL outside the write lock; this one only if it does not.
            pragmas = ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000")
            for pragma in (*pragmas, f"wal_autocheckpoint={INGEST_AUTOCHECKPOINT}"):
                self._sqlite.execute(f"PRAGMA {pragma}")
        with write_lock(self._sqlite_path):
            return insert_raw_events_sqlite(self._sqlite, records)

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                stored = self._commit([record for record, _ in batch])
            except Exception as exc:
                if transient(exc):  # the database is down or locked: every waiter gets the error
                    log.error("ingest commit failed for %d events: %s", len(batch), type(exc).__name__)
                    for _, done in batch:
                        _call(done, None, exc)
                else:
                    self._commit_one_by_one(batch, exc)
                continue
            self._settle(batch, stored)

    def _settle(self, batch: list[tuple[RawRecord, Done]], stored: set[str]) -> None:
        for record, done in batch:
            _call(done, record.dedup_key in stored, None)
        if callable(self._on_commit):
            self._on_commit()

    def _commit_one_by_one(self, batch: list[tuple[RawRecord, Done]], error: Exception) -> None:
        """After a group failed on a value rather than the database: each event in its own transaction,
        so the good ones are stored and only the bad one is refused."""
        if len(batch) == 1:
            self._refuse(batch[0], error)
            return
        log.warning(
            "ingest commit of %d events failed (%s); storing them one by one", len(batch), describe(error)
        )
        for item in batch:
            try:
                stored = self._commit([item[0]])
            except Exception as exc:
                if transient(exc):
                    _call(item[1], None, exc)
                else:
                    self._refuse(item, exc)
                continue
            self._settle([item], stored)

    @staticmethod
    def _refuse(item: tuple[RawRecord, Done], error: Exception) -> None:
        record, done = item
        log.warning("ingest refused a /%s event: %s", record.path, describe(error))
        _call(done, None, EventRefused(describe(error, 160)))


def _call(done: Done, stored: bool | None, error: BaseException | None) -> None:
    """Tell a waiter its outcome; a waiter that cannot be told (its loop closed) costs nobody else."""
    try:
        done(stored, error)
    except Exception as exc:  # e.g. RuntimeError: its event loop closed at shutdown
        log.warning("an ingest waiter could not be told its outcome: %s", type(exc).__name__)
