"""End to end: the simulator plays every scenario into `callbridge run`; the read API shows the right
final call and the webhook connector's receiver gets each CallEvent once."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator.poster import Poster
from tests.daemon import API_KEY, API_SALT, Daemon, wait_closed
from tests.fakes.webhook_receiver import WebhookReceiver

WEBHOOK_SECRET = "webhook-secret-0123456789abcdef"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    instance = WebhookReceiver(secret=WEBHOOK_SECRET).start()
    yield instance
    instance.stop()


def start_daemon(database_url: str, workdir: Path, receiver: WebhookReceiver, **env: str) -> Daemon:
    return Daemon(
        database_url,
        workdir,
        env={
            "CALLBRIDGE_CONNECTORS_WEBHOOK_URL": receiver.url,
            "CALLBRIDGE_CONNECTORS_WEBHOOK_SECRET": WEBHOOK_SECRET,
            **env,
        },
    ).start()


def assert_matches(call: dict, expected: scenarios.Expected) -> None:
    assert call["status"] == expected.status
    assert call["direction"] == expected.direction
    assert call["answered_by"] == expected.answered_by
    assert call["missed"] == expected.missed
    assert call["responsible"] == expected.responsible
    assert tuple(call["extensions"]) == tuple(expected.extensions)
    ready = tuple(sorted(r["recording_id"] for r in call["recordings"] if r["ready"]))
    assert ready == tuple(sorted(expected.recording_ids))


def expected_event_types(expected: scenarios.Expected) -> set[str]:
    types = {"call.ended"}
    if expected.missed:
        types.add("call.missed")
    if expected.recording_ids:
        types.add("call.recording_ready")
    return types


@pytest.mark.parametrize("delivery", ["in-order", "shuffled-duplicated"])
def test_every_scenario_reaches_the_right_final_state(
    database_url: str, tmp_path: Path, receiver: WebhookReceiver, delivery: str
) -> None:
    daemon = start_daemon(database_url, tmp_path, receiver)
    try:
        poster = Poster(daemon.mango_url, API_KEY, API_SALT)
        played = []
        for seed, name in enumerate(scenarios.SCENARIO_NAMES):
            scenario = scenarios.build(name, seed=seed + 100)
            shuffle = delivery != "in-order"
            report = poster.play(
                scenario.notifications,
                shuffle=shuffle,
                duplicate=0.5 if shuffle else 0.0,
                rng=random.Random(seed),
            )
            assert not report.errors, report.errors
            played.append(scenario)
        for scenario in played:
            call = wait_closed(daemon, scenario.entry_id, recordings=len(scenario.expected.recording_ids))
            assert_matches(call, scenario.expected)
        # every CallEvent that the store queued reached the receiver exactly once
        deadline = time.time() + 20
        while time.time() < deadline:
            outbox = daemon.api("/api/calls", limit="200").json()
            if receiver.wait_for(1, timeout=0.1) and all(
                expected_event_types(s.expected) <= {b["type"] for b in receiver.accepted_for(s.entry_id)}
                for s in played
            ):
                break
            time.sleep(0.2)
        assert outbox["items"]
        for scenario in played:
            bodies = receiver.accepted_for(scenario.entry_id)
            types = [b["type"] for b in bodies]
            assert expected_event_types(scenario.expected) <= set(types), (scenario.name, types)
            assert types.count("call.ended") == 1
            assert types.count("call.missed") == (1 if scenario.expected.missed else 0)
        assert receiver.duplicates == []
        assert receiver.bad_signatures == 0
    finally:
        daemon.stop()


def test_read_api_filters_and_pages(database_url: str, tmp_path: Path, receiver: WebhookReceiver) -> None:
    daemon = start_daemon(database_url, tmp_path, receiver)
    try:
        poster = Poster(daemon.mango_url, API_KEY, API_SALT)
        built = [scenarios.build(name, seed=i + 500) for i, name in enumerate(scenarios.SCENARIO_NAMES)]
        for scenario in built:
            poster.play(scenario.notifications)
        for scenario in built:
            wait_closed(daemon, scenario.entry_id)
        missed = daemon.api("/api/calls", status="missed").json()["items"]
        assert {c["entry_id"] for c in missed} == {s.entry_id for s in built if s.expected.missed}
        pages, cursor = [], None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = daemon.api("/api/calls", **params).json()
            pages.extend(page["items"])
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert sorted(c["entry_id"] for c in pages) == sorted(s.entry_id for s in built)
        by_number = daemon.api("/api/calls", number="+7 (916) 123-45-67").json()["items"]
        assert by_number, "the customer's number in another format still matches"
        assert daemon.api("/api/calls", status="bogus").status_code == 400
        assert daemon.api("/api/calls/not-a-call").status_code == 404
        unauthorised = daemon.api("/api/calls")
        assert unauthorised.status_code == 200
        import requests

        assert requests.get(f"{daemon.url}/api/calls", timeout=5).status_code == 401
        metrics = requests.get(f"{daemon.url}/metrics", timeout=5).text
        assert "callbridge_calls" in metrics
    finally:
        daemon.stop()
