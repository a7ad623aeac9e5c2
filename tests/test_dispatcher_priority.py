"""Caller-card rows (ringing, answered, transferred) are claimed ahead of the backlog while fresh.

Against the real store on every backend: with scripted connectors and a fake clock (`run_once`), and end to
end through the webhook connector into the loopback receiver (`run_forever`).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from bridge.connector_api import CallEvent, Connector
from bridge.outbox.dispatcher import Dispatcher, _Row, _WorkQueue
from bridge.outbox.enqueue import enqueue
from bridge.outbox.queries import counts
from bridge.store.schema import outbox

try:
    from outbox_fixtures import FakeClock, db_engine, make_event  # noqa: F401
    from test_dispatcher import Scripted
    from test_webhook_connector import FAST_POLICY, Receiver, _hook, _Running, _wait_for, receiver  # noqa: F401
except ImportError:  # tests/ became a package
    from tests.outbox_fixtures import FakeClock, db_engine, make_event  # noqa: F401
    from tests.test_dispatcher import Scripted
    from tests.test_webhook_connector import (  # noqa: F401
        FAST_POLICY,
        Receiver,
        _hook,
        _Running,
        _wait_for,
        receiver,
    )

BACKLOG_STEPS = ["call.ended", "call.recording_ready"]


def _enqueue(
    engine: sa.Engine, events: Iterable[CallEvent], connectors: Iterable[Connector], now: float
) -> int:
    with engine.begin() as conn:
        return enqueue(conn, list(events), list(connectors), now=now)


def _backlog(calls: int) -> list[CallEvent]:
    """Finished calls waiting to be logged: the rows a CRM outage leaves behind."""
    return [make_event(f"old-{i}", step) for i in range(calls) for step in BACKLOG_STEPS]


def _first_pass(engine: sa.Engine, crm: Scripted, clock: FakeClock, **kw: Any) -> list[tuple[str, str]]:
    with Dispatcher(engine, {"crm": crm}, clock=clock, sleep=clock.sleep, concurrency=1, **kw) as dispatcher:
        dispatcher.run_once()
    return [(entry, key) for _, entry, key in crm.calls]


def test_a_fresh_ringing_row_is_delivered_before_the_older_backlog(db_engine):
    clock = FakeClock()
    crm = Scripted(clock=clock)
    _enqueue(db_engine, _backlog(10), [crm], clock() - 30)
    _enqueue(db_engine, [make_event("new", "call.ringing")], [crm], clock())
    delivered = _first_pass(db_engine, crm, clock, batch_size=4)
    assert delivered[0] == ("new", "call.ringing")
    assert delivered[1:] == [(f"old-{i}", "call.ended") for i in range(3)]


def test_old_order_when_urgent_types_are_empty(db_engine):
    clock = FakeClock()
    crm = Scripted(clock=clock)
    _enqueue(db_engine, _backlog(10), [crm], clock() - 30)
    _enqueue(db_engine, [make_event("new", "call.ringing")], [crm], clock())
    with Dispatcher(db_engine, {"crm": crm}, clock=clock, batch_size=4, concurrency=1) as dispatcher:
        dispatcher.urgent_types = frozenset()
        dispatcher.run_once()
    assert [entry for _, entry, _ in crm.calls] == [f"old-{i}" for i in range(4)]


def test_a_stale_ringing_row_waits_its_turn(db_engine):
    """Older than urgent_max_age, or its call already ended: the card is no use, nothing is overtaken."""
    clock = FakeClock()
    crm = Scripted(clock=clock)
    _enqueue(db_engine, _backlog(10), [crm], clock() - 300)
    _enqueue(db_engine, [make_event("late", "call.ringing")], [crm], clock() - 61)
    _enqueue(db_engine, [make_event("over", s) for s in ("call.ringing", "call.ended")], [crm], clock())
    delivered = _first_pass(db_engine, crm, clock, batch_size=4)
    assert delivered == [(f"old-{i}", "call.ended") for i in range(4)]


def test_an_urgent_row_never_overtakes_an_earlier_row_of_its_own_call(db_engine):
    clock = FakeClock()
    crm = Scripted(clock=clock)
    _enqueue(db_engine, _backlog(10) + [make_event("cb", "callback.requested")], [crm], clock() - 30)
    _enqueue(db_engine, [make_event("cb", "call.ringing"), make_event("new", "call.ringing")], [crm], clock())
    with Dispatcher(db_engine, {"crm": crm}, clock=clock, sleep=clock.sleep, batch_size=4) as dispatcher:
        dispatcher.run_once()
        assert [entry for _, entry, _ in crm.calls][0] == "new"
        while dispatcher.run_once():
            pass
    assert crm.delivered("cb") == ["callback.requested", "call.ringing"]
    assert len(crm.calls) == 23


def test_a_stream_of_rings_never_stops_the_backlog(db_engine):
    """Every claim keeps a quarter (at least one row) for the oldest rows, whatever keeps ringing."""
    clock = FakeClock()
    crm = Scripted(clock=clock)
    _enqueue(db_engine, _backlog(10), [crm], clock() - 30)
    with Dispatcher(db_engine, {"crm": crm}, clock=clock, sleep=clock.sleep, batch_size=4) as dispatcher:
        for n in range(10):
            rings = [make_event(f"ring-{n}-{i}", "call.ringing") for i in range(8)]
            _enqueue(db_engine, rings, [crm], clock())
            before = len(crm.calls)
            dispatcher.run_once()
            batch = crm.calls[before:]
            assert len(batch) == 4
            assert sum(entry.startswith("old-") for _, entry, _ in batch) == 1
            clock.advance(1)
    oldest = [(entry, key) for _, entry, key in crm.calls if entry.startswith("old-")]
    assert oldest == [(e.entry_id, e.key) for e in _backlog(5)]


def test_a_lane_starts_urgent_rows_first_but_every_fourth_start_is_the_oldest_row():
    work = _WorkQueue(oldest_every=4)
    for n in range(3):
        work.put(_Row(n, "crm", f"old-{n}", "call.ended", "{}", 0), 0.0)
    for n in range(7):
        work.put(_Row(10 + n, "crm", f"new-{n}", "call.ringing", "{}", 0, urgent=True), 0.0)
    starts = [work.get(), work.get()]
    assert [item[0].id for item in starts if item is not None] == [10, 11]
    # A worker that waited for its turn with a backlog row (old-x) hands the turn to a waiting urgent row;
    # old-x goes back to the head of its line, and it is the next oldest row to start.
    traded = work.trade((_Row(99, "crm", "old-x", "call.ended", "{}", 0), 0.0))
    assert traded[0].id == 12
    started = [row.id for row, _ in work.drain()]
    assert started == [99, 13, 14, 15, 0, 16, 1, 2]


def test_end_to_end_a_new_call_rings_through_a_backlog_of_hundreds(db_engine, receiver: Receiver):
    """The webhook connector delivers a 400-row backlog at 100/s; a call rings once it is under way."""
    hook = _hook(receiver.url, rate_per_second=100)
    old = time.time() - 30
    backlog = _backlog(200) + [make_event("cb", "callback.requested")]
    _enqueue(db_engine, backlog, [hook], old)
    with _Running(Dispatcher(db_engine, {"webhook": hook}, policy=FAST_POLICY)) as dispatcher:
        assert _wait_for(lambda: len(receiver.processed) >= 20)
        ringing = [
            make_event("new", "call.ringing"),
            make_event("new", "call.answered"),
            make_event("cb", "call.ringing"),  # its callback row is still at the end of the backlog
            make_event("over", "call.ringing"),  # ended already: the card is gone, no hurry
            make_event("over", "call.ended"),
        ]
        _enqueue(db_engine, ringing, [hook], time.time())
        _enqueue(db_engine, [make_event("late", "call.ringing")], [hook], time.time() - 120)
        enqueued_after = len(receiver.processed)
        dispatcher.wake()  # as the event processor does after committing
        total = len(backlog) + len(ringing) + 1
        assert _wait_for(lambda: counts(db_engine)["done"] == total, timeout=60), counts(db_engine)

    order = [p["id"] for p in receiver.processed]
    position = {key: n for n, key in enumerate(order)}
    new_ringing = position["webhook:new:call.ringing"]
    # It went out within a few rows of being queued (the rows already being delivered), while most of the
    # 400-row backlog was still waiting; the oldest-first order would have put it after all of it.
    assert new_ringing - enqueued_after <= 30, (enqueued_after, new_ringing)
    assert sum(1 for key in order[new_ringing:] if ":old-" in key) >= 300
    assert position["webhook:new:call.answered"] < new_ringing + 30
    # Stale rings and a ring behind its own call's older row wait their turn.
    for key in ("webhook:over:call.ringing", "webhook:late:call.ringing", "webhook:cb:call.ringing"):
        assert position[key] > len(backlog) - 10, key
    # Everything delivered, each once, in order per call.
    assert len(order) == total and set(receiver.processed_count.values()) == {1}
    assert receiver.duplicates == Counter()
    for entry, steps in [
        ("cb", ["callback.requested", "call.ringing"]),
        ("over", ["call.ringing", "call.ended"]),
    ]:
        assert receiver.keys_in_order(entry) == [f"webhook:{entry}:{s}" for s in steps]
    for i in range(200):
        assert receiver.keys_in_order(f"old-{i}") == [f"webhook:old-{i}:{s}" for s in BACKLOG_STEPS]
    with db_engine.connect() as conn:
        assert set(conn.execute(sa.select(outbox.c.status).distinct()).scalars()) == {"done"}


def test_end_to_end_on_a_throttled_connector_the_ring_takes_the_next_turn(db_engine, receiver: Receiver):
    """At 10 requests/s every worker holds a backlog row waiting for its turn; the ring takes the next one."""
    hook = _hook(receiver.url, rate_per_second=10)
    _enqueue(db_engine, _backlog(20), [hook], time.time() - 30)
    with _Running(Dispatcher(db_engine, {"webhook": hook}, policy=FAST_POLICY)) as dispatcher:
        assert _wait_for(lambda: len(receiver.processed) >= 5)
        _enqueue(db_engine, [make_event("new", "call.ringing")], [hook], time.time())
        enqueued_after = len(receiver.processed)
        dispatcher.wake()
        assert _wait_for(lambda: counts(db_engine)["done"] == 41, timeout=60), counts(db_engine)
    order = [p["id"] for p in receiver.processed]
    # Without handing the turn over it would wait for the 4 rows the workers already hold.
    ringing = order.index("webhook:new:call.ringing")
    assert ringing - enqueued_after <= 3, (enqueued_after, ringing)
    assert len(order) == 41 and set(receiver.processed_count.values()) == {1}
