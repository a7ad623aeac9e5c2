"""The command journal on the real store: record, sent, the asynchronous result, the timeout sweep and the
legs a command caused (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from sqlalchemy import Engine, insert, select

from bridge.commands import journal
from bridge.commands.journal import CommandJournal
from bridge.processing.processor import EventProcessor
from bridge.store.schema import calls, commands, legs
from tests.waiting import wait_until

T0 = 1_760_000_000.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def row(engine: Engine, command_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(commands).where(commands.c.command_id == command_id)).one()


def result(engine: Engine, book: CommandJournal, command_id: str, code: int | None) -> bool:
    with engine.begin() as conn:
        return book.result(conn, command_id, code)


def test_record_then_sent_then_result(engine: Engine) -> None:
    clock = Clock()
    book = CommandJournal(engine, clock=clock)
    command_id = book.record("commands/callback", {"extension": "101", "to_number": "79161234567"})
    first = row(engine, command_id)
    assert (first.path, first.status, first.sync_result, first.async_result) == (
        "commands/callback",
        journal.SENDING,
        None,
        None,
    )
    assert json.loads(first.payload) == {"extension": "101", "to_number": "79161234567"}
    assert first.created_at == first.updated_at == T0

    clock.now += 1
    book.sent(command_id, journal.ACCEPTED, 1000)
    accepted = row(engine, command_id)
    assert (accepted.status, accepted.sync_result, accepted.updated_at) == (journal.ACCEPTED, 1000, T0 + 1)

    clock.now += 5
    assert result(engine, book, command_id, 1000) is True
    done = row(engine, command_id)
    assert (done.status, done.async_result, done.updated_at, done.created_at) == (
        journal.DONE,
        1000,
        T0 + 6,
        T0,
    )


def test_a_result_other_than_1000_fails_the_command(engine: Engine) -> None:
    book = CommandJournal(engine, clock=Clock())
    command_id = book.record("commands/callback_group", {"from": "200"}, command_id="wcb-1-abc")
    assert command_id == "wcb-1-abc"
    book.sent(command_id, journal.SENT, None)
    assert result(engine, book, command_id, 3101) is True
    failed = row(engine, command_id)
    assert (failed.status, failed.sync_result, failed.async_result) == (journal.FAILED, None, 3101)


def test_record_inside_the_callers_transaction_rolls_back_with_it(engine: Engine) -> None:
    book = CommandJournal(engine, clock=Clock())
    with pytest.raises(RuntimeError), engine.begin() as conn:
        book.record("commands/callback_group", {}, conn=conn, command_id="rolled-back")
        raise RuntimeError("the claim failed")
    with engine.begin() as conn:
        book.record("commands/callback_group", {}, conn=conn, command_id="kept")
    with engine.connect() as conn:
        ids = conn.execute(select(commands.c.command_id)).scalars().all()
    assert ids == ["kept"]


def test_sent_refuses_a_status_that_is_not_an_outcome_of_sending(engine: Engine) -> None:
    book = CommandJournal(engine, clock=Clock())
    command_id = book.record("commands/callback", {})
    with pytest.raises(ValueError):
        book.sent(command_id, journal.DONE, 1000)
    assert row(engine, command_id).status == journal.SENDING


def test_a_result_for_an_unknown_command_is_ignored(engine: Engine) -> None:
    book = CommandJournal(engine, clock=Clock())
    assert result(engine, book, "nobody-sent-this", 1000) is False
    with engine.connect() as conn:
        assert conn.execute(select(commands)).all() == []


def test_a_duplicate_result_keeps_the_first(engine: Engine) -> None:
    clock = Clock()
    book = CommandJournal(engine, clock=clock)
    command_id = book.record("commands/callback", {})
    book.sent(command_id, journal.ACCEPTED, 1000)
    clock.now += 3
    assert result(engine, book, command_id, 1000) is True
    clock.now += 3
    assert result(engine, book, command_id, 1000) is False
    assert result(engine, book, command_id, 3101) is False
    kept = row(engine, command_id)
    assert (kept.status, kept.async_result, kept.updated_at) == (journal.DONE, 1000, T0 + 3)


def test_a_result_that_beats_the_synchronous_answer_keeps_its_status(engine: Engine) -> None:
    book = CommandJournal(engine, clock=Clock())
    command_id = book.record("commands/callback", {})
    assert result(engine, book, command_id, 1000) is True
    book.sent(command_id, journal.ACCEPTED, 1000)
    both = row(engine, command_id)
    assert (both.status, both.sync_result, both.async_result) == (journal.DONE, 1000, 1000)


def test_commands_without_a_result_time_out_after_the_timeout(engine: Engine) -> None:
    clock = Clock()
    book = CommandJournal(engine, clock=clock, timeout=120.0)
    accepted = book.record("commands/callback", {}, command_id="accepted")
    book.sent(accepted, journal.ACCEPTED, 1000)
    maybe = book.record("commands/callback_group", {}, command_id="maybe-sent")
    book.sent(maybe, journal.SENT, None)
    refused = book.record("commands/callback", {}, command_id="refused")
    book.sent(refused, journal.FAILED, 3101)
    answered = book.record("commands/callback", {}, command_id="answered")
    book.sent(answered, journal.ACCEPTED, 1000)
    book.record("commands/callback", {}, command_id="still-sending")

    clock.now += 60
    assert result(engine, book, answered, 1000) is True
    later = book.record("commands/callback", {}, command_id="later")
    book.sent(later, journal.ACCEPTED, 1000)

    clock.now = T0 + 119
    assert book.time_out() == 0
    clock.now = T0 + 120
    assert book.time_out() == 2
    assert book.time_out() == 0
    statuses = {cid: row(engine, cid).status for cid in (accepted, maybe, refused, answered, later)}
    assert statuses == {
        accepted: journal.TIMED_OUT,
        maybe: journal.TIMED_OUT,
        refused: journal.FAILED,
        answered: journal.DONE,
        later: journal.ACCEPTED,
    }
    assert row(engine, accepted).updated_at == T0 + 120
    assert row(engine, "still-sending").status == journal.SENDING

    clock.now = T0 + 180
    assert book.time_out() == 1
    assert row(engine, later).status == journal.TIMED_OUT

    # Mango's result, however late, still says what happened.
    assert result(engine, book, accepted, 1000) is True
    assert (row(engine, accepted).status, row(engine, accepted).async_result) == (journal.DONE, 1000)


def test_the_timeout_must_be_positive(engine: Engine) -> None:
    with pytest.raises(ValueError):
        CommandJournal(engine, timeout=0)


def test_caused_finds_the_legs_carrying_the_command_id_and_their_call(engine: Engine) -> None:
    book = CommandJournal(engine, clock=Clock())
    command_id = book.record("commands/callback_group", {"from": "200", "to": "79161234567"})
    with engine.connect() as conn:
        nothing = book.caused(conn, command_id)
    assert (nothing.legs, nothing.entry_id, nothing.call_closed) == ((), None, False)

    with engine.begin() as conn:
        conn.execute(
            insert(legs),
            [
                {
                    "call_id": "leg-1",
                    "entry_id": "entry-1",
                    "state": "Connected",
                    "seq": 1,
                    "from_extension": "201",
                    "to_number": "79161234567",
                    "command_id": command_id,
                    "connected_at": T0 + 4,
                },
                {
                    "call_id": "leg-2",
                    "entry_id": "entry-1",
                    "state": "Appeared",
                    "seq": 2,
                    "from_extension": None,
                    "to_number": "79161234567",
                    "command_id": None,
                    "connected_at": None,
                },
            ],
        )
    with engine.connect() as conn:
        open_call = book.caused(conn, command_id)
    [leg] = open_call.legs
    assert (leg.entry_id, leg.state, leg.from_extension, leg.to_number, leg.connected_at) == (
        "entry-1",
        "Connected",
        "201",
        "79161234567",
        T0 + 4,
    )
    assert (open_call.entry_id, open_call.call_closed) == ("entry-1", False)

    with engine.begin() as conn:
        conn.execute(insert(calls).values(entry_id="entry-1", status="ended", closed=True, updated_at=T0 + 9))
        closed = book.caused(conn, command_id)
        assert book.caused(conn, "another-command").legs == ()
    assert (closed.entry_id, closed.call_closed) == ("entry-1", True)


def test_the_processors_periodic_sweep_times_commands_out(engine: Engine) -> None:
    clock = Clock()
    processor = EventProcessor(engine, {}, clock=clock, command_timeout=30.0)
    command_id = processor.journal.record("commands/callback", {})
    processor.journal.sent(command_id, journal.ACCEPTED, 1000)
    clock.now += 31
    stop = threading.Event()
    worker = threading.Thread(target=processor.run_forever, args=(stop,), kwargs={"sweep_every": 0.0})
    worker.start()
    try:
        wait_until(lambda: row(engine, command_id).status == journal.TIMED_OUT, "the command timed out")
    finally:
        stop.set()
        processor.wake()
        worker.join(10)
    assert not worker.is_alive()
