"""Reconnect and resume: a client that comes back with its last event id loses no popup."""

from __future__ import annotations

from pathlib import Path

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator.poster import Poster
from bridge.realtime.auth import EMPLOYEE, SUPERVISOR, Identity
from bridge.realtime.buffer import CROSS_INSTANCE_MARGIN_MS, ResumeBuffer, Sent
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes.realtime_client import Client, demo_env
from tests.test_realtime_e2e import answer_index, cli_token, play_in_steps, split_at_ringing, ws_port


def test_resume_after_a_disconnect_replays_what_was_missed_in_order(
    database_url: str, tmp_path: Path
) -> None:
    daemon = Daemon(database_url, tmp_path, env=demo_env()).start()
    try:
        port = ws_port(daemon)
        token = cli_token(daemon, "--extension", "101")
        poster = Poster(daemon.mango_url, API_KEY, API_SALT)
        first = scenarios.build("incoming_answered", seed=11, extensions=("101",))
        second = scenarios.build("ring_group_second_answers", seed=12, extensions=("101", "102"))
        third = scenarios.build("incoming_answered", seed=13, extensions=("101",))

        observer = Client(port, cli_token(daemon, "--supervisor"))  # paces the steps below
        client = Client(port, token)
        ringing_part, rest = split_at_ringing(first)
        assert not poster.play(ringing_part).errors
        client.wait_for("call.ringing")
        last_id = client.last_id
        seen_before = [m["key"] for m in client.events()]
        client.close()

        # While the page is away: the first call is answered and ends; a second call rings and is missed
        # by 101 (102 answers); a third call starts ringing.
        answer = answer_index(rest)
        assert answer is not None
        assert not poster.play(rest[: answer + 1]).errors
        observer.wait_for("call.answered", lambda m: m["entry_id"] == first.entry_id)
        assert not poster.play(rest[answer + 1 :]).errors
        observer.wait_for("call.ended", lambda m: m["entry_id"] == first.entry_id)
        play_in_steps(poster, second, observer)
        assert not poster.play(split_at_ringing(third)[0]).errors
        observer.wait_for("call.ringing", lambda m: m["entry_id"] == third.entry_id)

        back = Client(port, token, last_event_id=last_id)
        hello = back.wait_for("hello")
        back.wait_for("call.ringing", lambda m: m["entry_id"] == third.entry_id)
        assert hello["resumed_from"] == last_id and hello["gap"] is False
        replayed = back.events()
        assert hello["replayed"] == len(replayed)
        assert not set(seen_before) & {m["key"] for m in replayed}, "nothing seen before comes again"
        by_call = {
            entry: [m["type"] for m in replayed if m["entry_id"] == entry]
            for entry in (first.entry_id, second.entry_id, third.entry_id)
        }
        assert by_call[first.entry_id] == ["call.answered", "call.ended"]
        assert by_call[second.entry_id][0] == "call.ringing" and by_call[second.entry_id][-1] == "call.ended"
        assert by_call[third.entry_id] == ["call.ringing"]
        assert [m["id"] for m in replayed] == sorted(m["id"] for m in replayed)

        # Live messages follow the replay on the same connection.
        assert not poster.play(split_at_ringing(third)[1]).errors
        back.wait_for("call.ended", lambda m: m["entry_id"] == third.entry_id)
        fresh = Client(port, token)  # no last id: no replay
        assert fresh.wait_for("hello")["replayed"] == 0
        back.close()
        fresh.close()
        observer.close()
    finally:
        daemon.stop()


def _sent(message_id: int, at: float, *extensions: str) -> Sent:
    return Sent(message_id, at, frozenset(extensions), str(message_id).encode())


def test_buffer_keeps_five_minutes_and_filters_by_extension() -> None:
    now = [1000.0]
    buffer = ResumeBuffer(window=300, clock=lambda: now[0])
    base = 1_700_000_000_000_000
    buffer.add(_sent(base + 1, 1000.0, "101"))
    buffer.add(_sent(base + 2, 1100.0, "102"))
    buffer.add(_sent(base + 3, 1200.0, "101", "102"))
    alice = Identity(EMPLOYEE, "101", 0)
    boss = Identity(SUPERVISOR, None, 0)
    items, gap = buffer.since(base + 1, alice)
    assert [i.id for i in items] == [base + 3] and not gap
    assert [i.id for i in buffer.since(base + 1, boss)[0]] == [base + 2, base + 3]
    now[0] = 1350.0  # the first message is older than five minutes now
    items, gap = buffer.since(base + 1, alice)
    assert [i.id for i in items] == [base + 3] and not gap, "the dropped one had been seen"
    items, gap = buffer.since(base, alice)
    assert [i.id for i in items] == [base + 3] and gap, "a message the client never saw is gone"
    # An id from another instance: replay by time, with a margin; the client drops duplicates by key.
    items, gap = buffer.since(base + 2 + CROSS_INSTANCE_MARGIN_MS * 1000, boss)
    assert [i.id for i in items] == [base + 3]
