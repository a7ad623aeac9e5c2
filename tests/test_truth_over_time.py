"""Calls stay truthful over time, through `callbridge run` and the real store (SQLite and PostgreSQL):

- a call known only from its recording is not listed as ringing and pops nothing up;
- a call whose final events never come is closed as ended, incomplete, after `tracker.max_call_seconds`,
  delivered once; its late final events complete it without a second `call.ended`;
- amoCRM popups go out though the host's clock is minutes off Mango's timestamps;
- after a transfer the summary names, `answered_by` stays the first employee who answered.
"""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.parse import parse
from bridge.pbx.mango.receiver import raw_record
from bridge.pbx.mango.simulator.poster import Poster
from bridge.pbx.timeout import TIMEOUT_PATH
from bridge.processing.processor import EventProcessor
from bridge.processing.stale_calls import StaleCallSweeper
from bridge.store.engine import make_engine
from bridge.store.raw_events import insert_raw_events
from bridge.store.schema import calls, outbox, raw_events
from bridge.store.write_lock import write_transaction
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes.amocrm import FakeAmoCrm
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_amocrm_e2e import KNOWN_A, LLT, popup, requests_since
from tests.test_amocrm_e2e import start as start_with_amocrm
from tests.waiting import wait_until

WEBHOOK_SECRET = "webhook-secret-0123456789abcdef"
Notes = Sequence[scenarios.Notification]


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    instance = WebhookReceiver(secret=WEBHOOK_SECRET).start()
    yield instance
    instance.stop()


@pytest.fixture
def daemon_factory(database_url: str, tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def make(receiver: WebhookReceiver, **env: str) -> Daemon:
        daemon = Daemon(
            database_url,
            tmp_path,
            env={
                "CALLBRIDGE_CONNECTORS_WEBHOOK_URL": receiver.url,
                "CALLBRIDGE_CONNECTORS_WEBHOOK_SECRET": WEBHOOK_SECRET,
                **env,
            },
        )
        started.append(daemon)
        return daemon.start()

    yield make
    for daemon in started:
        daemon.stop()


def get_call(daemon: Daemon, entry_id: str) -> dict | None:
    response = daemon.api(f"/api/calls/{urllib.parse.quote(entry_id, safe='')}")
    return response.json() if response.status_code == 200 else None


def wait_call(daemon: Daemon, entry_id: str, check: Callable[[dict], bool], what: str) -> dict:
    found: list[dict] = []

    def ready() -> bool:
        call = get_call(daemon, entry_id)
        found[:] = [call] if call else []
        return bool(call and check(call))

    try:
        wait_until(ready, what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {found}") from None
    return found[0]


def post(daemon: Daemon, notes: Notes) -> None:
    report = Poster(daemon.mango_url, API_KEY, API_SALT).play(notes)
    assert not report.errors, report.errors


def split_after_answer(notes: Notes) -> tuple[list, list]:
    """The notifications up to the employee's answer (included), and the rest."""
    for i, note in enumerate(notes):
        p = note.payload
        if note.path == "events/call" and p.get("location") == "abonent" and p["call_state"] == "Connected":
            return list(notes[: i + 1]), list(notes[i + 1 :])
    raise AssertionError("the scenario has no answer")


def outbox_types(database_url: str, entry_id: str) -> list[str]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            query = select(outbox.c.event_type).where(outbox.c.entry_id == entry_id).order_by(outbox.c.id)
            return list(conn.execute(query).scalars())
    finally:
        engine.dispose()


def types_for(receiver: WebhookReceiver, entry_id: str) -> list[str]:
    return [body["type"] for body in receiver.accepted_for(entry_id)]


# ------------------------------------------------------------------------------ a call with no legs


def test_a_recording_only_call_is_not_listed_as_ringing_and_pops_nothing_up(
    database_url: str, daemon_factory: Callable[..., Daemon], receiver: WebhookReceiver
) -> None:
    daemon = daemon_factory(receiver)
    scenario = scenarios.build("incoming_answered", seed=41, extensions=("101",))
    recording_notes = [
        n for n in scenario.notifications if n.path.startswith(("events/recording", "events/record"))
    ]
    assert recording_notes
    post(daemon, recording_notes)

    call = wait_call(daemon, scenario.entry_id, lambda c: bool(c["recordings"]), "the recording-only call")
    assert call["status"] == "unknown" and not call["closed"] and call["incomplete"] is False
    ringing = daemon.api("/api/calls", status="ringing", limit="200").json()["items"]
    assert scenario.entry_id not in {item["entry_id"] for item in ringing}
    # the call's row and its outbox rows commit in one transaction: nothing was queued for any connector
    assert outbox_types(database_url, scenario.entry_id) == []
    assert types_for(receiver, scenario.entry_id) == []

    # Only callbridge writes its timeout event: signed by Mango's key or not, the receiver refuses the path.
    forged = scenarios.Notification(TIMEOUT_PATH, {"entry_id": scenario.entry_id, "at": time.time()})
    refused = Poster(daemon.mango_url, API_KEY, API_SALT).post(forged)
    assert refused.status == 404 and "unknown Mango notification path" in refused.body
    assert get_call(daemon, scenario.entry_id)["status"] == "unknown"


# ------------------------------------------------------------------ a call whose final events never come


def test_a_silent_call_closes_ended_incomplete_once_and_late_final_events_do_not_end_it_again(
    daemon_factory: Callable[..., Daemon], receiver: WebhookReceiver
) -> None:
    daemon = daemon_factory(receiver, CALLBRIDGE_TRACKER_MAX_CALL_SECONDS="2")
    scenario = scenarios.build("incoming_answered", seed=42, extensions=("101",))
    head, tail = split_after_answer(scenario.notifications)
    entry = scenario.entry_id
    post(daemon, head)
    answered = wait_call(daemon, entry, lambda c: c["status"] == "answered" or c["closed"], "the answer")
    assert answered["status"] == "answered", "the call closed before it was answered: the test is too slow"

    call = wait_call(daemon, entry, lambda c: c["closed"], "the timeout close")
    assert (call["status"], call["incomplete"], call["missed"]) == ("ended", True, False)
    assert call["answered_by"] == "101"
    listed = daemon.api("/api/calls", limit="200").json()["items"]
    assert next(item for item in listed if item["entry_id"] == entry)["incomplete"] is True
    wait_until(lambda: "call.ended" in types_for(receiver, entry), "call.ended at the webhook")
    [ended] = [b for b in receiver.accepted_for(entry) if b["type"] == "call.ended"]
    assert ended["data"]["extra"]["incomplete"] is True and ended["data"]["extra"]["status"] == "ended"

    # The final events arrive after all: the call is completed, its recording delivered, no second end.
    post(daemon, tail)
    summary = next(n.payload for n in tail if n.path == "events/summary")
    done = wait_call(daemon, entry, lambda c: not c["incomplete"], "the late final events")
    assert done["status"] == "ended" and done["ended_at"] == summary["end_time"]
    wait_until(lambda: "call.recording_ready" in types_for(receiver, entry), "the recording delivered")
    types = types_for(receiver, entry)
    assert types.count("call.ended") == 1 and "call.missed" not in types
    assert [r.body["type"] for r in receiver.requests if r.body.get("entry_id") == entry].count(
        "call.ended"
    ) == 1
    assert receiver.duplicates == []


def test_the_sweeper_stores_one_timeout_per_silent_open_call(engine: Engine) -> None:
    """Real store, injected clock: only open calls silent for the maximum get the event, and only once."""
    now = [1_800_000_000.0]
    woken: list[int] = []

    def store(notes: Notes, at: float) -> None:
        records = [
            raw_record(n.path, parse(n.path, n.payload), json.dumps(n.payload), received_at=at) for n in notes
        ]
        with write_transaction(engine) as conn:
            insert_raw_events(conn, records)

    silent = scenarios.build("incoming_answered", seed=43, extensions=("101",))
    finished = scenarios.build("incoming_missed", seed=44)
    recent = scenarios.build("incoming_answered", seed=45, extensions=("102",))
    store(split_after_answer(silent.notifications)[0], now[0])
    store(finished.notifications, now[0])
    store(split_after_answer(recent.notifications)[0], now[0] + 50)
    processor = EventProcessor(engine, {}, clock=lambda: now[0] + 50)
    while processor.run_once():
        pass
    sweeper = StaleCallSweeper(
        engine, max_call_seconds=100, clock=lambda: now[0], on_written=lambda: woken.append(1)
    )

    now[0] += 99
    assert sweeper.run_once() == 0
    now[0] += 1
    assert sweeper.run_once() == 1 and woken == [1]
    assert sweeper.run_once() == 0, "a second sweep (or another instance) stores nothing again"
    with engine.connect() as conn:
        stored = conn.execute(select(raw_events.c.entry_id).where(raw_events.c.path == TIMEOUT_PATH)).all()
    assert [row.entry_id for row in stored] == [silent.entry_id]

    processor = EventProcessor(engine, {}, clock=lambda: now[0])
    while processor.run_once():
        pass
    with engine.connect() as conn:
        rows = {
            r.entry_id: r for r in conn.execute(select(calls.c.entry_id, calls.c.status, calls.c.incomplete))
        }
    assert (rows[silent.entry_id].status, rows[silent.entry_id].incomplete) == ("ended", True)
    assert (rows[finished.entry_id].status, rows[finished.entry_id].incomplete) == ("missed", False)
    assert (rows[recent.entry_id].status, rows[recent.entry_id].incomplete) == ("answered", False)
    assert sweeper.run_once() == 0


# ----------------------------------------------------------------------- amoCRM with a skewed clock


@pytest.fixture
def fake() -> Iterator[FakeAmoCrm]:
    with FakeAmoCrm(long_lived_token=LLT) as server:
        server.add_contact("Иван Петров", ["8 (916) 123-45-67"], responsible_user_id=1001)
        yield server


@pytest.mark.parametrize("skew", [-130, 120], ids=["mango-2-min-behind", "mango-2-min-ahead"])
def test_amocrm_popup_goes_out_though_mangos_clock_is_minutes_off(
    database_url: str, tmp_path: Path, fake: FakeAmoCrm, skew: int
) -> None:
    """Mango's timestamps are `skew` seconds off the host's clock; the popup's age is callbridge's own."""
    daemon = start_with_amocrm(database_url, tmp_path, fake)
    try:
        scenario = scenarios.build(
            "incoming_answered", seed=46, start=int(time.time()) + skew, customer=KNOWN_A, extensions=("101",)
        )
        head, tail = split_after_answer(scenario.notifications)
        mark = len(fake.requests)
        post(daemon, head[:-1])  # everything up to the ringing; the answer follows once the popup is out
        wait_until(lambda: popup(KNOWN_A, 1001) in requests_since(fake, mark), "the amoCRM popup")
        post(daemon, [head[-1], *tail])
        wait_until(lambda: len(fake.calls) == 1, "the call log")
        assert [r for r in requests_since(fake, mark) if r[1] == "/api/v2/events"] == [popup(KNOWN_A, 1001)]
    finally:
        daemon.stop()


# ------------------------------------------------------------------------------------------ transfers


@pytest.mark.parametrize("name", ["blind_transfer", "consultative_transfer"])
def test_answered_by_stays_the_first_answerer_when_the_summary_names_the_transfer_target(
    daemon_factory: Callable[..., Daemon], receiver: WebhookReceiver, name: str
) -> None:
    daemon = daemon_factory(receiver)
    scenario = scenarios.build(name, seed=47, extensions=("101", "102"))
    first, target = scenario.expected.answered_by, scenario.expected.transferred_to
    assert (first, target) == ("101", "102")
    notes = []
    for note in scenario.notifications:
        if note.path == "events/summary":  # Mango names the employee who talked last
            to = {**note.payload["to"], "extension": target, "number": scenarios.sip_uri(target)}
            note = scenarios.Notification(note.path, {**note.payload, "to": to})
        notes.append(note)
    post(daemon, notes)

    call = wait_call(daemon, scenario.entry_id, lambda c: c["closed"], "the transferred call's end")
    assert call["answered_by"] == first and call["responsible"] == target
    assert target in {leg["to_extension"] for leg in call["legs"]}
    listed = daemon.api("/api/calls", extension=first, limit="200").json()["items"]
    assert next(item for item in listed if item["entry_id"] == scenario.entry_id)["answered_by"] == first
    wait_until(lambda: "call.ended" in types_for(receiver, scenario.entry_id), "call.ended at the webhook")
    [ended] = [b for b in receiver.accepted_for(scenario.entry_id) if b["type"] == "call.ended"]
    assert ended["data"]["extension"] == first and ended["data"]["extra"]["transferred_to"] == target
