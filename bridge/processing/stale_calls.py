"""Close calls whose final events never came: the stale-call sweeper.

A call that saw no event for `tracker.max_call_seconds` (callbridge's clock, `calls.last_event_at`) will
not hear from the PBX again. The sweeper does not touch the call itself: it stores a synthetic
`callbridge/timeout` event in `raw_events`, and the processor folds it through the same tracker and the
same transaction as every other event. The tracker then closes the call (incomplete when the events do
not tell its end) and emits `call.ended` once. The event's dedup key is one per call, so restarts and
several instances sweeping the same database store it once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, select

from bridge.pbx.timeout import TIMEOUT_PATH, timeout_dedup_key, timeout_payload
from bridge.store.engine import reader
from bridge.store.raw_events import RawRecord, insert_raw_events
from bridge.store.schema import calls
from bridge.store.write_lock import write_transaction

log = logging.getLogger(__name__)

BATCH = 500  # calls closed per sweep; the next sweep takes the rest
MAX_SWEEP_INTERVAL = 60.0
MIN_SWEEP_INTERVAL = 0.25


class StaleCallSweeper:
    """Stores a timeout event for every open call silent for longer than `max_call_seconds`."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_call_seconds: float,
        clock: Callable[[], float] = time.time,
        on_written: Callable[[], None] | None = None,
        interval: float | None = None,
    ) -> None:
        if max_call_seconds <= 0:
            raise ValueError("max_call_seconds must be positive")
        self._engine = engine
        self._reader = reader(engine)
        self._max = max_call_seconds
        self._clock = clock
        self._on_written = on_written
        default = min(MAX_SWEEP_INTERVAL, max(MIN_SWEEP_INTERVAL, max_call_seconds / 4))
        self.interval = default if interval is None else interval

    def stale_calls(self, now: float) -> list[str]:
        """Open calls whose newest event was received `max_call_seconds` ago or earlier, oldest first."""
        query = (
            select(calls.c.entry_id)
            .where(calls.c.closed.is_(False), calls.c.last_event_at <= now - self._max)
            .order_by(calls.c.last_event_at)
            .limit(BATCH)
        )
        with self._reader.connect() as conn:
            return list(conn.execute(query).scalars())

    def run_once(self) -> int:
        """Store the timeout events due now; returns how many were new."""
        now = self._clock()
        stale = self.stale_calls(now)
        if not stale:
            return 0
        records = [
            RawRecord(
                TIMEOUT_PATH, timeout_dedup_key(entry_id), entry_id, timeout_payload(entry_id, now), now
            )
            for entry_id in stale
        ]
        with write_transaction(self._engine) as conn:
            fresh = insert_raw_events(conn, records)
        if fresh:
            log.info("closing %d call(s) silent for %.0f s as incomplete", len(fresh), self._max)
            if self._on_written is not None:
                self._on_written()
        return len(fresh)

    def run_forever(self, stop: threading.Event) -> None:
        """Sweep every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("stale-call sweep failed; retrying")
            stop.wait(self.interval)
