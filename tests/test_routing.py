"""The routing decision and the paced route queue, against a real store on every backend."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, insert, select

from bridge.commands.journal import ACCEPTED, FAILED
from bridge.config.model import RoutingSettings
from bridge.pbx.port import CommandAccepted, PbxBadRequest, PbxRateLimited
from bridge.routing import outcomes
from bridge.routing.decide import Decider
from bridge.routing.queue import PendingRoute, RouteQueue
from bridge.routing.store import claim
from bridge.store.schema import call_routes, calls, commands, employees, legs
from connectors.demo.connector import DemoConnector

NOW = 1_800_000_000.0
CUSTOMER = "79161234567"


def _answered(
    engine: Engine, entry_id: str, extension: str, hours_ago: float, customer: str = CUSTOMER
) -> None:
    at = NOW - hours_ago * 3600
    with engine.begin() as conn:
        conn.execute(
            insert(calls).values(
                entry_id=entry_id,
                direction="incoming",
                status="ended",
                customer_number=customer,
                answered_by=extension,
                closed=True,
                started_at=at - 5,
                answered_at=at,
                updated_at=at,
            )
        )


def _talking(engine: Engine, extension: str) -> None:
    """`extension` is on an open call now."""
    with engine.begin() as conn:
        conn.execute(insert(calls).values(entry_id="live", status="answered", closed=False, updated_at=NOW))
        conn.execute(
            insert(legs).values(
                call_id="live-leg", entry_id="live", state="Connected", seq=2, to_extension=extension
            )
        )


def _employee(engine: Engine, extension: str, name: str, *, active: bool = True) -> None:
    with engine.begin() as conn:
        conn.execute(insert(employees).values(extension=extension, name=name, active=active, updated_at=NOW))


@pytest.fixture
def crm_pool() -> Iterator[object]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(4) as pool:
        yield pool


def _decider(engine: Engine, pool: object, **crms: DemoConnector) -> Decider:
    return Decider(engine, lambda: crms, pool, clock=lambda: NOW)  # type: ignore[arg-type]


def _crm(responsible: str | None = "203", delay_ms: float = 0, fail: bool = False) -> DemoConnector:
    contact = (
        {"name": "Boris", "responsible": responsible, "responsible_name": "Vera"}
        if responsible
        else {"name": "B"}
    )
    return DemoConnector({"contacts": {CUSTOMER: contact}, "delay_ms": delay_ms, "fail": fail})


def _decide(decider: Decider, settings: RoutingSettings | None = None, **kw: object):  # type: ignore[no-untyped-def]
    settings = settings or RoutingSettings(enabled=True)
    return decider.decide(
        "now", CUSTOMER, settings, time.monotonic() + settings.decide_within_ms / 1000, **kw
    )


def test_the_last_employee_within_the_window_is_the_familiar_one(engine: Engine, crm_pool: object) -> None:
    _answered(engine, "old", "201", hours_ago=30)  # outside 24 h
    _answered(engine, "earlier", "202", hours_ago=20)
    _answered(engine, "latest", "205", hours_ago=2, customer="+79161234567")  # another form of the number
    _employee(engine, "205", "Anna")
    verdict = _decide(_decider(engine, crm_pool, demo=_crm()))
    assert verdict.decision is not None
    assert (verdict.decision.extension, verdict.decision.reason) == ("205", "familiar")
    assert verdict.detail == "put through to Anna (205): spoke with the customer 2 h ago"


def test_an_inactive_or_busy_familiar_employee_gives_way_to_the_crms_responsible(
    engine: Engine, crm_pool: object
) -> None:
    _answered(engine, "earlier", "202", hours_ago=20)
    _talking(engine, "202")
    verdict = _decide(_decider(engine, crm_pool, demo=_crm()))
    assert verdict.decision is not None and verdict.decision.reason == "crm_responsible"
    assert verdict.decision.source == "demo" and verdict.decision.extension == "203"
    assert verdict.notes == ("the familiar employee 202 is on a call",)
    busy_ok = _decide(_decider(engine, crm_pool), RoutingSettings(enabled=True, skip_busy=False))
    assert busy_ok.decision is not None and busy_ok.decision.extension == "202"
    _employee(engine, "203", "Vera", active=False)
    none = _decide(_decider(engine, crm_pool, demo=_crm()))
    assert none.decision is None
    assert none.detail == (
        "not routed: the familiar employee 202 is on a call; demo's responsible Vera (203) is inactive"
    )


def test_a_slow_crm_is_not_waited_for_past_the_deadline(engine: Engine, crm_pool: object) -> None:
    settings = RoutingSettings(enabled=True, decide_within_ms=200)
    started = time.monotonic()
    verdict = _decide(_decider(engine, crm_pool, slow=_crm(delay_ms=1500)), settings)
    assert time.monotonic() - started < 0.6
    assert verdict.decision is None
    assert verdict.notes[-1] == "no answer from slow within 200 ms"


def test_a_failing_crm_is_skipped_and_another_answers(engine: Engine, crm_pool: object) -> None:
    verdict = _decide(_decider(engine, crm_pool, broken=_crm(fail=True), good=_crm("204", delay_ms=50)))
    assert verdict.decision is not None and verdict.decision.extension == "204"
    assert "broken failed to answer" in verdict.notes


def test_groups_and_order_limit_the_choice(engine: Engine, crm_pool: object) -> None:
    _answered(engine, "earlier", "202", hours_ago=1)
    verdict = _decide(_decider(engine, crm_pool, demo=_crm()), allowed=frozenset({"203"}))
    assert verdict.decision is not None and verdict.decision.extension == "203"
    assert verdict.notes == ("the familiar employee 202 is in none of the routed groups",)
    crm_only = RoutingSettings(enabled=True, order=["crm_responsible"])
    assert _decide(_decider(engine, crm_pool, demo=_crm()), crm_only).decision.reason == "crm_responsible"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="once"):
        RoutingSettings(order=["familiar", "familiar"])
    assert RoutingSettings.model_validate({"lines": "74951234567, 74957654321"}).lines == [
        "74951234567",
        "74957654321",
    ]


class _Pbx:
    """A PBX client that records routes and answers as told."""

    def __init__(self, refuse: Exception | None = None) -> None:
        self.routes: list[tuple[float, str, str]] = []
        self.refuse = refuse

    def route(self, call_id: str, to_number: str, *, command_id: str | None = None) -> CommandAccepted:
        self.routes.append((time.monotonic(), call_id, str(to_number)))
        if self.refuse is not None:
            raise self.refuse
        return CommandAccepted(command_id or "", 1000)

    def close(self) -> None:
        pass


def _queued(engine: Engine, queue: RouteQueue, n: int, *, waited: float = 0.0, first: int = 0) -> list[str]:
    entries = []
    for i in range(first, first + n):
        entry = f"call-{i}"
        assert claim(engine, entry, f"ivr-{i}", CUSTOMER, NOW)
        queue.put(PendingRoute(entry, f"ivr-{i}", "202", time.monotonic() - waited))
        entries.append(entry)
    return entries


def _outcome(engine: Engine, entry_id: str) -> tuple[str, str | None]:
    with engine.connect() as conn:
        row = conn.execute(
            select(call_routes.c.outcome, commands.c.status)
            .select_from(call_routes.outerjoin(commands, commands.c.command_id == call_routes.c.command_id))
            .where(call_routes.c.entry_id == entry_id)
        ).one()
    return row[0], row[1]


def _drain(queue: RouteQueue, n: int) -> None:
    stop = threading.Event()
    for _ in range(n):
        queue.run_once(stop)


def test_routes_leave_one_per_interval_through_the_journal(engine: Engine) -> None:
    pbx = _Pbx()
    queue = RouteQueue(engine, lambda: pbx, interval=0.15)  # type: ignore[arg-type,return-value]
    entries = _queued(engine, queue, 4)
    _drain(queue, 4)
    gaps = [b[0] - a[0] for a, b in zip(pbx.routes, pbx.routes[1:], strict=False)]
    assert len(pbx.routes) == 4 and min(gaps) >= 0.15
    assert [r[1] for r in pbx.routes] == ["ivr-0", "ivr-1", "ivr-2", "ivr-3"]  # oldest first
    assert {_outcome(engine, e) for e in entries} == {(outcomes.SENT, ACCEPTED)}


def test_a_route_whose_caller_left_the_ivr_or_waited_too_long_is_dropped(engine: Engine) -> None:
    pbx = _Pbx()
    queue = RouteQueue(engine, lambda: pbx, interval=0.01, max_wait=5.0)  # type: ignore[arg-type,return-value]
    left, waiting = _queued(engine, queue, 2)
    with engine.begin() as conn:
        conn.execute(insert(legs).values(call_id="ivr-0", entry_id=left, state="Disconnected", seq=2))
    (stale,) = _queued(engine, queue, 1, waited=6.0, first=2)
    _drain(queue, 3)
    assert [r[1] for r in pbx.routes] == ["ivr-1"]
    assert _outcome(engine, left) == (outcomes.DROPPED, None)
    assert _outcome(engine, waiting) == (outcomes.SENT, ACCEPTED)
    assert _outcome(engine, stale) == (outcomes.DROPPED, None)
    with engine.connect() as conn:
        why = conn.execute(select(call_routes.c.detail).where(call_routes.c.entry_id == stale)).scalar()
    assert why == "waited over 5 s for Mango's route limit"


@pytest.mark.parametrize(
    "refusal",
    [PbxBadRequest(4101, "call not found"), PbxRateLimited(None, "rate limit", retry_after=0.3)],
    ids=["4101", "429"],
)
def test_a_refused_route_falls_back_to_the_ivr_silently(engine: Engine, refusal: Exception) -> None:
    pbx = _Pbx(refuse=refusal)
    queue = RouteQueue(engine, lambda: pbx, interval=0.01)  # type: ignore[arg-type,return-value]
    (entry,) = _queued(engine, queue, 1)
    _drain(queue, 1)
    assert _outcome(engine, entry) == (outcomes.FAILED, FAILED)
    assert len(pbx.routes) == 1  # never retried


def test_routing_settings_saved_in_the_panel_apply_over_the_configured_ones(engine: Engine) -> None:
    from bridge.config import Settings
    from bridge.settings_store import SettingsError, SettingsStore

    saved = SettingsStore(engine, Settings(), fixed=frozenset())
    saved.save({"routing.enabled": True, "routing.lines": ["74951234567"], "routing.decide_within_ms": 900})
    routing = saved.effective().routing
    assert (routing.enabled, routing.lines, routing.decide_within_ms) == (True, ["74951234567"], 900)
    with pytest.raises(SettingsError, match="routing.decide_within_ms"):
        saved.save({"routing.decide_within_ms": 10})


def _leg(
    location: str,
    *,
    to_extension: str | None = None,
    group: str | None = None,
    age: float = 0.0,
    line: str = "74951234567",
):  # type: ignore[no-untyped-def]
    from bridge.pbx.events import CallLegEvent, Party

    return CallLegEvent(
        entry_id="now",
        call_id=f"{location}-leg",
        seq=1,
        timestamp=int(NOW - age),
        state="Appeared",
        location=location,
        from_=Party(number=CUSTOMER),
        to=Party(extension=to_extension, number=line, acd_group=group),
        line_number=line,
    )


def _service(engine: Engine, routing: RoutingSettings):  # type: ignore[no-untyped-def]
    from bridge.config import Settings
    from bridge.routing import RoutingService

    pbx = _Pbx()
    queue = RouteQueue(engine, lambda: pbx, interval=0.01)  # type: ignore[arg-type,return-value]
    settings = Settings(routing=routing)
    service = RoutingService(engine, lambda: settings, dict, lambda: pbx, clock=lambda: NOW, queue=queue)  # type: ignore[arg-type,return-value]
    return service, queue


def test_which_legs_are_considered(engine: Engine) -> None:
    routing = RoutingSettings(enabled=True, lines=["+7 495 123-45-67"], intercept=True, groups=["200"])
    service, _ = _service(engine, routing)
    wanted = service._wanted  # noqa: SLF001 - the filter alone
    assert wanted(_leg("ivr"), routing)
    assert not wanted(_leg("ivr", line="74957654321"), routing)  # another line
    assert not wanted(_leg("ivr", age=600), routing)  # a replayed backlog
    assert wanted(_leg("abonent", to_extension="101", group="200"), routing)
    assert not wanted(_leg("abonent", to_extension="101", group="300"), routing)  # not a routed group
    assert not wanted(_leg("abonent", to_extension="101"), routing)  # rung directly, not through a group
    assert not wanted(
        _leg("abonent", to_extension="101", group="200"), routing.model_copy(update={"intercept": False})
    )


def test_a_ringing_call_is_not_moved_to_an_employee_already_rung(engine: Engine) -> None:
    _answered(engine, "earlier", "102", hours_ago=1)
    with engine.begin() as conn:
        conn.execute(
            insert(legs).values(call_id="g-102", entry_id="now", state="Appeared", seq=1, to_extension="102")
        )
    routing = RoutingSettings(enabled=True, intercept=True)
    service, queue = _service(engine, routing)
    service._decide_and_queue(
        _leg("abonent", to_extension="101", group="200"), routing, time.monotonic() + 1.5
    )  # noqa: SLF001
    with engine.connect() as conn:
        row = conn.execute(select(call_routes.c.outcome, call_routes.c.detail)).one()
    assert tuple(row) == (outcomes.UNDECIDED, "not moved: 102 is already being rung")
    assert len(queue) == 0


def test_the_ringing_of_a_routed_call_says_why_it_came(engine: Engine) -> None:
    from bridge.connector_api import CallEvent
    from bridge.realtime.messages import call_message
    from bridge.routing.store import save

    routing = RoutingSettings(enabled=True)
    service, _ = _service(engine, routing)
    assert claim(engine, "now", "ivr-leg", CUSTOMER, NOW)
    why = "put through to Anna (202): spoke with the customer 20 h ago"
    save(engine, "now", NOW, outcome=outcomes.SENT, command_id="rt-1", detail=why, extension="202")
    routed = CallEvent(
        type="call.ringing",
        entry_id="now",
        key="call.ringing:l2",
        occurred_at=NOW,
        command_id="rt-1",
        extension="202",
    )
    other = CallEvent(
        type="call.ringing", entry_id="other", key="call.ringing:l3", occurred_at=NOW, command_id="cb-1"
    )
    annotated = service.annotate([routed, other])
    assert call_message(annotated[0])["routing"] == why
    assert "routing" not in call_message(annotated[1]) and annotated[1] is other
