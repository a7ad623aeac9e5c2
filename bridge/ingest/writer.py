"""A group-commit writer: request threads hand over raw events and wait until their batch is committed.

One thread per process owns the writes, so concurrent requests share one transaction (and one fsync)
instead of queueing on the database's write lock one by one. A request is answered 200 only after the
commit that holds its event has returned.
"""

from __future__ import annotations

import logging
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import Engine

from bridge.store.raw_events import insert_raw_events

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


class GroupCommitWriter:
    """Batches `RawRecord`s from many threads into few transactions."""

    def __init__(self, engine: Engine, *, max_batch: int = 256, on_commit: object | None = None) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[RawRecord, Future[bool]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)
        self._stopped = threading.Event()
        self._on_commit = on_commit
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

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            try:
                with self._engine.begin() as conn:
                    stored = insert_raw_events(conn, [record for record, _ in batch])
            except Exception as exc:  # the database is down or locked: every waiter gets the error
                log.error("ingest commit failed for %d events: %s", len(batch), type(exc).__name__)
                for _, future in batch:
                    future.set_exception(exc)
                continue
            for record, future in batch:
                future.set_result(record.dedup_key in stored)
            if callable(self._on_commit):
                self._on_commit()
