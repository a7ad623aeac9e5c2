"""The callback service over the real store (SQLite, and PostgreSQL where configured) and the Mango
simulator's command API: checks, abuse limits, the command it sends, following the call, retries, and the
scheduler dialling deferred requests exactly once when the (time-travelled) schedule opens."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import BaseModel
from sqlalchemy import Engine, func, select

from bridge.connector_api import CallEvent, Connector, RefStore
from bridge.pbx.mango import parse as mango_parse
from bridge.pbx.mango.client import MangoClient
from bridge.pbx.mango.receiver import raw_record
from bridge.pbx.mango.signing import dump_json
from bridge.pbx.mango.simulator import CommandServer
from bridge.processing.processor import EventProcessor
from bridge.store.engine import make_engine
from bridge.store.raw_events import insert_raw_events
from bridge.store.schema import commands, outbox
from widget.scheduler import WidgetScheduler
from widget.service import CallbackForm, WidgetError, WidgetService
from widget.settings import SiteConfig
from widget.sites import block, load_site, save_site
from widget.tables import widget_hits, widget_requests

KEY, SALT = "widget-test-key", "widget-test-salt-0123456789"
ORIGIN = "https://shop.example"
LINE = "74951234567"
MONDAY_10_MSK = datetime(2025, 3, 3, 7, 0, tzinfo=UTC).timestamp()
SATURDAY_NOON_MSK = datetime(2025, 3, 8, 9, 0, tzinfo=UTC).timestamp()
MONDAY_OPENING = datetime(2025, 3, 10, 6, 0, tzinfo=UTC).timestamp()  # Monday 09:00 Moscow


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecorderConfig(BaseModel):
    pass


class Recorder(Connector):
    """A connector that only exists to receive outbox rows."""

    name = "recorder"
    config_model = RecorderConfig

    def handle(self, event: CallEvent, refs: RefStore) -> None:  # pragma: no cover - not dispatched here
        pass


@pytest.fixture
def mango() -> Iterator[CommandServer]:
    server = CommandServer(KEY, SALT, rate_limits=False).start()
    yield server
    server.stop(timeout=1)


def make_service(engine: Engine, mango: CommandServer, clock: Clock) -> WidgetService:
    return WidgetService(
        engine,
        {"recorder": Recorder(RecorderConfig())},
        lambda: MangoClient(KEY, SALT, mango.url, timeout=5),
        clock=clock,
        site_cache_ttl=0,
    )


def add_site(engine: Engine, key: str = "shop", **overrides: Any) -> None:
    config = {
        "name": "Shop",
        "origins": [ORIGIN],
        "group": "200",
        "line": LINE,
        "timezone": "Europe/Moscow",
        "limits": {"min_fill_seconds": 2},
        **overrides,
    }
    save_site(engine, key, SiteConfig.model_validate(config), now=MONDAY_10_MSK)


def form(service: WidgetService, phone: str, *, shown_at: float, **fields: Any) -> CallbackForm:
    site = load_site(service.engine, fields.pop("site", "shop"))
    assert site is not None
    return CallbackForm(
        phone=phone,
        form_token=service.form_token(site, shown_at),
        visitor_id=fields.pop("visitor_id", "visitor-0001"),
        page="https://shop.example/catalog?utm_source=ya",
        referrer="https://ya.ru/",
        lang="ru",
        utm=fields.pop("utm", {"utm_source": "ya", "utm_campaign": "spring"}),
        **fields,
    )


def submit(service: WidgetService, phone: str, ip: str = "203.0.113.7", **fields: Any) -> dict[str, Any]:
    now = service.clock()
    site = load_site(service.engine, fields.get("site", "shop"))
    assert site is not None
    return service.submit(site, form(service, phone, shown_at=now - 5, **fields), ip, now)


def request_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(widget_requests).order_by(widget_requests.c.id)).all()


def group_commands(server: CommandServer) -> list[Any]:
    return [r for r in server.received if r.path == "commands/callback_group"]


def feed(engine: Engine, notes: list[Any]) -> None:
    """Store notifications as the receiver would, then let the real processor fold them."""
    with engine.begin() as conn:
        for note in notes:
            text = dump_json(note.payload)
            event = mango_parse.parse(note.path, note.payload)
            record = raw_record(note.path, event, text)
            insert_raw_events(conn, [record])
    processor = EventProcessor(engine, {})
    while processor.run_once():
        pass


# ------------------------------------------------------------------------------------- inside hours


def test_request_inside_hours_sends_one_signed_callback_group_and_queues_a_lead(
    engine: Engine, mango: CommandServer
) -> None:
    add_site(engine)
    service = make_service(engine, mango, Clock(MONDAY_10_MSK))
    state = submit(service, "8 (916) 123-45-67")
    assert state["state"] == "calling_managers" and not state["final"]

    [sent] = group_commands(mango)
    assert sent.signature_valid and sent.status == 200 and sent.result == 1000
    [row] = request_rows(engine)
    assert sent.json == {
        "command_id": row.command_id,
        "from": "200",
        "to": "79161234567",
        "line_number": LINE,
    }
    assert (row.status, row.attempts, row.phone) == ("calling", 1, "+79161234567")
    with engine.connect() as conn:
        command = conn.execute(select(commands).where(commands.c.command_id == row.command_id)).one()
        lead = conn.execute(select(outbox)).one()
    assert (command.path, command.status, command.sync_result) == (
        "commands/callback_group",
        "accepted",
        1000,
    )
    assert (lead.connector, lead.event_type) == ("recorder", "callback.requested")
    event = CallEvent.from_dict(json.loads(lead.payload))
    assert event.customer_number == "+79161234567" and event.line_number == LINE
    assert event.extra["utm"] == {"utm_source": "ya", "utm_campaign": "spring"}
    assert event.extra["page"] == "https://shop.example/catalog?utm_source=ya"
    assert event.extra["referrer"] == "https://ya.ru/" and event.extra["inside_hours"] is True


def test_status_follows_the_call_from_its_legs(engine: Engine, mango: CommandServer) -> None:
    add_site(engine)
    service = make_service(engine, mango, Clock(MONDAY_10_MSK))
    token = submit(service, "+7 916 123-45-67")["token"]
    mango.wait_idle()
    notes = [n for n in mango.outbox if n.path == "events/call"]
    seen = []
    for note in notes:
        feed(engine, [note])
        state = service.status(token)
        assert state is not None
        if not seen or seen[-1] != state["state"]:
            seen.append(state["state"])
    assert seen == ["calling_managers", "connecting", "connected"]
    [row] = request_rows(engine)
    assert row.status == "done" and row.entry_id


def test_failed_call_is_retried_once_then_given_up(engine: Engine, mango: CommandServer) -> None:
    add_site(engine, retries=1, retry_delay_seconds=60)
    clock = Clock(MONDAY_10_MSK)
    service = make_service(engine, mango, clock)
    scheduler = WidgetScheduler(service)
    mango.outcomes["79161234567"] = "no_answer"
    token = submit(service, "+79161234567")["token"]
    for attempt in (1, 2):
        mango.wait_idle()
        feed(engine, list(mango.outbox))
        state = service.status(token)
        assert state is not None
        if attempt == 1:
            assert state["state"] == "retry" and state["failure"] == "visitor_no_answer"
            assert scheduler.run_once(clock.now + 30) == 0  # not yet due
            assert len(group_commands(mango)) == 1
            clock.now += 61
            scheduler.run_once(clock.now)
            assert len(group_commands(mango)) == 2
        else:
            assert state["state"] == "failed" and state["final"] and state["attempt"] == 2
    assert len({c.json["command_id"] for c in group_commands(mango)}) == 2


def test_mango_refusing_the_command_fails_without_retrying_a_bad_request(
    engine: Engine, mango: CommandServer
) -> None:
    add_site(engine, retries=3)
    service = make_service(engine, mango, Clock(MONDAY_10_MSK))
    mango.inject("commands/callback_group", result=3100)
    state = submit(service, "+79161234567")
    assert state["state"] == "failed" and state["failure"] == "command_refused"
    [row] = request_rows(engine)
    assert row.last_result == 3100 and row.attempts == 1


# ------------------------------------------------------------------------------------------- abuse


def test_flood_from_one_ip_gets_429_and_sends_no_more_commands(engine: Engine, mango: CommandServer) -> None:
    add_site(engine, limits={"per_ip": {"count": 3, "seconds": 600}, "min_fill_seconds": 2})
    service = make_service(engine, mango, Clock(MONDAY_10_MSK))
    for i in range(3):
        submit(service, f"+7916123456{i}", visitor_id=f"visitor-{i:04d}")
    with pytest.raises(WidgetError) as refused:
        submit(service, "+79161234569", visitor_id="visitor-9999")
    assert refused.value.status == 429 and refused.value.code == "rate_limited"
    assert 0 < (refused.value.retry_after or 0) <= 600 and "address" in refused.value.message
    assert len(group_commands(mango)) == 3 and len(request_rows(engine)) == 3
    # Another address is still served.
    submit(service, "+79161234569", ip="198.51.100.1", visitor_id="visitor-9999")
    assert len(group_commands(mango)) == 4


def test_flood_for_one_number_is_limited_across_processes(engine: Engine, mango: CommandServer) -> None:
    add_site(engine, limits={"per_number": {"count": 2, "seconds": 3600}, "min_fill_seconds": 2})
    # Two services on two engines: two worker processes sharing the store.
    other_engine = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        services = [make_service(e, mango, Clock(MONDAY_10_MSK)) for e in (engine, other_engine)]
        submit(services[0], "+79161234567", ip="198.51.100.1", visitor_id="visitor-0001")
        submit(services[1], "8 916 123 45 67", ip="198.51.100.2", visitor_id="visitor-0002")
        for service in services:
            with pytest.raises(WidgetError) as refused:
                submit(service, "+7 (916) 123-45-67", ip="198.51.100.3", visitor_id="visitor-0003")
            assert refused.value.status == 429 and "number" in refused.value.message
    finally:
        other_engine.dispose()
    assert len(group_commands(mango)) == 2


def test_the_window_slides(engine: Engine, mango: CommandServer) -> None:
    add_site(engine, limits={"per_visitor": {"count": 1, "seconds": 60}, "min_fill_seconds": 0})
    clock = Clock(MONDAY_10_MSK)
    service = make_service(engine, mango, clock)
    submit(service, "+79161234567", ip="198.51.100.1")
    clock.now += 30
    with pytest.raises(WidgetError) as refused:
        submit(service, "+79161234568", ip="198.51.100.2")
    assert refused.value.retry_after == 30
    clock.now += 31
    submit(service, "+79161234568", ip="198.51.100.2")
    WidgetScheduler(service, prune_every=0, keep_hits_seconds=10).run_once(clock.now + 20)
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(widget_hits)).scalar() == 0


@pytest.mark.parametrize(
    ("fields", "shown_ago", "code"),
    [
        ({"honeypot": "http://spam.example"}, 10.0, "refused"),
        ({}, 0.5, "refused"),  # sent half a second after the form was shown
        ({}, 13 * 3600.0, "expired"),
    ],
    ids=["honeypot", "too-fast", "stale-token"],
)
def test_bots_are_refused_and_nothing_is_sent(
    engine: Engine, mango: CommandServer, fields: dict[str, Any], shown_ago: float, code: str
) -> None:
    add_site(engine)
    service = make_service(engine, mango, Clock(MONDAY_10_MSK))
    site = load_site(engine, "shop")
    assert site is not None
    bot = form(service, "+79161234567", shown_at=MONDAY_10_MSK - shown_ago, **fields)
    with pytest.raises(WidgetError) as refused:
        service.submit(site, bot, "203.0.113.9", MONDAY_10_MSK)
    assert refused.value.status == 400 and refused.value.code == code
    forged = CallbackForm(phone="+79161234567", form_token="forged.token")
    with pytest.raises(WidgetError):
        service.submit(site, forged, "203.0.113.9", MONDAY_10_MSK)
    assert not group_commands(mango) and not request_rows(engine)


def test_block_list_and_invalid_numbers(engine: Engine, mango: CommandServer) -> None:
    add_site(engine)
    service = make_service(engine, mango, Clock(MONDAY_10_MSK))
    block(engine, "phone", "+79161234567", "prank calls")
    block(engine, "ip", "192.0.2.0/24")
    for phone, ip, status in (
        ("8 916 123-45-67", "203.0.113.1", 403),
        ("+79161230000", "192.0.2.77", 403),
        ("12345", "203.0.113.1", 422),
        ("+7 999 000", "203.0.113.1", 422),
    ):
        with pytest.raises(WidgetError) as refused:
            submit(service, phone, ip=ip)
        assert refused.value.status == status
    assert not group_commands(mango) and not request_rows(engine)


# ------------------------------------------------------------------------------------ outside hours


def test_outside_hours_request_waits_and_is_dialled_exactly_once_when_the_schedule_opens(
    engine: Engine, mango: CommandServer
) -> None:
    add_site(engine, holidays=["2025-03-10"])  # Monday the 10th is a holiday: opens Tuesday 09:00
    clock = Clock(SATURDAY_NOON_MSK)
    service = make_service(engine, mango, clock)
    numbers = [f"+7916123450{i}" for i in range(6)]
    states = [
        submit(service, n, ip=f"203.0.113.{i}", visitor_id=f"visitor-{i:04d}") for i, n in enumerate(numbers)
    ]
    tuesday = MONDAY_OPENING + 86400
    assert {s["state"] for s in states} == {"scheduled"}
    assert states[0]["next_attempt_at"] == "2025-03-11T06:00:00Z"
    with engine.connect() as conn:
        leads = [CallEvent.from_dict(json.loads(p)) for p in conn.execute(select(outbox.c.payload)).scalars()]
    assert len(leads) == 6 and all(not e.extra["inside_hours"] for e in leads)
    assert leads[0].extra["scheduled_for"] == "2025-03-11T06:00:00Z"

    # Two schedulers on two engines (two daemons sharing the database) travel through time together.
    other_engine = make_engine(engine.url.render_as_string(hide_password=False))
    try:
        schedulers = [WidgetScheduler(make_service(e, mango, clock)) for e in (engine, other_engine)]
        for moment in (SATURDAY_NOON_MSK + 3600, MONDAY_OPENING + 60, tuesday - 1):
            for scheduler in schedulers:
                scheduler.run_once(moment)
        assert not group_commands(mango)

        clock.now = tuesday + 1
        barrier = threading.Barrier(len(schedulers))

        def race(scheduler: WidgetScheduler) -> None:
            barrier.wait()
            for _ in range(3):
                scheduler.run_once(tuesday + 1)

        threads = [threading.Thread(target=race, args=(s,)) for s in schedulers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        for scheduler in schedulers:  # later passes dial nothing again
            scheduler.run_once(tuesday + 5)
    finally:
        other_engine.dispose()

    sent = group_commands(mango)
    assert sorted(c.json["to"] for c in sent) == sorted(n.lstrip("+") for n in numbers)
    assert all(c.signature_valid for c in sent)
    assert {r.status for r in request_rows(engine)} == {"calling"}
    assert all(r.attempts == 1 for r in request_rows(engine))


def test_editing_the_schedule_replans_waiting_requests(engine: Engine, mango: CommandServer) -> None:
    add_site(engine)
    clock = Clock(SATURDAY_NOON_MSK)
    service = make_service(engine, mango, clock)
    submit(service, "+79161234567")
    WidgetScheduler(service).run_once(clock.now)
    assert not group_commands(mango)
    config = load_site(engine, "shop").config  # type: ignore[union-attr]
    save_site(engine, "shop", config.model_copy(update={"hours": {"sat": ["10:00-16:00"]}}), now=clock.now)
    WidgetScheduler(service).run_once(clock.now + 1)
    assert len(group_commands(mango)) == 1
