"""The dispatcher against a real database, with scripted in-process connectors and a fake clock."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from bridge.connector_api import (
    CallEvent,
    Connector,
    PermanentDeliveryError,
    RateLimit,
    RefStore,
    RetryableDeliveryError,
)
from bridge.outbox import claims
from bridge.outbox.dispatcher import Dispatcher
from bridge.outbox.enqueue import enqueue
from bridge.outbox.queries import list_deliveries
from bridge.outbox.refs import SqlRefStore
from bridge.outbox.retry import RetryPolicy
from bridge.store.schema import outbox

try:
    from outbox_fixtures import FakeClock, db_engine, make_event  # noqa: F401
except ImportError:  # tests/ became a package
    from tests.outbox_fixtures import FakeClock, db_engine, make_event  # noqa: F401


class _NoConfig(BaseModel):
    pass


Outcome = Exception | Callable[[], None] | None


class Scripted(Connector):
    """Records every handle call; `script[key]` lists what successive attempts of that key do."""

    name = "crm"
    config_model = _NoConfig

    def __init__(
        self,
        name: str = "crm",
        *,
        clock: Callable[[], float] = time.time,
        script: dict[str, list[Outcome]] | None = None,
        rate_limit: RateLimit | None = None,
    ) -> None:
        super().__init__(_NoConfig())
        self.name = name  # type: ignore[misc]
        self.rate_limit = rate_limit  # type: ignore[misc]
        self.clock = clock
        self.script = script or {}
        self.calls: list[tuple[float, str, str]] = []
        self.lock = threading.Lock()

    def handle(self, event: CallEvent, refs: RefStore) -> None:
        with self.lock:
            self.calls.append((self.clock(), event.entry_id, event.key))
            steps = self.script.get(f"{event.entry_id}:{event.key}") or self.script.get(event.key)
            step = steps.pop(0) if steps else None
        if isinstance(step, Exception):
            raise step
        if callable(step):
            step()

    def delivered(self, entry_id: str | None = None) -> list[str]:
        return [key for _, e, key in self.calls if entry_id in (None, e)]


def _enqueue(engine: sa.Engine, events: Iterable[CallEvent], connectors: Iterable[Connector], now: float):
    with engine.begin() as conn:
        return enqueue(conn, list(events), list(connectors), now=now)


def _rows(engine: sa.Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {r.idempotency_key: r._asdict() for r in conn.execute(sa.select(outbox))}


def _drain(dispatcher: Dispatcher, passes: int = 50) -> int:
    total = 0
    for _ in range(passes):
        n = dispatcher.run_once()
        if n == 0:
            break
        total += n
    return total


CALL_STEPS = ["call.ringing", "call.answered", "call.ended"]


def _call(entry_id: str, steps: list[str] = CALL_STEPS) -> list[CallEvent]:
    return [make_event(entry_id, step) for step in steps]


def test_every_row_is_delivered_once_in_order_per_call(db_engine):
    clock = FakeClock()
    crm = Scripted(clock=clock)
    _enqueue(db_engine, _call("A") + _call("B"), [crm], clock())
    with Dispatcher(db_engine, {"crm": crm}, clock=clock, sleep=clock.sleep) as dispatcher:
        assert _drain(dispatcher) == 6
    assert crm.delivered("A") == CALL_STEPS
    assert crm.delivered("B") == CALL_STEPS
    rows = _rows(db_engine)
    assert {r["status"] for r in rows.values()} == {"done"}
    assert all(r["delivered_at"] == clock() and r["attempts"] == 1 for r in rows.values())
    assert all(r["claimed_until"] is None for r in rows.values())


def test_run_once_claims_only_the_oldest_pending_row_of_each_call(db_engine):
    clock = FakeClock()
    crm = Scripted(clock=clock)
    _enqueue(db_engine, _call("A") + _call("B"), [crm], clock())
    with Dispatcher(db_engine, {"crm": crm}, clock=clock, sleep=clock.sleep) as dispatcher:
        assert dispatcher.run_once() == 2
        assert sorted(crm.calls) == [(clock(), "A", "call.ringing"), (clock(), "B", "call.ringing")]


def test_a_retrying_row_holds_back_its_own_call_but_not_other_calls(db_engine):
    clock = FakeClock()
    policy = RetryPolicy(base=10, random=lambda: 0.5)
    crm = Scripted(clock=clock, script={"A:call.ringing": [RetryableDeliveryError("HTTP 503")]})
    _enqueue(db_engine, _call("A") + _call("B"), [crm], clock())
    with Dispatcher(db_engine, {"crm": crm}, clock=clock, sleep=clock.sleep, policy=policy) as dispatcher:
        _drain(dispatcher)
        assert crm.delivered("B") == CALL_STEPS
        assert crm.delivered("A") == ["call.ringing"]  # tried once, the rest of A waits behind it
        clock.advance(4.9)
        assert dispatcher.run_once() == 0
        clock.advance(0.2)
        _drain(dispatcher)
    assert crm.delivered("A") == ["call.ringing", *CALL_STEPS]
    row = _rows(db_engine)["crm:A:call.ringing"]
    assert row["status"] == "done" and row["attempts"] == 2
    assert row["last_error"] == "HTTP 503"  # kept for the record


def test_retryable_error_schedules_full_jitter_backoff(db_engine):
    clock = FakeClock()
    draws = iter([0.25, 0.0])
    policy = RetryPolicy(base=10, factor=2, min_delay=1, random=lambda: next(draws))
    crm = Scripted(clock=clock, script={"call.ended": [RetryableDeliveryError("x")] * 2})
    _enqueue(db_engine, [make_event("A", "call.ended")], [crm], clock())
    start = clock()
    with Dispatcher(db_engine, {"crm": crm}, clock=clock, sleep=clock.sleep, policy=policy) as dispatcher:
        assert dispatcher.run_once() == 1
        row = _rows(db_engine)["crm:A:call.ended"]
        assert row["attempts"] == 1 and row["status"] == "pending"
        assert row["next_attempt_at"] == pytest.approx(start + 10 * 0.25)
        clock.advance(2.5)
        assert dispatcher.run_once() == 1
        row = _rows(db_engine)["crm:A:call.ended"]
        assert row["attempts"] == 2
        assert row["next_attempt_at"] == pytest.approx(start + 2.5 + 1.0)  # jitter 0 -> min_delay


def test_retry_after_wins_over_a_shorter_backoff_and_pauses_the_connector(db_engine):
    clock = FakeClock()
    policy = RetryPolicy(base=1, random=lambda: 1.0)
    crm = Scripted(
        clock=clock, script={"A:call.ringing": [RetryableDeliveryError("HTTP 429", retry_after=120)]}
    )
    other = Scripted("other", clock=clock)
    _enqueue(db_engine, [make_event("A")], [crm, other], clock())
    start = clock()
    with Dispatcher(
        db_engine, {"crm": crm, "other": other}, clock=clock, sleep=clock.sleep, policy=policy
    ) as dispatcher:
        dispatcher.run_once()
        assert _rows(db_engine)["crm:A:call.ringing"]["next_attempt_at"] == pytest.approx(start + 120)
        _enqueue(db_engine, [make_event("B")], [crm, other], clock())
        clock.advance(60)
        dispatcher.run_once()
        assert crm.delivered() == ["call.ringing"]  # B waits too: the vendor said slow down
        assert other.delivered() == ["call.ringing", "call.ringing"]  # another connector does not
        clock.advance(61)
        _drain(dispatcher)
    assert [(e, k) for _, e, k in crm.calls] == [("A", "call.ringing")] * 2 + [("B", "call.ringing")]
    assert min(t for t, e, _ in crm.calls[1:]) >= start + 120


def test_permanent_error_parks_the_row_dead_and_later_rows_of_the_call_proceed(db_engine):
    clock = FakeClock()
    crm = Scripted(clock=clock, script={"call.answered": [PermanentDeliveryError("HTTP 422 bad phone")]})
    _enqueue(db_engine, _call("A"), [crm], clock())
    with Dispatcher(db_engine, {"crm": crm}, clock=clock, sleep=clock.sleep) as dispatcher:
        _drain(dispatcher)
    assert crm.delivered("A") == CALL_STEPS
    rows = _rows(db_engine)
    assert rows["crm:A:call.answered"]["status"] == "dead"
    assert rows["crm:A:call.answered"]["last_error"] == "HTTP 422 bad phone"
    assert rows["crm:A:call.answered"]["attempts"] == 1
    assert rows["crm:A:call.ended"]["status"] == "done"


def test_row_is_dead_once_the_attempt_budget_is_spent(db_engine):
    clock = FakeClock()
    policy = RetryPolicy(base=1, cap=5, max_attempts=3, random=lambda: 1.0)
    crm = Scripted(clock=clock, script={"call.ringing": [RetryableDeliveryError("HTTP 500")] * 10})
    _enqueue(db_engine, _call("A", ["call.ringing", "call.ended"]), [crm], clock())
    with Dispatcher(db_engine, {"crm": crm}, clock=clock, sleep=clock.sleep, policy=policy) as dispatcher:
        for _ in range(10):
            dispatcher.run_once()
            clock.advance(10)
    assert crm.delivered() == ["call.ringing"] * 3 + ["call.ended"]
    row = _rows(db_engine)["crm:A:call.ringing"]
    assert row["status"] == "dead" and row["attempts"] == 3
    assert row["last_error"] == "gave up after 3 attempts: HTTP 500"


def test_unexpected_exception_is_retried_and_its_secrets_are_not_stored_or_logged(db_engine, caplog):
    clock = FakeClock()
    token = "s3cr3tT0kenABCDEF1234567890abcdefXYZ"
    boom = RuntimeError(f"failed https://admin:hunter2@crm.example/rest/1/{token}/ token=abc123")
    crm = Scripted(clock=clock, script={"call.ringing": [boom]})
    _enqueue(db_engine, [make_event("A")], [crm], clock())
    with (
        caplog.at_level(logging.DEBUG, logger="callbridge.outbox"),
        Dispatcher(db_engine, {"crm": crm}, clock=clock, sleep=clock.sleep) as dispatcher,
    ):
        assert dispatcher.run_once() == 1
    row = _rows(db_engine)["crm:A:call.ringing"]
    assert row["status"] == "pending" and row["attempts"] == 1
    assert row["last_error"] == "unexpected RuntimeError: failed https://crm.example/*** token=***"
    for secret in (token, "hunter2", "abc123", "/rest/1/"):
        assert secret not in row["last_error"]
        assert secret not in caplog.text
    assert "entry_id=A" in caplog.text


def test_rate_limit_on_the_instance_is_never_exceeded(db_engine):
    clock = FakeClock()
    crm = Scripted(clock=clock, rate_limit=RateLimit(rate=2, burst=1))
    _enqueue(db_engine, [make_event(f"call-{i}") for i in range(12)], [crm], clock())
    with Dispatcher(db_engine, {"crm": crm}, clock=clock, sleep=clock.sleep, concurrency=1) as dispatcher:
        assert _drain(dispatcher) == 12
    times = [t for t, _, _ in crm.calls]
    assert len(times) == 12
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            assert j - i <= 1 + 2 * (times[j] - times[i]) + 1e-9
    assert times[-1] - times[0] == pytest.approx(11 * 0.5)


def test_claim_is_limited_to_what_the_rate_allows_before_it_expires(db_engine):
    clock = FakeClock()
    crm = Scripted(clock=clock, rate_limit=RateLimit(rate=0.1, burst=1))
    _enqueue(db_engine, [make_event(f"call-{i}") for i in range(10)], [crm], clock())
    with Dispatcher(
        db_engine, {"crm": crm}, clock=clock, sleep=clock.sleep, claim_seconds=40, concurrency=1
    ) as dispatcher:
        # Claims 3 (1 burst + 0.1/s over half the claim), starts the 2 that fit, releases the third.
        assert dispatcher.run_once() == 2
    rows = _rows(db_engine)
    assert sum(r["status"] == "done" for r in rows.values()) == 2
    assert all(r["claimed_until"] is None for r in rows.values())  # the rest were released


def test_rows_of_connectors_this_dispatcher_does_not_run_are_left_alone(db_engine):
    clock = FakeClock()
    crm, gone = Scripted(clock=clock), Scripted("gone", clock=clock)
    _enqueue(db_engine, [make_event("A")], [crm, gone], clock())
    with Dispatcher(db_engine, {"crm": crm}, clock=clock, sleep=clock.sleep) as dispatcher:
        _drain(dispatcher)
    rows = _rows(db_engine)
    assert rows["gone:A:call.ringing"]["status"] == "pending"
    assert rows["gone:A:call.ringing"]["claimed_until"] is None


def test_a_live_claim_is_respected_and_an_expired_one_taken_over(db_engine):
    clock = FakeClock()
    crm = Scripted(clock=clock)
    _enqueue(db_engine, [make_event("A")], [crm], clock())
    with db_engine.begin() as conn:
        conn.execute(sa.update(outbox).values(claimed_until=clock() + 30))
    with Dispatcher(db_engine, {"crm": crm}, clock=clock, sleep=clock.sleep) as dispatcher:
        assert dispatcher.run_once() == 0
        clock.advance(30)
        assert dispatcher.run_once() == 1


def test_a_claim_left_by_a_killed_process_goes_out_at_start_on_sqlite_and_stands_on_postgresql(db_engine):
    crm = Scripted()
    _enqueue(db_engine, [make_event("A")], [crm], time.time())
    with db_engine.begin() as conn:  # claimed by a dispatcher that was killed mid-delivery
        conn.execute(sa.update(outbox).values(claimed_until=time.time() + 3600))
    dispatcher = Dispatcher(db_engine, {"crm": crm}, claim_seconds=3600)
    if db_engine.dialect.name != "sqlite":  # dispatchers share the table: the claim stands until it lapses
        assert claims.release_orphaned(db_engine) == 0
        assert dispatcher.run_once() == 0
        dispatcher.close()
        return
    stop, thread = _run_in_background(dispatcher)  # one dispatcher process: the claim was nobody's
    try:
        assert _wait_for(lambda: crm.delivered() == ["call.ringing"], timeout=10)
    finally:
        stop.set()
        thread.join(10)
        dispatcher.close()


def test_unreadable_payload_is_dead_without_calling_the_connector(db_engine):
    clock = FakeClock()
    crm = Scripted(clock=clock)
    _enqueue(db_engine, [make_event("A")], [crm], clock())
    with db_engine.begin() as conn:
        conn.execute(sa.update(outbox).values(payload="{not json"))
    with Dispatcher(db_engine, {"crm": crm}, clock=clock, sleep=clock.sleep) as dispatcher:
        assert dispatcher.run_once() == 1
    assert crm.calls == []
    row = _rows(db_engine)["crm:A:call.ringing"]
    assert row["status"] == "dead" and row["last_error"] == "unreadable payload: JSONDecodeError"


def test_handle_gets_a_ref_store_of_its_own_connector(db_engine):
    class Remembers(Scripted):
        def handle(self, event: CallEvent, refs: RefStore) -> None:
            if refs.get(event.entry_id, "crm_call_id") is None:
                refs.put(event.entry_id, "crm_call_id", "CRM-42")
            super().handle(event, refs)

    crm = Remembers()
    _enqueue(db_engine, _call("A"), [crm], time.time())
    with Dispatcher(db_engine, {"crm": crm}) as dispatcher:
        _drain(dispatcher)
    assert SqlRefStore(db_engine, "crm").items("A") == {"crm_call_id": "CRM-42"}
    assert SqlRefStore(db_engine, "other").get("A", "crm_call_id") is None


def test_connector_name_must_match_its_key():
    engine = sa.create_engine("sqlite://")
    with pytest.raises(ValueError, match="calls itself 'crm'"):
        Dispatcher(engine, {"bitrix24": Scripted()})


def _run_in_background(dispatcher: Dispatcher, idle_sleep: float = 0.01):
    stop = threading.Event()
    thread = threading.Thread(target=dispatcher.run_forever, args=(stop,), kwargs={"idle_sleep": idle_sleep})
    thread.start()
    return stop, thread


def _wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_a_hanging_connector_does_not_stall_another(db_engine):
    release = threading.Event()
    slow = Scripted("slow", script={"call.ringing": [lambda: release.wait(20)]})
    fast = Scripted("fast")
    events = [e for i in range(5) for e in _call(f"call-{i}")]
    _enqueue(db_engine, events, [slow, fast], time.time())
    dispatcher = Dispatcher(db_engine, {"slow": slow, "fast": fast}, concurrency=1)
    stop, thread = _run_in_background(dispatcher)
    try:
        assert _wait_for(lambda: len(fast.calls) == 15)
        # the slow connector got (at most) its first event and is stuck in it; fast finished anyway
        assert _wait_for(lambda: len(slow.calls) == 1)
        time.sleep(0.1)
        assert len(slow.calls) == 1
    finally:
        release.set()
        assert _wait_for(lambda: len(slow.calls) == 15)
        stop.set()
        thread.join(10)
        dispatcher.close()
    assert not thread.is_alive()
    assert {r["status"] for r in _rows(db_engine).values()} == {"done"}


def test_a_hanging_call_does_not_stall_other_calls_of_the_same_connector(db_engine):
    release = threading.Event()
    crm = Scripted(script={"stuck:call.ringing": [lambda: release.wait(20)]})
    events = _call("stuck") + [e for i in range(6) for e in _call(f"call-{i}")]
    _enqueue(db_engine, events, [crm], time.time())
    dispatcher = Dispatcher(db_engine, {"crm": crm}, concurrency=4)
    stop, thread = _run_in_background(dispatcher)
    try:
        assert _wait_for(lambda: len(crm.delivered()) == 19)
        assert crm.delivered("stuck") == ["call.ringing"]
    finally:
        release.set()
        assert _wait_for(lambda: len(crm.delivered("stuck")) == 3)
        stop.set()
        thread.join(10)
        dispatcher.close()
    for i in range(6):
        assert crm.delivered(f"call-{i}") == CALL_STEPS
    assert crm.delivered("stuck") == CALL_STEPS


def test_wake_cuts_the_idle_wait_short_and_stop_ends_promptly(db_engine):
    crm = Scripted()
    dispatcher = Dispatcher(db_engine, {"crm": crm})
    stop, thread = _run_in_background(dispatcher, idle_sleep=30)
    try:
        time.sleep(0.2)  # let the lane go idle
        _enqueue(db_engine, [make_event("A")], [crm], time.time())
        started = time.monotonic()
        dispatcher.wake()
        assert _wait_for(lambda: len(crm.calls) == 1, timeout=5)
        assert time.monotonic() - started < 5
    finally:
        started = time.monotonic()
        stop.set()
        thread.join(10)
        dispatcher.close()
    assert time.monotonic() - started < 5


def test_several_dispatchers_deliver_each_row_exactly_once_in_order(db_engine):
    if db_engine.dialect.name != "postgresql":
        pytest.skip("several dispatcher processes need PostgreSQL (SKIP LOCKED)")
    shared = Scripted()
    events = [e for i in range(40) for e in _call(f"call-{i}")]
    _enqueue(db_engine, events, [shared], time.time())
    dispatchers = [Dispatcher(db_engine, {"crm": shared}, batch_size=7, concurrency=3) for _ in range(3)]
    running = [_run_in_background(d, idle_sleep=0.005) for d in dispatchers]
    try:
        assert _wait_for(lambda: len(shared.calls) >= 120, timeout=30)
        time.sleep(0.2)  # anything delivered twice would show up now
    finally:
        for stop, thread in running:
            stop.set()
            thread.join(10)
        for d in dispatchers:
            d.close()
    assert len(shared.calls) == 120
    for i in range(40):
        assert shared.delivered(f"call-{i}") == CALL_STEPS
    assert {r.status for r in list_deliveries(db_engine, limit=500)} == {"done"}
