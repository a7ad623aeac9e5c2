"""Live popups end to end: the simulator rings `callbridge run`, WebSocket clients with employee tokens
receive exactly their calls, in order, with the caller card from the demo connector."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator.poster import Poster
from tests.daemon import API_KEY, API_SALT, CALLBRIDGE, Daemon
from tests.fakes.realtime_client import DEMO_NAME, Client, demo_env


def cli_token(daemon: Daemon, *args: str) -> str:
    """A token exactly as an administrator gets one: `callbridge token ...`, its last line."""
    out = subprocess.run(
        [CALLBRIDGE, "token", *args],
        env=daemon.env,
        cwd=daemon.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def ws_port(daemon: Daemon) -> int:
    return int(daemon.env["CALLBRIDGE_WS_PORT"])


@pytest.fixture
def daemon(database_url: str, tmp_path: Path) -> Iterator[Daemon]:
    instance = Daemon(database_url, tmp_path, env=demo_env()).start()
    yield instance
    instance.stop()


def split_at_ringing(scenario: scenarios.Scenario) -> tuple[list, list]:
    """The notifications up to the last employee leg's Appeared, and the rest."""
    notes = list(scenario.notifications)
    last = max(
        i
        for i, n in enumerate(notes)
        if n.path == "events/call"
        and n.payload.get("call_state") == "Appeared"
        and n.payload.get("location") == "abonent"
    )
    return notes[: last + 1], notes[last + 1 :]


def answer_index(notes: list) -> int | None:
    for i, n in enumerate(notes):
        if (
            n.path == "events/call"
            and n.payload.get("call_state") == "Connected"
            and n.payload.get("location") == "abonent"
        ):
            return i
    return None


def play_in_steps(poster: Poster, scenario: scenarios.Scenario, observer: Client) -> None:
    """Ringing, answer, the rest, each step only after `observer` saw the previous one.

    The tracker drops a ringing whose leg has moved on by the time it folds it (and an answer after the
    close), as it should; a test that wants every message must not hand it all events at once.
    """
    entry = scenario.entry_id
    ringing, rest = split_at_ringing(scenario)
    assert not poster.play(ringing).errors
    observer.wait_for("call.ringing", lambda m: m["entry_id"] == entry)
    answered = answer_index(rest)
    if answered is not None:
        assert not poster.play(rest[: answered + 1]).errors
        observer.wait_for("call.answered", lambda m: m["entry_id"] == entry)
        rest = rest[answered + 1 :]
    assert not poster.play(rest).errors
    observer.wait_for("call.ended", lambda m: m["entry_id"] == entry)


def test_ringing_reaches_only_the_ringing_employee_with_the_card_then_answered_and_ended_in_order(
    daemon: Daemon,
) -> None:
    port = ws_port(daemon)
    alice = Client(port, cli_token(daemon, "--extension", "101"))
    bob = Client(port, cli_token(daemon, "--extension", "102"))
    try:
        hello = alice.wait_for("hello")
        assert hello["identity"]["extension"] == "101"
        scenario = scenarios.build("incoming_answered", seed=1, extensions=("101",))
        play_in_steps(Poster(daemon.mango_url, API_KEY, API_SALT), scenario, alice)

        ringing = alice.wait_for("call.ringing")
        assert ringing["entry_id"] == scenario.entry_id
        assert ringing["extension"] == "101"
        assert ringing["number"] == "+79161234567"
        assert ringing["card"]["name"] == DEMO_NAME
        assert ringing["card"]["complete"] is True
        assert ringing["card"]["responsible"]["extension"] == "101"
        assert ringing["card"]["deals"][0]["title"] == "Kitchen set"
        assert ringing["card"]["orders"][0]["number"] == "A-1001"
        alice.wait_for("call.ended")
        types = [m["type"] for m in alice.events() if m["entry_id"] == scenario.entry_id]
        assert types == ["call.ringing", "call.answered", "call.ended"]
        ids = [m["id"] for m in alice.events()]
        assert ids == sorted(ids)
        assert alice.wait_for("call.answered")["extension"] == "101"
        time.sleep(0.5)
        assert bob.events() == [], "102 is not part of this call"
    finally:
        alice.close()
        bob.close()


def test_group_call_answered_elsewhere_closes_the_other_popup_and_supervisor_sees_all(
    daemon: Daemon,
) -> None:
    port = ws_port(daemon)
    alice = Client(port, cli_token(daemon, "--extension", "101"))
    bob = Client(port, cli_token(daemon, "--extension", "102"))
    carol = Client(port, cli_token(daemon, "--extension", "103"))
    boss = Client(port, cli_token(daemon, "--supervisor"))
    try:
        scenario = scenarios.build("ring_group_second_answers", seed=2, extensions=("101", "102"))
        play_in_steps(Poster(daemon.mango_url, API_KEY, API_SALT), scenario, boss)
        assert alice.wait_for("call.ringing")["card"]["name"] == DEMO_NAME
        assert bob.wait_for("call.ringing")["extension"] == "102"
        answered = alice.wait_for("call.answered")
        assert answered["extension"] == "102", "101's popup learns that 102 took the call"
        bob.wait_for("call.ended")
        alice.wait_for("call.ended")
        supervisor_types = [m["type"] for m in boss.events()]
        assert supervisor_types.count("call.ringing") == 2
        assert "call.ended" in supervisor_types
        time.sleep(0.3)
        assert carol.events() == []
    finally:
        for client in (alice, bob, carol, boss):
            client.close()


def test_missed_call_reaches_every_employee_it_rang(daemon: Daemon) -> None:
    port = ws_port(daemon)
    alice = Client(port, cli_token(daemon, "--extension", "101"))
    try:
        scenario = scenarios.build("incoming_missed", seed=3, extensions=("101", "102"))
        play_in_steps(Poster(daemon.mango_url, API_KEY, API_SALT), scenario, alice)
        missed = alice.wait_for("call.missed")
        assert missed["entry_id"] == scenario.entry_id and missed["missed"] is True
        types = [m["type"] for m in alice.events()]
        assert types.index("call.ringing") < types.index("call.ended") < types.index("call.missed")
    finally:
        alice.close()


def test_card_later_than_the_deadline_follows_as_call_card(database_url: str, tmp_path: Path) -> None:
    daemon = Daemon(
        database_url, tmp_path, env=demo_env(delay_ms=1200, CALLBRIDGE_LOOKUP_DEADLINE_MS="200")
    ).start()
    try:
        alice = Client(ws_port(daemon), cli_token(daemon, "--extension", "101"))
        scenario = scenarios.build("incoming_answered", seed=4, extensions=("101",))
        ringing_part, rest = split_at_ringing(scenario)
        poster = Poster(daemon.mango_url, API_KEY, API_SALT)
        assert not poster.play(ringing_part).errors
        ringing = alice.wait_for("call.ringing")
        assert ringing["card_pending"] is True
        assert ringing["card"] is None or ringing["card"]["complete"] is False
        card = alice.wait_for("call.card", timeout=10)
        assert ringing["_received"] < card["_received"], "the ringing did not wait for the slow CRM"
        assert card["entry_id"] == scenario.entry_id
        assert card["card"]["name"] == DEMO_NAME and card["card"]["complete"] is True
        assert not poster.play(rest).errors
        alice.wait_for("call.ended")
        # The next call from the same number finds the card in the cache: no wait, full card at once.
        again = scenarios.build("incoming_answered", seed=5, extensions=("101",))
        assert not poster.play(split_at_ringing(again)[0]).errors
        second = alice.wait_for("call.ringing", lambda m: m["entry_id"] == again.entry_id)
        assert second["card"]["name"] == DEMO_NAME and second["card_pending"] is False
        alice.close()
    finally:
        daemon.stop()
