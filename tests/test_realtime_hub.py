"""The hub in-process: events relayed from an HTTP worker (callback.requested from the widget), who gets
what, and the deadline-0 mode where the ringing goes out at once and the card follows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import bridge.realtime as realtime
import bridge.wakeup as wakeup
from bridge.connector_api import CallEvent
from bridge.lookup import LookupService
from bridge.realtime.auth import TokenSigner
from bridge.realtime.hub import RealtimeHub
from bridge.wakeup import EVENTS, WAKEUP_ENV, WakeupListener
from connectors.demo import DemoConnector
from tests.fakes.realtime_client import Client

SECRET = "hub-test-secret-0123456789abcdef"


def start_hub(**kw: Any) -> RealtimeHub:
    return RealtimeHub(TokenSigner(SECRET), host="127.0.0.1", port=0, heartbeat=0.5, **kw).start()


@pytest.fixture
def relay(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RealtimeHub, WakeupListener]]:
    hub = start_hub()
    listener = WakeupListener()
    listener.on(EVENTS, lambda body: hub.publish(realtime.events_from_datagram(body)))
    listener.start()
    monkeypatch.setenv(WAKEUP_ENV, listener.address)
    monkeypatch.setattr(wakeup, "_sender", None)
    monkeypatch.setattr(realtime, "_local_hub", None)  # as in an HTTP worker process
    yield hub, listener
    listener.stop()
    hub.stop()


def callback_event(**kw: Any) -> CallEvent:
    fields: dict[str, Any] = {
        "type": "callback.requested",
        "entry_id": "widget-abc",
        "key": "callback.requested",
        "occurred_at": time.time(),
        "direction": "outgoing",
        "customer_number": "+79161234567",
        "extra": {"source": "widget", "site": "shop", "site_name": "Shop", "request_id": 7},
    }
    return CallEvent(**{**fields, **kw})


def test_an_http_worker_hands_events_to_the_hub_over_the_local_relay(
    relay: tuple[RealtimeHub, WakeupListener],
) -> None:
    hub, _ = relay
    signer = TokenSigner(SECRET)
    boss = Client(hub.port, signer.issue_supervisor(60))
    alice = Client(hub.port, signer.issue_employee("101", 60))
    bob = Client(hub.port, signer.issue_employee("102", 60))
    try:
        for client in (boss, alice, bob):
            client.wait_for("hello")
        assert realtime.publish([callback_event()])
        message = boss.wait_for("callback.requested")
        assert message["number"] == "+79161234567" and message["request"]["site_name"] == "Shop"
        assert realtime.publish([callback_event(extensions=("101",), entry_id="widget-def")])
        assert alice.wait_for("callback.requested")["entry_id"] == "widget-def"
        boss.wait_for("heartbeat")
        assert [m["entry_id"] for m in alice.events()] == ["widget-def"]
        assert bob.events() == []
    finally:
        for client in (boss, alice, bob):
            client.close()


def test_outside_callbridge_run_publish_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(WAKEUP_ENV, raising=False)
    monkeypatch.setattr(wakeup, "_sender", None)
    monkeypatch.setattr(realtime, "_local_hub", None)
    assert realtime.publish([callback_event()]) is False


def test_deadline_zero_sends_the_ringing_at_once_and_the_card_after() -> None:
    demo = DemoConnector({"contacts": "79161234567=Ivan Petrov", "delay_ms": 300})
    hub = start_hub(lookup=LookupService({"demo": demo}, deadline=0.0))
    try:
        alice = Client(hub.port, TokenSigner(SECRET).issue_employee("101", 60))
        alice.wait_for("hello")
        ringing = CallEvent(
            type="call.ringing",
            entry_id="e1",
            key="call.ringing:c1",
            occurred_at=time.time(),
            direction="incoming",
            customer_number="79161234567",
            extension="101",
            extensions=("101",),
            call_id="c1",
        )
        started = time.monotonic()
        hub.publish([ringing])
        first = alice.wait_for("call.ringing")
        assert first["card_pending"] is True and first["_received"] - started < 0.2
        card = alice.wait_for("call.card")
        assert card["card"]["name"] == "Ivan Petrov" and card["_received"] - started >= 0.3
        alice.close()
    finally:
        hub.stop()


def test_the_local_relay_ignores_datagrams_without_the_parents_key(
    relay: tuple[RealtimeHub, WakeupListener],
) -> None:
    import json
    import socket

    hub, listener = relay
    boss = Client(hub.port, TokenSigner(SECRET).issue_supervisor(60))
    try:
        boss.wait_for("hello")
        host, _, rest = listener.address.partition(":")
        port = int(rest.partition("#")[0])
        forged = b"e" + json.dumps([callback_event(entry_id="forged").to_dict()]).encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(forged, (host, port))
            sock.sendto(b"0" * 16 + forged, (host, port))
        assert realtime.publish([callback_event(entry_id="genuine")])
        boss.wait_for("callback.requested")
        assert [m["entry_id"] for m in boss.events()] == ["genuine"]
    finally:
        boss.close()
