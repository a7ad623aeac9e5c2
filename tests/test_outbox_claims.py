"""The outbox claim SQL on its own (`bridge.outbox.claims`), on every backend, and the `Dormant` protocol
the dispatcher checks before a lane claims."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from bridge.config import Settings
from bridge.connector_api import CallEvent, Connector
from bridge.connector_api.protocols import Dormant
from bridge.connectors_runtime import LiveConnector, load_connectors
from bridge.outbox.claims import Claims, Urgency, finish, release
from bridge.outbox.enqueue import enqueue
from bridge.store.schema import outbox

try:
    from outbox_fixtures import FakeClock, db_engine, make_event  # noqa: F401
    from test_dispatcher import Scripted
except ImportError:  # tests/ became a package
    from tests.outbox_fixtures import FakeClock, db_engine, make_event  # noqa: F401
    from tests.test_dispatcher import Scripted

URGENT = Urgency(frozenset({"call.ringing", "call.answered"}), 60.0)


def _enqueue(engine: sa.Engine, events: Iterable[CallEvent], connectors: Iterable[Connector], now: float):
    with engine.begin() as conn:
        return enqueue(conn, list(events), list(connectors), now=now)


def _claimed(engine: sa.Engine) -> dict[int, float | None]:
    with engine.connect() as conn:
        return {r.id: r.claimed_until for r in conn.execute(sa.select(outbox.c.id, outbox.c.claimed_until))}


def test_a_claim_takes_the_oldest_row_of_each_call_and_marks_it_until_the_claim_ends(db_engine):
    clock = FakeClock()
    now = clock()
    events = [make_event(e, step) for e in ("A", "B") for step in ("call.ringing", "call.ended")]
    _enqueue(db_engine, events, [Scripted()], now)
    claims = Claims(db_engine, "crm")
    assert claims.anything_due(now)
    rows = claims.claim(now, 10, until=now + 60, urgency=None, urgent_cap=0)
    assert [(r.entry_id, r.event_type, r.urgent) for r in rows] == [
        ("A", "call.ringing", False),
        ("B", "call.ringing", False),
    ]
    claimed = _claimed(db_engine)
    assert [claimed[r.id] for r in rows] == [now + 60, now + 60]
    assert claims.claim(now, 10, until=now + 60, urgency=None, urgent_cap=0) == []  # live claims hold
    release(db_engine, [rows[0].id])
    finish(db_engine, rows[1].id, status="done", attempts=1, delivered_at=now)
    again = claims.claim(now, 10, until=now + 60, urgency=None, urgent_cap=0)
    assert [(r.entry_id, r.event_type) for r in again] == [("A", "call.ringing"), ("B", "call.ended")]
    assert Claims(db_engine, "other").claim(now, 10, until=now + 60, urgency=None, urgent_cap=0) == []


def test_fresh_urgent_rows_come_first_flagged_and_an_urgent_only_claim_takes_nothing_else(db_engine):
    clock = FakeClock()
    now = clock()
    _enqueue(db_engine, [make_event(f"old-{i}", "call.ended") for i in range(3)], [Scripted()], now - 600)
    _enqueue(db_engine, [make_event("new", "call.ringing")], [Scripted()], now)
    claims = Claims(db_engine, "crm")
    assert claims.anything_urgent(now, URGENT)
    urgent = claims.claim(now, 10, until=now + 60, urgency=URGENT, urgent_cap=10, urgent_only=True)
    assert [(r.entry_id, r.urgent) for r in urgent] == [("new", True)]
    assert not claims.anything_urgent(now, URGENT)
    assert claims.claim(now, 10, until=now + 60, urgency=URGENT, urgent_cap=10, urgent_only=True) == []
    rest = claims.claim(now, 2, until=now + 60, urgency=URGENT, urgent_cap=1)
    assert [(r.entry_id, r.urgent) for r in rest] == [("old-0", False), ("old-1", False)]


def test_a_live_connector_is_dormant_through_the_protocol_and_a_plain_connector_is_not(db_engine):
    webhook = load_connectors(Settings(), db_engine, dict)["webhook"]  # no section: dormant
    assert isinstance(webhook, LiveConnector) and isinstance(webhook, Dormant) and webhook.dormant
    assert not isinstance(Scripted(), Dormant)
