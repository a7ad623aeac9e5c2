"""The event processor: folds newly stored raw events into calls and queues CallEvents for connectors.

Runs in one thread of the daemon. Each pass takes the oldest unprocessed raw events and, in ONE
transaction, updates the call snapshots, inserts the outbox rows and marks the raw events processed, so
a crash at any point either redoes the whole pass or none of it. On PostgreSQL a transaction-scoped
advisory lock lets several daemons share the database with one processor active at a time.

A raw event that cannot be parsed or folded is quarantined (`raw_events.quarantined_at`, `error`) and
the pass goes on without it; when the pass's write fails, its calls are written one by one and only the
call whose own write fails is quarantined. A failure of the database itself quarantines nothing.
`callbridge events retry ID` puts a quarantined event back.

During an ingest burst (a full batch, and the HTTP workers committed more while it ran) the processor
caps its share of wall time (`backlog_duty`), so the workers keep the CPU for acknowledging events; the
backlog is folded as soon as the burst ends. When it keeps up, nothing waits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, Row, select, text, update

from bridge.commands.journal import DEFAULT_TIMEOUT, CommandJournal
from bridge.connector_api import CallEvent, Connector
from bridge.outbox.enqueue import enqueue
from bridge.pbx.events import TRACKED_EVENT_TYPES, CommandResultEvent, PbxEvent, SmsEvent
from bridge.pbx.port import EventDecoder, PbxParseError
from bridge.pbx.select import event_decoder
from bridge.processing.calls_store import SnapshotRows, load_emitted, save_rows, save_snapshot
from bridge.store.engine import reader
from bridge.store.errors import describe as _describe
from bridge.store.errors import transient
from bridge.store.raw_events import UNPROCESSED, pending, quarantine
from bridge.store.schema import calls, raw_events
from bridge.store.write_lock import write_transaction
from bridge.tracker import TrackResult, track

log = logging.getLogger(__name__)

PROCESSOR_LOCK_ID = 0x63616C6C  # "call": one active processor per database
STALE_CALL_HORIZON = 86400.0


@dataclass
class _CallWork:
    """The events of one call within a pass."""

    events: list[PbxEvent] = field(default_factory=list)
    emitted: frozenset[str] = frozenset()
    last_event_at: float | None = None
    new_events: list[CallEvent] = field(default_factory=list)
    result: object | None = None
    row_ids: list[int] = field(default_factory=list)  # this pass's raw events folded into the call
    fresh: list[PbxEvent] = field(default_factory=list)  # those events, for `on_new_events`


@dataclass
class _Unit:
    """What one call (or one command result) of a pass writes; written alone when a batch write fails."""

    row_ids: list[int]
    snapshot: SnapshotRows = field(default_factory=SnapshotRows)
    events: list[CallEvent] = field(default_factory=list)
    results: list[CommandResultEvent | SmsEvent] = field(default_factory=list)
    fresh: list[PbxEvent] = field(default_factory=list)


@dataclass
class _Plan:
    """A pass, built outside the write lock: the units to write and the raw events to quarantine."""

    units: list[_Unit] = field(default_factory=list)
    plain_ids: list[int] = field(default_factory=list)  # stored, nothing to fold (pings, kept paths)
    poisoned: dict[int, str] = field(default_factory=dict)  # raw event id -> why it cannot be folded


def _decode(decode: EventDecoder, path: str, payload: str) -> PbxEvent | None:
    """A stored event already folded once; one that no longer parses is left out."""
    try:
        return decode(path, payload)
    except PbxParseError as exc:
        log.error("stored /%s event no longer parses: %s", path, exc)
        return None


class EventProcessor:
    """Folds raw events into calls; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        connectors: Mapping[str, Connector],
        *,
        close_after: float = 120.0,
        batch_size: int = 200,
        clock: Callable[[], float] = time.time,
        on_call_events: Callable[[Sequence[CallEvent]], None] | None = None,
        backlog_duty: float = 0.5,
        command_timeout: float = DEFAULT_TIMEOUT,
        decode: EventDecoder | None = None,
        on_new_events: Callable[[Sequence[PbxEvent]], None] | None = None,
    ) -> None:
        """`decode`: how a stored notification becomes a typed event (the configured PBX's, by default);
        `on_new_events`: told the call events each pass folded, after they are written (routing)."""
        if not 0.0 < backlog_duty <= 1.0:
            raise ValueError("backlog_duty must be in (0, 1]")
        self._engine = engine
        self._decode = decode or event_decoder()
        self._reader = reader(engine)
        self._connectors = list(connectors.values())
        self._close_after = close_after
        self._batch_size = batch_size
        self._clock = clock
        self._on_call_events = on_call_events
        self._on_new_events = on_new_events
        self._wake = threading.Event()
        self._last_sweep = 0.0
        self._backlog_duty = backlog_duty
        self.journal = CommandJournal(engine, clock=clock, timeout=command_timeout)

    def wake(self) -> None:
        self._wake.set()

    def _locked(self, conn: Connection) -> bool:
        if conn.dialect.name != "postgresql":
            return True
        return bool(
            conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": PROCESSOR_LOCK_ID}).scalar()
        )

    def run_once(self) -> int:
        """Process one batch of raw events; returns how many were processed or quarantined.

        The tracker runs outside the write lock (a read-only pass), then one short write transaction
        stores the results. The write first marks the batch processed *only if it still is
        unprocessed*, so a second processor that raced us (another instance) changes nothing.

        An event that cannot be parsed or folded is quarantined and the rest go on; when the batch write
        fails, the calls are written one by one and only a call whose own write fails is quarantined.
        A database failure (`transient`) quarantines nothing: the pass fails and is retried.
        """
        now = self._clock()
        with self._reader.connect() as conn:
            rows = conn.execute(pending(self._batch_size)).all()
            if not rows:
                return 0
            plan = self._plan(conn, rows, now)
        try:
            written = self._write(plan.units, plan.plain_ids, plan.poisoned, now)
        except Exception as exc:
            if transient(exc):
                raise
            log.warning(
                "a pass of %d events failed to write (%s); writing it call by call", len(rows), _describe(exc)
            )
            written = self._write_one_by_one(plan, now)
        if written is None:
            return 0
        self._publish([event for unit in written for event in unit.events])
        self._tell_new([event for unit in written for event in unit.fresh])
        return len(rows)

    def _plan(self, conn: Connection, rows: Sequence[Row[Any]], now: float) -> _Plan:
        """Parse and fold a batch; an event that fails either is poisoned, the others go on."""
        plan = _Plan()
        work: dict[str, _CallWork] = {}
        for row in rows:
            try:
                event = self._decode(row.path, row.payload)
            except Exception as exc:
                plan.poisoned[row.id] = f"does not parse: {_describe(exc)}"
                continue
            if isinstance(event, TRACKED_EVENT_TYPES):
                try:
                    item = self._call(conn, work, event)
                except Exception as exc:
                    if transient(exc):
                        raise
                    plan.poisoned[row.id] = f"cannot be folded: {_describe(exc)}"
                    continue
                before = item.last_event_at
                item.events.append(event)
                item.last_event_at = max(before or 0.0, row.received_at)
                # Fold after every event, in arrival order, so a ringing that was current when it
                # arrived still pops up even if its answer came in the same pass.
                try:
                    self._track(item, now)
                except Exception as exc:  # the call goes on as if this event had not come
                    item.events.pop()
                    item.last_event_at = before
                    plan.poisoned[row.id] = f"cannot be folded: {_describe(exc)}"
                    continue
                item.row_ids.append(row.id)
                item.fresh.append(event)
            elif isinstance(event, CommandResultEvent | SmsEvent):
                plan.units.append(_Unit(row_ids=[row.id], results=[event]))
            else:
                plan.plain_ids.append(row.id)
        # Everything is built before the write lock is taken: the transaction only runs statements.
        for item in work.values():
            if item.result is None or not item.row_ids:
                continue
            unit = _Unit(row_ids=item.row_ids, events=item.new_events, fresh=item.fresh)
            try:
                unit.snapshot.add(item.result, last_event_at=item.last_event_at, now=now)
            except Exception as exc:
                plan.poisoned.update(dict.fromkeys(item.row_ids, f"cannot be stored: {_describe(exc)}"))
                continue
            plan.units.append(unit)
        for row_id, error in plan.poisoned.items():
            log.warning("raw event %d quarantined: %s", row_id, error)
        return plan

    def _write(
        self, units: Sequence[_Unit], plain_ids: Sequence[int], poisoned: Mapping[int, str], now: float
    ) -> Sequence[_Unit] | None:
        """Write units in one transaction, marking their raw events processed (and `plain_ids`) and
        quarantining `poisoned`; None when another processor took the events first."""
        ids = [row_id for unit in units for row_id in unit.row_ids] + list(plain_ids)
        with write_transaction(self._engine) as conn:
            if not self._locked(conn):
                return None
            if ids:
                claimed = conn.execute(
                    update(raw_events).where(raw_events.c.id.in_(ids), UNPROCESSED).values(processed_at=now)
                ).rowcount
                if claimed != len(ids):
                    conn.rollback()
                    return None
            for error in set(poisoned.values()):
                quarantine(conn, [row_id for row_id, why in poisoned.items() if why == error], error, now)
            snapshots = SnapshotRows()
            for unit in units:
                for result in unit.results:
                    self._record_command_result(conn, result)
                snapshots.extend(unit.snapshot)
            save_rows(conn, snapshots)
            for unit in units:
                if unit.events:
                    enqueue(conn, unit.events, self._connectors, now=now)
        return units

    def _write_one_by_one(self, plan: _Plan, now: float) -> list[_Unit] | None:
        """The fallback after a failed batch write: each unit alone, so one bad call cannot fail its
        neighbours; a unit whose own write fails is quarantined."""
        written: list[_Unit] = []
        poisoned = dict(plan.poisoned)
        for unit in plan.units:
            try:
                if self._write([unit], [], {}, now) is not None:
                    written.append(unit)
            except Exception as exc:
                if transient(exc):
                    raise
                error = f"cannot be stored: {_describe(exc)}"
                log.warning("raw events %s quarantined: %s", unit.row_ids, error)
                poisoned.update(dict.fromkeys(unit.row_ids, error))
        self._write([], plan.plain_ids, poisoned, now)
        return written

    def _call(self, conn: Connection, work: dict[str, _CallWork], event: PbxEvent) -> _CallWork:
        """The work of an event's call (its history is loaded once per pass)."""
        entry_id: str = event.entry_id  # type: ignore[union-attr]
        item = work.get(entry_id)
        if item is None:
            item = work[entry_id] = self._load_call(conn, entry_id)
        return item

    def _fold(self, item: _CallWork, now: float) -> TrackResult:
        """The tracker's verdict on the call with everything known so far."""
        return track(
            item.events,
            item.emitted,
            now=now,
            close_after=self._close_after,
            last_event_at=item.last_event_at,
        )

    def _track(self, item: _CallWork, now: float) -> None:
        """Fold the call with everything known so far and collect the CallEvents that are new."""
        result = self._fold(item, now)
        item.emitted = result.emitted
        item.new_events.extend(result.new_events)
        item.result = result

    def _load_call(self, conn: Connection, entry_id: str) -> _CallWork:
        emitted, _exists = load_emitted(conn, entry_id)
        stored = conn.execute(
            select(raw_events.c.path, raw_events.c.payload, raw_events.c.received_at)
            .where(raw_events.c.entry_id == entry_id, raw_events.c.processed_at.is_not(None))
            .order_by(raw_events.c.id)
        ).all()
        decoded = (_decode(self._decode, r.path, r.payload) for r in stored)
        events = [e for e in decoded if isinstance(e, TRACKED_EVENT_TYPES)]
        last = max((r.received_at for r in stored), default=None)
        return _CallWork(events=events, emitted=emitted, last_event_at=last)

    def _record_command_result(self, conn: Connection, event: CommandResultEvent | SmsEvent) -> None:
        """A command's asynchronous result, into the command journal (in the pass's transaction)."""
        code = event.result if isinstance(event, CommandResultEvent) else event.reason
        self.journal.result(conn, event.command_id, code)

    def sweep_stale_calls(self) -> int:
        """Re-fold open calls that saw no event for `close_after` seconds, so they close from their legs."""
        now = self._clock()
        updates = []
        with self._reader.connect() as conn:
            stale = (
                conn.execute(
                    select(calls.c.entry_id)
                    .where(
                        calls.c.closed.is_(False),
                        calls.c.last_event_at <= now - self._close_after,
                        # A call with a leg that never ended stays open; stop re-checking it after a day.
                        calls.c.last_event_at > now - STALE_CALL_HORIZON,
                    )
                    .limit(500)
                )
                .scalars()
                .all()
            )
            for entry_id in stale:
                item = self._load_call(conn, entry_id)
                if not item.events:
                    continue
                try:
                    result = self._fold(item, now)
                except Exception as exc:  # one call that cannot be folded must not stop the others
                    log.warning("stale call %s cannot be folded: %s", entry_id, _describe(exc))
                    continue
                if result.new_events or result.call.closed:
                    updates.append((item, result))
        if not updates:
            return 0
        emitted_events: list[CallEvent] = []
        with write_transaction(self._engine) as conn:
            if not self._locked(conn):
                return 0
            for item, result in updates:
                # Skip a call that changed since we read it; the next pass folds it again.
                seen = conn.execute(
                    select(calls.c.last_event_at).where(calls.c.entry_id == result.call.entry_id)
                ).scalar()
                if seen != item.last_event_at:
                    continue
                save_snapshot(conn, result, last_event_at=item.last_event_at, now=now)
                if result.new_events:
                    enqueue(conn, result.new_events, self._connectors, now=now)
                    emitted_events.extend(result.new_events)
        self._publish(emitted_events)
        return len(emitted_events)

    def _publish(self, events: Sequence[CallEvent]) -> None:
        if events and self._on_call_events is not None:
            try:
                self._on_call_events(events)
            except Exception:
                log.exception("call event listener failed")

    def _tell_new(self, events: Sequence[PbxEvent]) -> None:
        if events and self._on_new_events is not None:
            try:
                self._on_new_events(events)
            except Exception:
                log.exception("new event listener failed")

    def run_forever(
        self, stop: threading.Event, *, poll_interval: float = 0.02, sweep_every: float = 5.0
    ) -> None:
        """Process until `stop` is set; polls the store (other processes insert raw events too)."""
        while not stop.is_set():
            started = time.monotonic()
            self._wake.clear()  # set again by a worker's commit during the pass
            try:
                processed = self.run_once()
                if self._clock() - self._last_sweep >= sweep_every:
                    self._last_sweep = self._clock()
                    self.sweep_stale_calls()
                    self.journal.time_out()  # commands whose asynchronous result never came
            except Exception:
                log.exception("event processing pass failed; retrying")
                processed = 0
                stop.wait(1.0)
            if processed == 0:
                self._wake.wait(poll_interval)
            elif pause := self.backlog_pause(processed, time.monotonic() - started):
                stop.wait(pause)

    def backlog_pause(self, processed: int, busy: float) -> float:
        """Seconds to leave the CPU to the HTTP workers after a pass of `busy` seconds: none unless the
        pass was a full batch (more is waiting) and events were committed meanwhile (ingest is live)."""
        if processed < self._batch_size or not self._wake.is_set() or self._backlog_duty >= 1.0:
            return 0.0
        return busy * (1.0 - self._backlog_duty) / self._backlog_duty
