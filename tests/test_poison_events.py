"""Poison events never stop processing (through `callbridge run`, on SQLite and PostgreSQL).

Absurd values are refused at the receiver with the reason; an event that gets past it anyway (a corrupt
row in `raw_events`, a value only the database refuses) is quarantined while later calls are folded and
delivered; the quarantine survives a restart and shows in `/metrics`, the panel and the CLI; a connector
whose `handle()` raises holds up no other call; a refused event in a group commit fails alone.
"""

from __future__ import annotations

import json
import subprocess
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine, select, text, update

from bridge.pbx.mango.signing import signed_form
from bridge.store.engine import make_engine
from bridge.store.raw_events import RawRecord, insert_raw_events
from bridge.store.schema import raw_events
from tests.daemon import API_KEY, API_SALT, CALLBRIDGE, Daemon
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_admin_support import PASSWORD, panel_session
from tests.waiting import wait_until

SECRET = "webhook-secret-0123456789abcdef"
T0 = 1_700_000_000


def leg(entry_id: str, seq: int, state: str, timestamp: int, call_id: str | None = None) -> dict[str, Any]:
    return {
        "entry_id": entry_id,
        "call_id": call_id or f"{entry_id}-leg",
        "timestamp": timestamp,
        "seq": seq,
        "call_state": state,
        "location": "abonent",
        "from": {"number": "79161234567"},
        "to": {"extension": "101", "number": "74951234567", "line_number": "74951234567"},
    }


def summary(entry_id: str) -> dict[str, Any]:
    return {
        "entry_id": entry_id,
        "call_direction": 1,
        "from": {"number": "79161234567"},
        "to": {"extension": "101"},
        "line_number": "74951234567",
        "create_time": T0,
        "forward_time": T0,
        "talk_time": T0 + 1,
        "end_time": T0 + 5,
        "entry_result": 1,
        "disconnect_reason": 1110,
    }


def send(daemon: Daemon, path: str, payload: object) -> requests.Response:
    return requests.post(
        f"{daemon.mango_url}/{path}", data=signed_form(API_KEY, API_SALT, payload), timeout=15
    )


def play_call(daemon: Daemon, entry_id: str) -> None:
    """A whole answered call: ringing, answered, hung up, and Mango's summary."""
    for seq, state in enumerate(("Appeared", "Connected", "Disconnected"), start=1):
        response = send(daemon, "events/call", leg(entry_id, seq, state, T0 + seq))
        assert response.status_code == 200, response.text
    assert send(daemon, "events/summary", summary(entry_id)).status_code == 200


def delivered_types(receiver: WebhookReceiver, entry_id: str) -> set[str]:
    return {body["type"] for body in receiver.accepted_for(entry_id)}


def wait_delivered(receiver: WebhookReceiver, entry_id: str) -> None:
    wait_until(lambda: "call.ended" in delivered_types(receiver, entry_id), f"call.ended of {entry_id}")


def cli(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CALLBRIDGE, *args], env=daemon.env, cwd=daemon.workdir, capture_output=True, text=True, timeout=60
    )


def raw_state(engine: Engine, row_id: int) -> Any:
    with engine.connect() as conn:
        query = select(raw_events.c.processed_at, raw_events.c.quarantined_at, raw_events.c.error)
        return conn.execute(query.where(raw_events.c.id == row_id)).one()


def corrupt_row(engine: Engine, entry_id: str, payload: str, key: str) -> int:
    """A raw event written straight through the store, as a damaged or hand-edited row could be."""
    record = RawRecord("events/call", f"corrupt:{key}", entry_id, payload, time.time())
    with engine.begin() as conn:
        insert_raw_events(conn, [record])
        return conn.execute(
            select(raw_events.c.id).where(raw_events.c.dedup_key == record.dedup_key)
        ).scalar_one()


def metric(daemon: Daemon, line_start: str) -> float:
    body = requests.get(f"{daemon.url}/metrics", timeout=10).text
    values = [line.split()[-1] for line in body.splitlines() if line.startswith(line_start)]
    assert values, f"{line_start} not in /metrics"
    return float(values[0])


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    instance = WebhookReceiver(secret=SECRET).start()
    yield instance
    instance.stop()


@pytest.fixture
def store(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def webhook_env(receiver: WebhookReceiver, name: str = "webhook") -> dict[str, str]:
    prefix = f"CALLBRIDGE_CONNECTORS_{name.upper()}"
    return {f"{prefix}_URL": receiver.url, f"{prefix}_SECRET": SECRET}


@pytest.fixture
def daemon(database_url: str, tmp_path: Path, receiver: WebhookReceiver) -> Iterator[Daemon]:
    instance = Daemon(database_url, tmp_path, env=webhook_env(receiver)).start()
    try:
        yield instance
    finally:
        instance.stop()


# -- 1. the receiver refuses absurd values, with the reason ------------------------------------------------

ABSURD: dict[str, tuple[str, str]] = {
    "seq beyond 64 bits": (json.dumps(leg("absurd-1", 2**70, "Appeared", T0)), "'seq' is out of range"),
    "NUL in a string": (json.dumps(leg("absurd-2", 1, "Appeared", T0, call_id="a\x00b")), "NUL character"),
    "lone surrogate in entry_id": (json.dumps(leg("\ud800", 1, "Appeared", T0)), "lone UTF-16 surrogate"),
    "nested 1,500 deep": (
        json.dumps(leg("absurd-3", 1, "Appeared", T0))[:-1] + ',"x":' + "[" * 1500 + "]" * 1500 + "}",
        "nested deeper than 32 levels",
    ),
    "NaN": (json.dumps(leg("absurd-4", 1, "Appeared", T0))[:-1] + ',"x":NaN}', "not valid JSON"),
}


def test_absurd_values_are_refused_with_the_reason(daemon: Daemon, store: Engine) -> None:
    for name, (json_text, words) in ABSURD.items():
        response = send(daemon, "events/call", json_text)
        assert response.status_code == 400, (name, response.text)
        assert response.headers["Content-Type"].startswith("application/json")
        assert words in response.json()["error"], (name, response.json())
    with store.connect() as conn:
        assert conn.execute(select(raw_events.c.id)).first() is None
    assert "Traceback" not in daemon.log_path.read_text()
    # The receiver still works.
    play_call(daemon, "after-absurd")


# -- 2. the processor quarantines what it cannot fold and goes on -------------------------------------------


def test_a_poison_event_is_quarantined_and_later_calls_are_folded_and_delivered(
    database_url: str, tmp_path: Path, receiver: WebhookReceiver, store: Engine
) -> None:
    daemon = Daemon(database_url, tmp_path, env=webhook_env(receiver)).start()
    try:
        # Past the receiver: a corrupt row, and a row with a value the tracker's columns cannot hold.
        broken = corrupt_row(store, "<b>broken</b>", '{"entry_id": "<b>broken</b>", "seq": ', "broken")
        huge = corrupt_row(store, "huge", json.dumps(leg("huge", 2**70, "Appeared", T0)), "huge")
        # Through the receiver: every value in range, yet the call's duration (2^63 s) fits no column.
        span = {**summary("span"), "create_time": -(2**62), "end_time": 2**62}
        assert send(daemon, "events/summary", span).status_code == 200
        play_call(daemon, "good-1")
        wait_delivered(receiver, "good-1")

        assert raw_state(store, broken).error.startswith("does not parse: ParseError: the 'json' field")
        assert "'seq' is out of range" in raw_state(store, huge).error
        with store.connect() as conn:
            span_row = conn.execute(
                select(raw_events.c.id).where(raw_events.c.entry_id == "span")
            ).scalar_one()
        assert raw_state(store, span_row).error.startswith("cannot be stored:")
        assert metric(daemon, 'callbridge_raw_events{state="quarantined"}') == 3
        assert metric(daemon, 'callbridge_raw_events{state="unprocessed"}') == 0
        assert "Traceback" not in daemon.log_path.read_text()

        # The panel lists them, escaped.
        daemon.create_user("admin", PASSWORD)
        panel = panel_session(daemon.url)
        assert 'id="nav-quarantine"' in panel.get(f"{daemon.url}/admin/", timeout=10).text
        page = panel.get(f"{daemon.url}/admin/quarantine", timeout=10)
        assert page.status_code == 200
        assert page.text.count('class="quarantined-event"') == 3
        assert "&lt;b&gt;broken&lt;/b&gt;" in page.text and "<b>broken</b>" not in page.text
        assert (
            requests.get(f"{daemon.url}/admin/quarantine", timeout=10, allow_redirects=False).status_code
            == 302
        )

        listed = cli(daemon, "events", "quarantined")
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines()[0].split() == [
            "ID",
            "PATH",
            "ENTRY_ID",
            "RECEIVED",
            "(UTC)",
            "ERROR",
        ]
        assert {str(broken), str(huge)} <= {
            line.split()[0] for line in listed.stdout.splitlines()[2:] if line
        }
        assert "3 quarantined events" in listed.stdout
    finally:
        daemon.stop()

    # After a restart: still quarantined, new calls still flow.
    daemon = Daemon(database_url, tmp_path, env=webhook_env(receiver)).start()
    try:
        play_call(daemon, "good-2")
        wait_delivered(receiver, "good-2")
        assert raw_state(store, huge).quarantined_at is not None
        assert metric(daemon, 'callbridge_raw_events{state="quarantined"}') == 3

        # A retry of an event that still cannot be folded says so, and it stays quarantined.
        again = cli(daemon, "events", "retry", str(huge))
        assert again.returncode == 1
        assert f"raw event {huge} could not be folded again" in again.stderr
        assert "out of range" in again.stderr
        # Once the row is repaired, a retry folds it into its call and the call is delivered.
        with store.begin() as conn:
            fixed = json.dumps(leg("huge", 1, "Appeared", T0))
            conn.execute(update(raw_events).where(raw_events.c.id == huge).values(payload=fixed))
        done = cli(daemon, "events", "retry", str(huge))
        assert done.returncode == 0, done.stderr
        assert f"Raw event {huge} was folded into its call." in done.stdout
        wait_until(lambda: "call.ringing" in delivered_types(receiver, "huge"), "the repaired call's ringing")
        assert metric(daemon, 'callbridge_raw_events{state="quarantined"}') == 2
        missing = cli(daemon, "events", "retry", "999999")
        assert missing.returncode == 1 and "there is no raw event 999999" in missing.stderr
        not_quarantined = cli(daemon, "events", "retry", str(huge))
        assert (
            not_quarantined.returncode == 1
            and "is not quarantined (it is processed)" in not_quarantined.stderr
        )
    finally:
        daemon.stop()


# -- 3. a connector whose handle() raises holds up no other call ------------------------------------------

PLUGIN = r'''
from connectors.webhook import WebhookConnector


class ExplodingConnector(WebhookConnector):
    """The webhook connector, except that some calls crash `handle()`: a bug whose message holds a NUL
    (which PostgreSQL cannot store), or a library that calls sys.exit()."""

    name = "exploding"

    def handle(self, event, refs):
        if event.entry_id.startswith("explode"):
            raise ZeroDivisionError("a bug in the connector\x00")
        if event.entry_id.startswith("exit"):
            raise SystemExit(3)
        super().handle(event, refs)
'''


def install_plugin(where: Path) -> Path:
    """An installed third-party connector: a module and its entry point, on the daemon's path."""
    where.mkdir()
    (where / "exploding_connector.py").write_text(textwrap.dedent(PLUGIN))
    info = where / "exploding_connector-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: exploding-connector\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[callbridge.connectors]\nexploding = exploding_connector:ExplodingConnector\n"
    )
    return where


def test_a_connector_that_raises_blocks_no_other_call(
    database_url: str, tmp_path: Path, receiver: WebhookReceiver, store: Engine
) -> None:
    plugin = install_plugin(tmp_path / "plugin")
    env = {
        **webhook_env(receiver, "exploding"),
        "PYTHONPATH": str(plugin),
        "CALLBRIDGE_DISPATCHER_MAX_ATTEMPTS": "3",
    }
    daemon = Daemon(database_url, tmp_path, env=env).start()
    try:
        play_call(daemon, "explode-1")
        play_call(daemon, "exit-1")
        play_call(daemon, "fine-1")
        wait_delivered(receiver, "fine-1")
        assert delivered_types(receiver, "explode-1") == delivered_types(receiver, "exit-1") == set()

        def dead_rows(entry_id: str) -> list[Any]:
            query = text("SELECT status, attempts, last_error FROM outbox WHERE entry_id = :e")
            with store.connect() as conn:
                rows = conn.execute(query, {"e": entry_id}).all()
            return rows if rows and all(row.status == "dead" for row in rows) else []

        # Retried with backoff like a transient error, then dead after the budget.
        for entry_id, error in [
            ("explode-1", "unexpected ZeroDivisionError: a bug in the connector?"),
            ("exit-1", "unexpected ConnectorExit: handle() raised SystemExit"),
        ]:
            rows = wait_until(
                lambda entry_id=entry_id: dead_rows(entry_id), f"{entry_id}'s deliveries to go dead"
            )
            assert all(row.attempts == 3 for row in rows)
            assert all(row.last_error == f"gave up after 3 attempts: {error}" for row in rows), rows
        play_call(daemon, "fine-2")  # the lane is still alive
        wait_delivered(receiver, "fine-2")
    finally:
        daemon.stop()


# -- 4. a group commit with one refused event: the others are acknowledged -----------------------------------


def refuse_marked_events(engine: Engine) -> None:
    """A database rule that refuses events carrying a marker (and makes marked ones slow on PostgreSQL)."""
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER refuse_marked BEFORE INSERT ON raw_events "
                    "WHEN NEW.payload LIKE '%refuse-me%' BEGIN SELECT RAISE(ABORT, 'refused by a rule'); END"
                )
            )
            return
        conn.execute(
            text(
                """
                CREATE FUNCTION refuse_marked() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    IF NEW.payload LIKE '%slow-me%' THEN PERFORM pg_sleep(0.5); END IF;
                    IF NEW.payload LIKE '%refuse-me%' THEN
                        RAISE EXCEPTION 'refused by a rule' USING ERRCODE = 'check_violation';
                    END IF;
                    RETURN NEW;
                END $$
                """
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER refuse_marked BEFORE INSERT ON raw_events "
                "FOR EACH ROW EXECUTE FUNCTION refuse_marked()"
            )
        )


def sleeping_inserts(engine: Engine) -> int:
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event = 'PgSleep' AND query LIKE 'INSERT%'"
    )
    with engine.connect() as conn:
        return conn.execute(text(query)).scalar_one()


def test_one_refused_event_in_a_group_fails_alone(
    database_url: str, tmp_path: Path, receiver: WebhookReceiver, store: Engine
) -> None:
    # One HTTP worker, so one writer sees every request; enough threads to have them all in flight.
    env = {**webhook_env(receiver), "CALLBRIDGE_HTTP_WORKERS": "1", "CALLBRIDGE_HTTP_THREADS": "32"}
    daemon = Daemon(database_url, tmp_path, env=env).start()
    try:
        refuse_marked_events(store)
        check_group(daemon, store)
    finally:
        daemon.stop()


def check_group(daemon: Daemon, store: Engine) -> None:
    good = [leg(f"group-{i}", 1, "Appeared", T0) for i in range(20)]
    bad = {**leg("group-bad", 1, "Appeared", T0), "note": "refuse-me"}
    with ThreadPoolExecutor(24) as pool:
        slow = pool.submit(
            send, daemon, "events/call", {**leg("group-slow", 1, "Appeared", T0), "n": "slow-me"}
        )
        if store.dialect.name == "postgresql":  # the slow commit holds the writer: the rest queue as a group
            wait_until(lambda: sleeping_inserts(store), "the slow insert to be under way")
        answers = list(pool.map(lambda payload: send(daemon, "events/call", payload), [*good, bad]))
        assert slow.result().status_code == 200
    assert [r.status_code for r in answers[:-1]] == [200] * len(good), [r.text for r in answers]
    assert answers[-1].status_code == 422, answers[-1].text
    error = answers[-1].json()["error"]
    assert error.startswith("the store refused a value of this event (") and "refused by a rule" in error
    with store.connect() as conn:
        stored = set(conn.execute(select(raw_events.c.entry_id)).scalars())
    assert stored >= {f"group-{i}" for i in range(20)} and "group-bad" not in stored
    if store.dialect.name == "postgresql":
        assert "storing them one by one" in daemon.log_path.read_text()
    assert "Traceback" not in daemon.log_path.read_text()
