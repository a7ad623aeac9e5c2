"""A group-commit writer: request threads hand over raw events and wait until their batch is committed.

One thread per process owns the writes, so concurrent requests share one transaction (and one fsync)
instead of queueing on the database's write lock one by one. A request is answered 200 only after the
commit that holds its event has returned.

When a group fails for a reason other than the database itself (a value one event carries that the
database refuses), its events are written one by one: the good ones are stored and acknowledged, and only
the bad one fails, with `EventRefused`.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import Engine

from bridge.processing.wakeup import sender_from_env
from bridge.store.errors import describe, transient
from bridge.store.raw_events import insert_raw_events, insert_raw_events_sqlite
from bridge.store.write_lock import INGEST_AUTOCHECKPOINT, sqlite_path, write_lock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawRecord:
    """A signed, parsed notification ready to be stored."""

    path: str
    dedup_key: str
    entry_id: str | None
    payload: str
    received_at: float


class WriterStopped(RuntimeError):
    """The writer is shutting down and takes no more events."""


class EventRefused(ValueError):
    """The database refuses a value of this event (not a database outage): resending cannot help."""


class GroupCommitWriter:
    """Batches `RawRecord`s from many threads into few transactions."""

    def __init__(self, engine: Engine, *, max_batch: int = 256, on_commit: object | None = None) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[RawRecord, Future[bool]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._stopped = threading.Event()
        # By default, tell the parent's processor about each commit (see bridge.processing.wakeup).
        self._on_commit = on_commit if on_commit is not None else sender_from_env()
        self._sqlite_path = sqlite_path(engine)
        self._sqlite: sqlite3.Connection | None = None  # owned by the writer thread
        self._thread.start()

    def submit(self, record: RawRecord) -> Future[bool]:
        """Queue a record; the future resolves to True (stored) or False (a duplicate) after commit."""
        if self._stopped.is_set():
            raise WriterStopped("the ingest writer is stopped")
        future: Future[bool] = Future()
        self._queue.put((record, future))
        return future

    def write(self, record: RawRecord, timeout: float = 10.0) -> bool:
        """Submit and wait for the commit; raises on a database error or timeout."""
        return self.submit(record).result(timeout=timeout)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopped.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _take_batch(self) -> list[tuple[RawRecord, Future[bool]]] | None:
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
                    for _, future in batch:
                        future.set_exception(exc)
                else:
                    self._commit_one_by_one(batch, exc)
                continue
            self._settle(batch, stored)

    def _settle(self, batch: list[tuple[RawRecord, Future[bool]]], stored: set[str]) -> None:
        for record, future in batch:
            future.set_result(record.dedup_key in stored)
        if callable(self._on_commit):
            self._on_commit()

    def _commit_one_by_one(self, batch: list[tuple[RawRecord, Future[bool]]], error: Exception) -> None:
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
                    item[1].set_exception(exc)
                else:
                    self._refuse(item, exc)
                continue
            self._settle([item], stored)

    @staticmethod
    def _refuse(item: tuple[RawRecord, Future[bool]], error: Exception) -> None:
        record, future = item
        log.warning("ingest refused a /%s event: %s", record.path, describe(error))
        future.set_exception(EventRefused(describe(error, 160)))
