"""Durability end to end: a kill -9 mid-burst loses nothing that was acknowledged, and a failing
webhook receiver (503, then 429 with Retry-After) still gets everything, in order, once."""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from pathlib import Path

from sqlalchemy import func, select

from bridge.pbx.mango.parse import dedup_key, parse
from bridge.pbx.mango.simulator import generate_calls
from bridge.pbx.mango.simulator.poster import Poster
from bridge.store.engine import make_engine
from bridge.store.schema import outbox, raw_events
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_e2e_calls import WEBHOOK_SECRET, start_daemon

# Rows in flight at the kill go out again when their claim lapses (PostgreSQL) or at the restart (SQLite):
# a webhook timeout of 3 s allows a claim of 8 s instead of the default 60.
QUICK_CLAIMS = {"CALLBRIDGE_CONNECTORS_WEBHOOK_TIMEOUT": "3", "CALLBRIDGE_DISPATCHER_CLAIM_SECONDS": "8"}


def wait_until(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def outbox_state(engine) -> tuple[int, int, set[str]]:
    with engine.connect() as conn:
        unprocessed = conn.execute(
            select(func.count()).select_from(raw_events).where(raw_events.c.processed_at.is_(None))
        ).scalar_one()
        pending = conn.execute(
            select(func.count()).select_from(outbox).where(outbox.c.status != "done")
        ).scalar_one()
        keys = set(conn.execute(select(outbox.c.idempotency_key)).scalars())
    return unprocessed, pending, keys


def test_kill_9_mid_burst_loses_no_acknowledged_event(database_url: str, tmp_path: Path) -> None:
    receiver = WebhookReceiver(secret=WEBHOOK_SECRET).start()
    engine = make_engine(database_url)
    daemon = start_daemon(database_url, tmp_path, receiver, **QUICK_CLAIMS)
    try:
        calls = generate_calls(2000, seed=7)
        notifications = [n for scenario in calls for n in scenario.notifications]
        assert len(notifications) >= 2000
        poster = Poster(daemon.mango_url, API_KEY, API_SALT, timeout=5)
        result: dict = {}
        player = threading.Thread(
            target=lambda: result.setdefault("report", poster.play(notifications, concurrency=8))
        )
        player.start()

        def stored() -> int:
            with engine.connect() as conn:
                return conn.execute(select(func.count()).select_from(raw_events)).scalar_one()

        wait_until(lambda: stored() >= 600, 60, "600 stored events")
        daemon.kill()
        player.join(120)
        report = result["report"]
        acked = report.acked
        assert 600 <= len(acked) < len(notifications), "the kill must land mid-burst"

        daemon = start_daemon(database_url, tmp_path, receiver, **QUICK_CLAIMS)
        with engine.connect() as conn:
            keys = set(conn.execute(select(raw_events.c.dedup_key)).scalars())
        for notification in acked:
            text = json.dumps(notification.payload, separators=(",", ":"), ensure_ascii=False)
            key = dedup_key(notification.path, parse(notification.path, notification.payload), text)
            assert key in keys, f"acknowledged {notification.path} was lost"

        def drained() -> bool:
            unprocessed, pending, _ = outbox_state(engine)
            return unprocessed == 0 and pending == 0

        wait_until(drained, 120, "every event processed and delivered")
        _, _, queued = outbox_state(engine)
        assert queued, "the burst produced CallEvents"
        assert set(receiver.accepted) == queued
        # a resend is possible only for deliveries in flight at the kill
        assert len(receiver.duplicates) <= 100
    finally:
        daemon.stop()
        receiver.stop()
        engine.dispose()


def test_failing_receiver_gets_everything_in_order_once(database_url: str, tmp_path: Path) -> None:
    from bridge.pbx.mango import scenarios

    receiver = WebhookReceiver(secret=WEBHOOK_SECRET).start()
    receiver.plan = deque([(503, {})] * 8 + [(429, {"Retry-After": "1"})] * 4)
    engine = make_engine(database_url)
    daemon = start_daemon(database_url, tmp_path, receiver)
    try:
        poster = Poster(daemon.mango_url, API_KEY, API_SALT)
        played = [scenarios.build(name, seed=i + 900) for i, name in enumerate(scenarios.SCENARIO_NAMES)]
        for scenario in played:
            poster.play(scenario.notifications)

        def drained() -> bool:
            unprocessed, pending, keys = outbox_state(engine)
            return unprocessed == 0 and pending == 0 and bool(keys)

        wait_until(drained, 90, "all deliveries done")
        _, _, queued = outbox_state(engine)
        assert set(receiver.accepted) == queued
        assert receiver.duplicates == []
        assert not receiver.plan, "the failures were all served"
        after_429 = [r for r in receiver.requests if r.status == 429]
        first_ok_after = [r for r in receiver.requests if r.status == 200 and r.at > after_429[0].at]
        assert first_ok_after[0].at - after_429[0].at >= 0.9, "Retry-After was honoured"
        with engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.entry_id, outbox.c.idempotency_key).order_by(outbox.c.id)
            ).all()
        accepted_order = list(receiver.accepted)
        for scenario in played:
            queued_order = [r.idempotency_key for r in rows if r.entry_id == scenario.entry_id]
            got_order = [k for k in accepted_order if k in set(queued_order)]
            assert got_order == queued_order, f"{scenario.name} delivered out of order"
    finally:
        daemon.stop()
        receiver.stop()
        engine.dispose()


def test_restart_keeps_calls(database_url: str, tmp_path: Path) -> None:
    """A clean stop and start serves the same data (migrations are idempotent)."""
    receiver = WebhookReceiver(secret=WEBHOOK_SECRET).start()
    daemon: Daemon = start_daemon(database_url, tmp_path, receiver)
    try:
        from bridge.pbx.mango import scenarios

        scenario = scenarios.build("incoming_answered", seed=4242)
        Poster(daemon.mango_url, API_KEY, API_SALT).play(scenario.notifications)
        wait_until(lambda: daemon.api("/api/calls").json()["items"], 20, "the call")
        daemon.stop()
        daemon = start_daemon(database_url, tmp_path, receiver)
        assert [c["entry_id"] for c in daemon.api("/api/calls").json()["items"]] == [scenario.entry_id]
    finally:
        daemon.stop()
        receiver.stop()
