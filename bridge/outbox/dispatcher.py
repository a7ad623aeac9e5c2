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

Urgent rows first. Rows that pop or hide a caller card (`URGENT_TYPES`: ringing, answered, transferred)
are only worth anything while the phones ring, so a lane claims its eligible *fresh* urgent rows ahead of
its older backlog (call logs, records): first in every claim, and, while claimed backlog rows still wait
for a worker or for their rate-limited turn, in a small extra claim whenever the producer wakes it (at
least every `urgent_poll` seconds), which puts them at the head of the lane's queue; a worker whose turn
comes with a backlog row hands the turn to a waiting urgent row. A row stops being urgent when it was
queued more than `urgent_max_age` seconds ago or its call's ``call.ended`` row is already queued (the
card is gone by then): it waits its turn like any other row, and the connector still decides what to do
with a late event (amoCRM drops popups older than ``popup_max_age_seconds``). The per-call rule above
still holds, so an urgent row never overtakes an earlier row of its own call.
Fairness: a claim keeps a quarter of its rows (at least one) for the oldest rows, and when both kinds
wait for a worker, every `oldest_every`-th start goes to the oldest one, so a stream of rings slows the
backlog down but never stops it.

Dead rows do not block. When a row is parked as dead, the later rows of the same call proceed: the dead
row is visible (``callbridge deliveries list --status dead``, the admin panel) and can be replayed, and
holding a whole call hostage to one rejected action would lose more than it protects. A replayed row is
delivered after the rows that already went out, so `handle` must cope with e.g. a late "ringing".

Claims. The claim SQL (eligibility, claiming, releasing, recording outcomes) lives in `bridge.outbox.claims`;
this module decides when a lane claims and how many rows. On PostgreSQL the claim is
``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`` and sets ``claimed_until``, so any number of
dispatcher processes can share the table. On SQLite a single dispatcher process is assumed (the embedded
mode); the claim is the same UPDATE statements (urgent rows, then the oldest) in one transaction, which
SQLite serialises. A claim lasts `claim_seconds`; a lane stops
starting new deliveries halfway through it and releases what it did not start. `claim_seconds` must
exceed the worst handle time of a connector (its HTTP timeouts), or a crashed-looking claim may be
delivered twice (handle is idempotent anyway). A claim of a process killed mid-delivery lapses after
`claim_seconds` on PostgreSQL; on SQLite (one dispatcher) it is released when the next dispatcher starts.

Outcomes. Success: ``done``, ``delivered_at``. `RetryableDeliveryError` (and any unexpected exception,
even SystemExit from a connector, logged without its arguments): ``attempts + 1``,
``next_attempt_at = now + policy.next_delay(...)`` (full-jitter backoff, or the vendor's Retry-After when
longer); when the budget is spent, ``dead``.
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
import re
import threading
import time
import traceback
from collections import deque
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
from bridge.connector_api.events import CALL_ANSWERED, CALL_RINGING, CALL_TRANSFERRED
from bridge.connector_api.http import redact
from bridge.connector_api.protocols import Dormant
from bridge.outbox import claims
from bridge.outbox.claims import Claims, Urgency
from bridge.outbox.claims import Row as _Row
from bridge.outbox.refs import SqlRefStore
from bridge.outbox.retry import RetryPolicy
from bridge.ratelimit import TokenBucket

__all__ = ["URGENT_TYPES", "Dispatcher"]

log = logging.getLogger("callbridge.outbox")

_ERROR_LIMIT = 500
# The caller-card events: claimed ahead of the backlog while fresh (see the module docstring).
URGENT_TYPES: frozenset[str] = frozenset({CALL_RINGING, CALL_ANSWERED, CALL_TRANSFERRED})


@dataclass
class _Lane:
    name: str
    connector: Connector
    refs: SqlRefStore
    claims: Claims
    bucket: TokenBucket | None
    rate_limit: RateLimit | None
    wake: threading.Event = field(default_factory=threading.Event)
    fresh: threading.Event = field(default_factory=threading.Event)  # the producer queued rows
    paused_until: float = 0.0
    busy: int = 0
    holding: int = 0  # workers waiting for their turn with a backlog row (they hand it to an urgent one)
    lock: threading.Lock = field(default_factory=threading.Lock)
    pool: ThreadPoolExecutor | None = None


_Item = tuple[_Row, float]  # a claimed row and the time it must start before


class _WorkQueue:
    """A lane's claimed rows not started yet: urgent rows first, yet every `oldest_every`-th start goes
    to the oldest waiting row when both kinds wait. `get` blocks; it returns None once `close`d."""

    def __init__(self, oldest_every: int) -> None:
        self._oldest_every = max(1, oldest_every)
        self._urgent: deque[_Item] = deque()
        self._oldest: deque[_Item] = deque()
        self._streak = 0  # urgent starts in a row while oldest rows waited
        self._closed = False
        self._cond = threading.Condition()

    def put(self, row: _Row, start_before: float) -> None:
        with self._cond:
            (self._urgent if row.urgent else self._oldest).append((row, start_before))
            self._cond.notify()

    def get(self) -> _Item | None:
        with self._cond:
            while not self._closed and not (self._urgent or self._oldest):
                self._cond.wait()
            return None if self._closed else self._pop()

    def _pop(self) -> _Item:
        if self._urgent and (not self._oldest or self._streak < self._oldest_every - 1):
            self._streak += 1 if self._oldest else 0
            return self._urgent.popleft()
        self._streak = 0
        return self._oldest.popleft()

    def trade(self, item: _Item) -> _Item:
        """A worker's turn for `item` has come: an urgent row waiting takes it (same rule as `get`) and
        `item` goes back to the head of its line."""
        with self._cond:
            if item[0].urgent or not self._urgent:
                return item
            self._oldest.appendleft(item)
            return self._pop()

    def empty(self) -> bool:
        with self._cond:
            return not (self._urgent or self._oldest)

    def waiting(self) -> tuple[int, int]:
        """(urgent rows, oldest rows) waiting for a worker."""
        with self._cond:
            return len(self._urgent), len(self._oldest)

    def drain(self) -> list[_Item]:
        """Take everything still waiting, in the order the workers would have started it."""
        with self._cond:
            items = []
            while self._urgent or self._oldest:
                items.append(self._pop())
            return items

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Dispatcher:
    """Delivers outbox rows to `connectors` (keyed by connector name). See the module docstring.

    `clock` gives Unix seconds (stored in the table); `sleep` is used to wait for rate-limit tokens.
    `concurrency` is the number of calls a lane delivers at once (rows of one call are always sequential).
    The class attributes tune the urgent rows (an instance may override them; empty `urgent_types`
    restores plain oldest-first order).
    """

    urgent_types: frozenset[str] = URGENT_TYPES
    urgent_max_age: float = 60.0  # seconds since the row was queued
    urgent_poll: float = 0.25  # seconds between looks for urgent rows while backlog rows wait
    oldest_every: int = 4  # of the starts while both kinds wait, one in this many goes to the oldest row

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
                claims=Claims(engine, name),
                bucket=self._bucket(limit),
                rate_limit=limit,
            )

    def _bucket(self, limit: RateLimit | None) -> TokenBucket | None:
        if limit is None:
            return None
        return TokenBucket(limit.rate, limit.burst, clock=self._bucket_clock, sleep=self._sleep)

    def _follow_rate_limit(self, lane: _Lane) -> bool:
        """A connector rebuilt with saved settings may throttle differently: follow its current limit.

        False while a `Dormant` connector is dormant (never enabled since the start): its lane claims nothing.
        """
        if isinstance(lane.connector, Dormant) and lane.connector.dormant:
            return False
        limit = getattr(lane.connector, "rate_limit", None)
        if limit != lane.rate_limit:
            lane.bucket, lane.rate_limit = self._bucket(limit), limit
        return True

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
        """Run every lane in its own thread until `stop` is set; `wake()` cuts an idle wait short.

        On SQLite the claims a killed process left behind are released first (`claims.release_orphaned`)."""
        self._stopping.clear()
        orphaned = claims.release_orphaned(self.engine)
        if orphaned:
            log.warning("outbox released %d rows claimed by a process that stopped mid-delivery", orphaned)
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
            lane.fresh.set()
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
        work = _WorkQueue(self.oldest_every)
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
        looked = time.monotonic()
        try:
            while not stop.is_set():
                now = self._clock()
                with lane.lock:
                    busy = lane.busy
                if not work.empty() or busy >= self.concurrency or lane.paused_until > now:
                    looked = self._promote(lane, work, now, looked)
                    lane.wake.wait(idle_sleep)
                    lane.wake.clear()
                    continue
                lane.fresh.clear()
                try:
                    ready = self._follow_rate_limit(lane)
                    rows = self._claim(lane, now, self._claim_limit(lane)) if ready else []
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
                self._queue(work, rows, now)
        finally:
            leftover = [row.id for row, _ in work.drain()]
            if leftover:
                try:
                    self._release(leftover)
                except Exception as exc:
                    log.error("outbox release failed connector=%s error=%s", lane.name, _describe(exc))
            work.close()
            for worker in workers:
                worker.join()

    def _queue(self, work: _WorkQueue, rows: list[_Row], now: float) -> None:
        start_before = now + self.claim_seconds / 2
        for row in rows:
            work.put(row, start_before)

    def _promote(self, lane: _Lane, work: _WorkQueue, now: float, looked: float) -> float:
        """While claimed backlog rows wait for a worker or for their turn, claim fresh urgent rows to start
        ahead of them.

        Looks when the producer woke the lane or `urgent_poll` seconds have passed since it last looked
        (returned), and only while backlog rows wait and no urgent row does, so the backlog keeps its share.
        """
        if not self.urgent_types or lane.paused_until > now:
            return looked
        urgent, oldest = work.waiting()
        with lane.lock:
            holding = lane.holding
        if urgent or not (oldest or holding):
            return looked
        if not lane.fresh.is_set() and time.monotonic() - looked < self.urgent_poll:
            return looked
        lane.fresh.clear()
        try:
            ready = self._follow_rate_limit(lane)
            rows = self._claim(lane, now, self._claim_limit(lane), urgent_only=True) if ready else []
        except Exception as exc:  # the next ordinary claim reports a database that went away
            log.warning("outbox urgent claim failed connector=%s error=%s", lane.name, _describe(exc))
            rows = []
        self._queue(work, rows, now)
        return time.monotonic()

    def _worker_loop(self, lane: _Lane, work: _WorkQueue) -> None:
        while True:
            item = work.get()
            if item is None:
                return
            row, start_before = item
            with lane.lock:
                lane.busy += 1
            try:
                if not self._turn(lane, row, start_before):
                    self._release([row.id])
                else:
                    # A rate-limited turn can take long: it goes to an urgent row that came meanwhile.
                    row, _ = work.trade(item)
                    self._attempt(lane, row)
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
                if row.urgent:  # the call's next row may be urgent too (answered after ringing)
                    lane.fresh.set()
                lane.wake.set()

    def _turn(self, lane: _Lane, row: _Row, start_before: float) -> bool:
        """`_wait_turn`, counting the workers that wait with a backlog row (see `_promote`)."""
        backlog = 0 if row.urgent else 1
        with lane.lock:
            lane.holding += backlog
        try:
            return self._wait_turn(lane, start_before)
        finally:
            with lane.lock:
                lane.holding -= backlog

    def _lane_pass(self, lane: _Lane) -> int:
        now = self._clock()
        if lane.paused_until > now or self._stopping.is_set():
            return 0
        if not self._follow_rate_limit(lane):
            return 0
        rows = self._claim(lane, now, self._claim_limit(lane))
        if not rows:
            return 0
        order = _WorkQueue(self.oldest_every)
        for row in rows:
            order.put(row, 0.0)
        rows = [row for row, _ in order.drain()]
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

    # ------------------------------------------------------------------ database (bridge.outbox.claims)

    def _claim(self, lane: _Lane, now: float, limit: int, *, urgent_only: bool = False) -> list[_Row]:
        """Claim up to `limit` eligible rows: the fresh urgent ones first (flagged), then the oldest.

        Urgent rows may take all of `limit` when `urgent_only`, else at most what leaves one row in
        `oldest_every` (at least one) to the oldest rows.
        """
        urgency = Urgency(self.urgent_types, self.urgent_max_age) if self.urgent_types else None
        urgent_cap = limit if urgent_only else limit + (-limit // self.oldest_every)
        return lane.claims.claim(
            now,
            limit,
            until=now + self.claim_seconds,
            urgency=urgency,
            urgent_cap=urgent_cap,
            urgent_only=urgent_only,
        )

    def _release(self, ids: list[int]) -> None:
        claims.release(self.engine, ids)

    def _finish(self, row_id: int, **values: object) -> None:
        claims.finish(self.engine, row_id, **values)

    # ------------------------------------------------------------------ one delivery

    def _deliver(self, lane: _Lane, row: _Row, start_before: float) -> bool:
        """Deliver one claimed row; False when it was not attempted (stopping, paused, out of time)."""
        if not self._wait_turn(lane, start_before):
            return False
        self._attempt(lane, row)
        return True

    def _attempt(self, lane: _Lane, row: _Row) -> None:
        """One attempt at a row whose turn has come, and its outcome recorded."""
        try:
            event = CallEvent.from_dict(json.loads(row.payload))
        except Exception as exc:
            self._dead(lane, row, row.attempts, f"unreadable payload: {type(exc).__name__}")
            return
        attempts = row.attempts + 1
        try:
            _handle(lane.connector, event, lane.refs)
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
        error = _error_text(message)
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
        error = _error_text(message)
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


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _error_text(message: str) -> str:
    """A connector's error message as stored in ``last_error``: redacted, bounded, and without the NUL
    or lone surrogates a database refuses (so recording the outcome cannot fail on it)."""
    return _UNSTORABLE.sub("?", redact(message, _ERROR_LIMIT))


class ConnectorExit(RuntimeError):
    """A connector's `handle` raised SystemExit or GeneratorExit: a failed attempt, not a worker's end."""


def _handle(connector: Connector, event: CallEvent, refs: SqlRefStore) -> None:
    try:
        connector.handle(event, refs)
    except (SystemExit, GeneratorExit) as exc:
        raise ConnectorExit(f"handle() raised {type(exc).__name__}") from None


def _describe(exc: BaseException) -> str:
    """``Type: message`` with the message redacted (unexpected exceptions may quote URLs or tokens)."""
    text = redact(str(exc), 200)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
