"""The dispatcher: delivers outbox rows to connectors, in order per call, with retries and rate limits.

How it works
------------
Every connector has its own *lane*: its token bucket, its reference store, its pause (after a vendor said
``Retry-After``) and a few worker threads. A lane pass claims the due rows of its connector, delivers them
and records the outcome. Lanes never wait for one another, so a slow or failing vendor holds up nobody
else; inside a lane a failing call is rescheduled with backoff and the other calls go on.

Eligibility. A row is eligible when it is ``pending``, due (``next_attempt_at <= now``), not claimed by a
live claim, and it is the oldest pending row of its (connector, entry_id). So events of one call reach a
connector in the order they were enqueued, and a claim batch holds at most one row per call, which is
what lets a lane deliver its batch in parallel.

Dead rows do not block. When a row is parked as dead, the later rows of the same call proceed: the dead
row is visible (``callbridge deliveries list --status dead``, the admin panel) and can be replayed, and
holding a whole call hostage to one rejected action would lose more than it protects. A replayed row is
delivered after the rows that already went out, so `handle` must cope with e.g. a late "ringing".

Claims. On PostgreSQL the claim is ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`` and
sets ``claimed_until``, so any number of dispatcher processes can share the table. On SQLite a single
dispatcher process is assumed (the embedded mode); the claim is the same single UPDATE statement, which
SQLite serialises. A claim lasts `claim_seconds`; a lane stops starting new deliveries halfway through it
and releases what it did not start. `claim_seconds` must exceed the worst handle time of a connector
(its HTTP timeouts), or a crashed-looking claim may be delivered twice (handle is idempotent anyway).

Outcomes. Success: ``done``, ``delivered_at``. `RetryableDeliveryError` (and any unexpected exception,
logged without its arguments): ``attempts + 1``, ``next_attempt_at = now + policy.next_delay(...)``
(full-jitter backoff, or the vendor's Retry-After when longer); when the budget is spent, ``dead``.
`PermanentDeliveryError` or an unreadable payload: ``dead`` at once. ``last_error`` is passed through
`redact` and bounded, whatever the connector put in its message. ``attempts`` counts every attempt made,
the successful one included.

Rate limits. ``getattr(connector, "rate_limit", None)`` is read from the connector *instance* when the
dispatcher is built and again before each claim (a connector rebuilt with settings saved in the panel may
bring a new limit), so a connector may set a per-config limit in ``__init__`` (the class attribute is the
default). One `TokenBucket` per connector; `handle` is never called faster than it allows. A
``Retry-After`` answer also pauses the whole lane for that long (at most ``policy.max_pause``), since a vendor
that says "slow down" means every call.

Ordering assumption. Rows of one call must be enqueued by transactions that do not interleave (the
tracker folds one call at a time); otherwise a later id may commit before an earlier one is visible.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import sqlalchemy as sa

from bridge.connector_api import (
    CallEvent,
    Connector,
    PermanentDeliveryError,
    RateLimit,
    RetryableDeliveryError,
)
from bridge.connector_api.http import redact
from bridge.outbox.refs import SqlRefStore
from bridge.outbox.retry import RetryPolicy
from bridge.ratelimit import TokenBucket
from bridge.store.engine import reader
from bridge.store.schema import outbox
from bridge.store.write_lock import write_transaction

__all__ = ["Dispatcher"]

log = logging.getLogger("callbridge.outbox")

_ERROR_LIMIT = 500
_ROW_COLUMNS = (
    outbox.c.id,
    outbox.c.connector,
    outbox.c.entry_id,
    outbox.c.event_type,
    outbox.c.payload,
    outbox.c.attempts,
)


@dataclass
class _Row:
    id: int
    connector: str
    entry_id: str
    event_type: str
    payload: str
    attempts: int


@dataclass
class _Lane:
    name: str
    connector: Connector
    refs: SqlRefStore
    bucket: TokenBucket | None
    rate_limit: RateLimit | None
    wake: threading.Event = field(default_factory=threading.Event)
    paused_until: float = 0.0
    busy: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    pool: ThreadPoolExecutor | None = None


class Dispatcher:
    """Delivers outbox rows to `connectors` (keyed by connector name). See the module docstring.

    `clock` gives Unix seconds (stored in the table); `sleep` is used to wait for rate-limit tokens.
    `concurrency` is the number of calls a lane delivers at once (rows of one call are always sequential).
    """

    def __init__(
        self,
        engine: sa.Engine,
        connectors: Mapping[str, Connector],
        *,
        policy: RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        batch_size: int = 100,
        claim_seconds: float = 60,
        concurrency: int = 4,
    ) -> None:
        if batch_size < 1 or claim_seconds <= 0 or concurrency < 1:
            raise ValueError("batch_size and concurrency must be >= 1, claim_seconds > 0")
        self.engine = engine
        self.policy = policy or RetryPolicy()
        self.batch_size = batch_size
        self.claim_seconds = float(claim_seconds)
        self.concurrency = concurrency
        self._clock = clock
        self._sleep = sleep
        self._postgres = engine.dialect.name == "postgresql"
        self._stopping = threading.Event()
        self._pass_pool: ThreadPoolExecutor | None = None
        # The bucket needs a steady clock; keep the injected one when tests give their own.
        self._bucket_clock = time.monotonic if clock is time.time else clock
        self._lanes: dict[str, _Lane] = {}
        for name, connector in connectors.items():
            if connector.name != name:
                raise ValueError(f"connector registered as {name!r} calls itself {connector.name!r}")
            limit = getattr(connector, "rate_limit", None)
            self._lanes[name] = _Lane(
                name=name,
                connector=connector,
                refs=SqlRefStore(engine, name, clock=clock),
                bucket=self._bucket(limit),
                rate_limit=limit,
            )

    def _bucket(self, limit: RateLimit | None) -> TokenBucket | None:
        if limit is None:
            return None
        return TokenBucket(limit.rate, limit.burst, clock=self._bucket_clock, sleep=self._sleep)

    def _follow_rate_limit(self, lane: _Lane) -> None:
        """A connector rebuilt with saved settings may throttle differently: follow its current limit."""
        limit = getattr(lane.connector, "rate_limit", None)
        if limit != lane.rate_limit:
            lane.bucket, lane.rate_limit = self._bucket(limit), limit

    # ------------------------------------------------------------------ public API

    def run_once(self) -> int:
        """One pass over every connector; returns the rows delivered or failed (retried or dead)."""
        lanes = list(self._lanes.values())
        if not lanes:
            return 0
        if len(lanes) == 1:
            return self._lane_pass(lanes[0])
        if self._pass_pool is None:
            self._pass_pool = ThreadPoolExecutor(len(lanes), thread_name_prefix="outbox-pass")
        return sum(self._pass_pool.map(self._lane_pass, lanes))

    def run_forever(self, stop: threading.Event, idle_sleep: float = 0.05) -> None:
        """Run every lane in its own thread until `stop` is set; `wake()` cuts an idle wait short."""
        self._stopping.clear()
        threads = [
            threading.Thread(
                target=self._lane_loop, args=(lane, stop, idle_sleep), name=f"outbox-{lane.name}", daemon=True
            )
            for lane in self._lanes.values()
        ]
        for thread in threads:
            thread.start()
        try:
            stop.wait()
        finally:
            self._stopping.set()
            self.wake()
            for thread in threads:
                thread.join()
            self._stopping.clear()

    def wake(self) -> None:
        """Tell idle lanes there may be new rows (the producer calls this after committing)."""
        for lane in self._lanes.values():
            lane.wake.set()

    def close(self) -> None:
        """Stop the worker threads (after the current deliveries finish)."""
        pools = [lane.pool for lane in self._lanes.values()] + [self._pass_pool]
        for pool in pools:
            if pool is not None:
                pool.shutdown(wait=True)
        for lane in self._lanes.values():
            lane.pool = None
        self._pass_pool = None

    def __enter__(self) -> Dispatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ lanes

    def _lane_loop(self, lane: _Lane, stop: threading.Event, idle_sleep: float) -> None:
        """Feed a lane's workers: claim due rows whenever the queue is empty and a worker is idle.

        Workers take rows one by one, so one hanging call holds one worker, not the lane; the rows behind
        it in the same call stay unclaimable (not the oldest pending) until it finishes.
        """
        work: queue.Queue[tuple[_Row, float] | None] = queue.Queue()
        workers = [
            threading.Thread(
                target=self._worker_loop,
                args=(lane, work),
                name=f"outbox-{lane.name}-{i}",
                daemon=True,
            )
            for i in range(self.concurrency)
        ]
        for worker in workers:
            worker.start()
        failures = 0
        try:
            while not stop.is_set():
                now = self._clock()
                with lane.lock:
                    busy = lane.busy
                if not work.empty() or busy >= self.concurrency or lane.paused_until > now:
                    lane.wake.wait(idle_sleep)
                    lane.wake.clear()
                    continue
                try:
                    self._follow_rate_limit(lane)
                    rows = self._claim(lane, now, self._claim_limit(lane))
                    failures = 0
                except Exception as exc:  # the database went away, most likely; keep trying
                    failures += 1
                    if failures == 1 or failures % 100 == 0:
                        log.error(
                            "outbox claim failed connector=%s failures=%d error=%s",
                            lane.name,
                            failures,
                            _describe(exc),
                        )
                    stop.wait(min(5.0, idle_sleep * 2**failures))
                    continue
                if not rows:
                    lane.wake.wait(idle_sleep)
                    lane.wake.clear()
                    continue
                start_before = now + self.claim_seconds / 2
                for row in rows:
                    work.put((row, start_before))
        finally:
            leftover = []
            while True:
                try:
                    item = work.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    leftover.append(item[0].id)
            if leftover:
                try:
                    self._release(leftover)
                except Exception as exc:
                    log.error("outbox release failed connector=%s error=%s", lane.name, _describe(exc))
            for _ in workers:
                work.put(None)
            for worker in workers:
                worker.join()

    def _worker_loop(self, lane: _Lane, work: queue.Queue[tuple[_Row, float] | None]) -> None:
        while True:
            item = work.get()
            if item is None:
                return
            row, start_before = item
            with lane.lock:
                lane.busy += 1
            try:
                if not self._deliver(lane, row, start_before):
                    self._release([row.id])
            except Exception as exc:  # recording the outcome failed; the claim expires and it is retried
                log.error(
                    "outbox bookkeeping failed connector=%s entry_id=%s id=%d error=%s",
                    lane.name,
                    row.entry_id,
                    row.id,
                    _describe(exc),
                )
            finally:
                with lane.lock:
                    lane.busy -= 1
                lane.wake.set()

    def _lane_pass(self, lane: _Lane) -> int:
        now = self._clock()
        if lane.paused_until > now or self._stopping.is_set():
            return 0
        self._follow_rate_limit(lane)
        rows = self._claim(lane, now, self._claim_limit(lane))
        if not rows:
            return 0
        start_before = now + self.claim_seconds / 2
        if self.concurrency == 1 or len(rows) == 1:
            outcomes = [self._deliver(lane, row, start_before) for row in rows]
        else:
            if lane.pool is None:
                lane.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"outbox-{lane.name}")
            outcomes = list(lane.pool.map(lambda row: self._deliver(lane, row, start_before), rows))
        skipped = [row.id for row, attempted in zip(rows, outcomes, strict=True) if not attempted]
        if skipped:
            self._release(skipped)
        return sum(outcomes)

    def _claim_limit(self, lane: _Lane) -> int:
        if lane.rate_limit is None:
            return self.batch_size
        # No point claiming more than the bucket lets us start before the claim runs out.
        affordable = lane.rate_limit.burst + lane.rate_limit.rate * self.claim_seconds / 2
        return max(1, min(self.batch_size, int(affordable)))

    # ------------------------------------------------------------------ database

    def _anything_due(self, lane: _Lane, now: float) -> bool:
        """A cheap read before claiming, so an idle dispatcher takes no write lock (SQLite)."""
        query = (
            sa.select(outbox.c.id)
            .where(
                outbox.c.connector == lane.name,
                outbox.c.status == "pending",
                outbox.c.next_attempt_at <= now,
            )
            .limit(1)
        )
        with reader(self.engine).connect() as conn:
            return conn.execute(query).first() is not None

    def _claim(self, lane: _Lane, now: float, limit: int) -> list[_Row]:
        if not self._anything_due(lane, now):
            return []
        cand = outbox.alias("cand")
        older = outbox.alias("older")
        eligible = (
            sa.select(cand.c.id)
            .where(
                cand.c.connector == lane.name,
                cand.c.status == "pending",
                cand.c.next_attempt_at <= now,
                sa.or_(cand.c.claimed_until.is_(None), cand.c.claimed_until <= now),
                ~sa.exists().where(
                    older.c.connector == cand.c.connector,
                    older.c.entry_id == cand.c.entry_id,
                    older.c.status == "pending",
                    older.c.id < cand.c.id,
                ),
            )
            .order_by(cand.c.id)
            .limit(limit)
        )
        if self._postgres:
            eligible = eligible.with_for_update(skip_locked=True, of=cand)
        stmt = (
            sa.update(outbox)
            .where(outbox.c.id.in_(eligible))
            .values(claimed_until=now + self.claim_seconds)
            .returning(*_ROW_COLUMNS)
        )
        with write_transaction(self.engine) as conn:
            result = conn.execute(stmt).all()
        rows = [_Row(*r) for r in result]
        rows.sort(key=lambda r: r.id)
        return rows

    def _release(self, ids: list[int]) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                sa.update(outbox)
                .where(outbox.c.id.in_(ids), outbox.c.status == "pending")
                .values(claimed_until=None)
            )

    def _finish(self, row_id: int, **values: object) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                sa.update(outbox)
                .where(outbox.c.id == row_id, outbox.c.status == "pending")
                .values(claimed_until=None, **values)
            )

    # ------------------------------------------------------------------ one delivery

    def _deliver(self, lane: _Lane, row: _Row, start_before: float) -> bool:
        """Deliver one claimed row; False when it was not attempted (stopping, paused, out of time)."""
        if not self._wait_turn(lane, start_before):
            return False
        try:
            event = CallEvent.from_dict(json.loads(row.payload))
        except Exception as exc:
            self._dead(lane, row, row.attempts, f"unreadable payload: {type(exc).__name__}")
            return True
        attempts = row.attempts + 1
        try:
            lane.connector.handle(event, lane.refs)
        except PermanentDeliveryError as exc:
            self._dead(lane, row, attempts, str(exc))
        except RetryableDeliveryError as exc:
            self._failed(lane, row, attempts, str(exc), exc.retry_after)
        except Exception as exc:
            log.warning(
                "connector raised unexpectedly connector=%s entry_id=%s id=%d error=%s\n%s",
                lane.name,
                row.entry_id,
                row.id,
                _describe(exc),
                "".join(traceback.format_tb(exc.__traceback__)).rstrip(),
            )
            self._failed(lane, row, attempts, f"unexpected {_describe(exc)}", None)
        else:
            self._finish(row.id, status="done", attempts=attempts, delivered_at=self._clock())
            log.debug(
                "delivered connector=%s entry_id=%s id=%d type=%s attempts=%d",
                lane.name,
                row.entry_id,
                row.id,
                row.event_type,
                attempts,
            )
        return True

    def _wait_turn(self, lane: _Lane, start_before: float) -> bool:
        while True:
            if self._stopping.is_set():
                return False
            now = self._clock()
            if now >= start_before or lane.paused_until > now:
                return False
            if lane.bucket is None:
                return True
            wait = lane.bucket.try_acquire()
            if wait == 0.0:
                # A pause may have started while we waited for the token.
                return lane.paused_until <= self._clock()
            if now + wait >= start_before:
                return False
            # At least 1 ms: float dust in the bucket must not turn into a busy loop on a coarse clock.
            self._sleep(min(max(wait, 0.001), 1.0))

    def _failed(self, lane: _Lane, row: _Row, attempts: int, message: str, retry_after: float | None) -> None:
        if self.policy.exhausted(attempts):
            self._dead(lane, row, attempts, f"gave up after {attempts} attempts: {message}")
            return
        now = self._clock()
        delay = self.policy.next_delay(attempts, retry_after)
        error = redact(message, _ERROR_LIMIT)
        if retry_after is not None and retry_after > 0:
            with lane.lock:
                lane.paused_until = max(lane.paused_until, now + min(retry_after, self.policy.max_pause))
        self._finish(row.id, attempts=attempts, next_attempt_at=now + delay, last_error=error)
        log.info(
            "delivery failed, retrying connector=%s entry_id=%s id=%d type=%s attempts=%d in=%.1fs error=%s",
            lane.name,
            row.entry_id,
            row.id,
            row.event_type,
            attempts,
            delay,
            error,
        )

    def _dead(self, lane: _Lane, row: _Row, attempts: int, message: str) -> None:
        error = redact(message, _ERROR_LIMIT)
        self._finish(row.id, status="dead", attempts=attempts, last_error=error)
        log.warning(
            "delivery dead connector=%s entry_id=%s id=%d type=%s attempts=%d error=%s",
            lane.name,
            row.entry_id,
            row.id,
            row.event_type,
            attempts,
            error,
        )


def _describe(exc: BaseException) -> str:
    """``Type: message`` with the message redacted (unexpected exceptions may quote URLs or tokens)."""
    text = redact(str(exc), 200)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
