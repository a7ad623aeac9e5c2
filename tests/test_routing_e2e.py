"""Routing through `callbridge run` and the Mango simulator holding calls in the IVR (mango.md §5).

A customer who talked with 202 yesterday reaches 202; with 202 on a call, the CRM's responsible; a CRM
that does not answer within `routing.decide_within_ms` gets no command sent (the IVR goes on); a burst of
30 calls in 10 s never takes routes over Mango's 1 per 2 s, drops the stale ones and breaks nothing.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator import CommandServer
from tests.conftest import BACKENDS, _pg_database
from tests.daemon import API_KEY, API_SALT, Daemon, wait_call, wait_closed
from tests.fakes.realtime_client import Client
from tests.test_realtime_e2e import cli_token

FAMILIAR = "79160000001"  # talked with 202 yesterday
BUSY_CASE = "79160000002"  # talked with 202 yesterday; the CRM's responsible is 203
SLOW_CRM = "79160000003"  # the CRM knows the responsible, too late
RINGING_AT_GROUP = "79160000004"  # talked with 205 today; calls a line without an IVR step
BURST = [f"7916100{i:04d}" for i in range(30)]  # the CRM names a manager of their own for each (230...259)
CONTACTS = {
    BUSY_CASE: {"name": "Boris", "responsible": "203", "responsible_name": "Vera"},
    SLOW_CRM: {"name": "Olga", "responsible": "205"},
    **{number: {"name": f"Client {i}", "responsible": str(230 + i)} for i, number in enumerate(BURST)},
}


@dataclass
class Stack:
    daemon: Daemon
    mango: CommandServer
    route_arrivals: list[float]  # when each commands/route reached the simulator's rate limiter


def _stack(request: pytest.FixtureRequest, workdir: Path, env: dict[str, str]) -> Iterator[Stack]:
    if request.param == "sqlite":
        databases: Iterator[str] = iter([f"sqlite:///{workdir / 'callbridge.db'}"])
    else:
        databases = _pg_database(f"cb_test_{uuid.uuid4().hex[:12]}")
    daemon = Daemon(next(databases), workdir, env={"CALLBRIDGE_ROUTING_ENABLED": "true", **env})
    mango = CommandServer(API_KEY, API_SALT, bridge_url=daemon.mango_url).start()  # Mango's rate limits on
    arrivals: list[float] = []
    limiter = mango.rate_limiter
    assert limiter is not None
    judge = limiter.allow

    def allow(path: str, product: str) -> bool:  # Mango judges its limit when a request arrives
        if path == "commands/route":
            arrivals.append(time.monotonic())
        return judge(path, product)

    limiter.allow = allow  # type: ignore[method-assign]
    daemon.env["CALLBRIDGE_MANGO_API_URL"] = mango.url
    try:
        daemon.start()
        yield Stack(daemon, mango, arrivals)
    finally:
        mango.stop(timeout=1)
        daemon.stop()
        for _ in databases:  # drops the PostgreSQL database
            pass


def _demo(delay_ms: int) -> dict[str, str]:
    return {
        "CALLBRIDGE_CONNECTORS_DEMO_CONTACTS": json.dumps(CONTACTS),
        "CALLBRIDGE_CONNECTORS_DEMO_DELAY_MS": str(delay_ms),
    }


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {**_demo(150), "CALLBRIDGE_ROUTING_INTERCEPT": "true"}
    yield from _stack(request, tmp_path_factory.mktemp("routing"), env)


@pytest.fixture(scope="module", params=BACKENDS)
def slow_crm(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {**_demo(2500), "CALLBRIDGE_ROUTING_DECIDE_WITHIN_MS": "600"}
    yield from _stack(request, tmp_path_factory.mktemp("routing-slow"), env)


def _talked(stack: Stack, customer: str, extension: str, *, hours_ago: float, seed: int) -> None:
    """A call answered by `extension` `hours_ago`, played in full and stored."""
    start = int(time.time() - hours_ago * 3600)
    call = scenarios.build(
        "incoming_answered", seed=seed, start=start, customer=customer, extensions=(extension,)
    )
    stack.mango.play(call.notifications)
    wait_closed(stack.daemon, call.entry_id)


def _on_a_call(stack: Stack, extension: str, *, seed: int) -> None:
    """`extension` answers a customer's call now and stays on it."""
    call = scenarios.build("incoming_answered", seed=seed, customer="79035550000", extensions=(extension,))
    notes = list(call.notifications)
    connected = next(i for i, n in enumerate(notes) if n.payload.get("call_state") == "Connected")
    stack.mango.play(notes[: connected + 1])
    wait_call(stack.daemon, call.entry_id, lambda c: c["status"] == "answered")


def _routing(stack: Stack, entry_id: str, until: Callable[[dict], bool], timeout: float = 15.0) -> dict:
    call = wait_call(
        stack.daemon, entry_id, lambda c: c.get("routing") is not None and until(c["routing"]), timeout
    )
    return call["routing"]


def _routes(stack: Stack, call_id: str | None = None) -> list:
    return [
        r
        for r in list(stack.mango.received)
        if r.path == "commands/route" and (call_id is None or r.json.get("call_id") == call_id)
    ]


def test_a_customer_who_talked_with_202_yesterday_reaches_202(stack: Stack) -> None:
    _talked(stack, FAMILIAR, "202", hours_ago=20, seed=1)
    anna = Client(int(stack.daemon.env["CALLBRIDGE_WS_PORT"]), cli_token(stack.daemon, "--extension", "202"))
    try:
        anna.wait_for("hello")
        ivr = stack.mango.ring_ivr(customer=FAMILIAR, wait=8, fallback_extension="101")
        entry_id = stack.mango.calls[ivr]
        popup = anna.wait_for("call.ringing", where=lambda m: m["entry_id"] == entry_id)
    finally:
        anna.close()
    assert popup["routing"].startswith("put through to 202: spoke with the customer 20 h ago")
    route = stack.mango.wait_for("commands/route", where=lambda r: r.json.get("call_id") == ivr, timeout=10)
    assert route.json["to_number"] == "202" and route.result == 1000
    routing = _routing(stack, entry_id, lambda r: r["command_status"] == "done")
    assert (routing["outcome"], routing["extension"], routing["reason"]) == ("sent", "202", "familiar")
    assert routing["detail"].startswith("put through to 202: spoke with the customer 20 h ago")
    assert routing["command_id"] == route.json["command_id"] and routing["decided_ms"] < 1500
    call = wait_call(stack.daemon, entry_id, lambda c: c["answered_by"] == "202")
    assert call["command_id"] is None or call["command_id"] == routing["command_id"]


def test_with_202_on_a_call_the_crms_responsible_gets_the_customer(stack: Stack) -> None:
    _talked(stack, BUSY_CASE, "202", hours_ago=3, seed=2)
    _on_a_call(stack, "202", seed=3)
    ivr = stack.mango.ring_ivr(customer=BUSY_CASE, wait=8, fallback_extension="101")
    route = stack.mango.wait_for("commands/route", where=lambda r: r.json.get("call_id") == ivr, timeout=10)
    assert route.json["to_number"] == "203"
    routing = _routing(stack, stack.mango.calls[ivr], lambda r: r["outcome"] == "sent")
    assert (routing["extension"], routing["reason"], routing["source"]) == ("203", "crm_responsible", "demo")
    assert routing["employee_name"] == "Vera"
    assert routing["detail"] == (
        "put through to Vera (203): the customer's responsible in demo; "
        "the familiar employee 202 is on a call"
    )


def test_a_burst_of_30_calls_in_10_s_keeps_routes_within_mangos_limit(stack: Stack) -> None:
    before = len(_routes(stack))
    ivrs = []
    for number in BURST:  # 30 calls in 10 s; each leaves the IVR for 101 after 3 s unless routed
        ivrs.append(stack.mango.ring_ivr(customer=number, wait=3, fallback_extension="101"))
        time.sleep(1 / 3)
    entries = [stack.mango.calls[ivr] for ivr in ivrs]
    final = {"sent", "dropped", "failed"}
    outcomes = [
        _routing(stack, entry, lambda r: r["outcome"] in final, timeout=30)["outcome"] for entry in entries
    ]
    routes = _routes(stack)[before:]
    assert routes and all(r.status == 200 and r.result is not None for r in routes)  # never a 429
    times = list(stack.route_arrivals)
    assert len(times) == len(_routes(stack))
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 2.0
    assert outcomes.count("dropped") >= 15  # most calls left the IVR before their turn: not sent late
    assert outcomes.count("sent") + outcomes.count("failed") == len(routes) <= 8
    assert {r.json["to_number"] for r in routes} <= {str(230 + i) for i in range(len(BURST))}
    assert stack.daemon.api("/healthz").status_code == 200 and stack.daemon.process.poll() is None
    metrics = stack.daemon.api("/metrics").text
    assert 'callbridge_routes{outcome="dropped"}' in metrics
    for entry in entries:  # every call still ends, routed or through the IVR scheme
        wait_closed(stack.daemon, entry, timeout=30)


def test_a_call_ringing_at_a_group_is_moved_to_the_familiar_employee(stack: Stack) -> None:
    _talked(stack, RINGING_AT_GROUP, "205", hours_ago=5, seed=4)
    now = int(time.time())
    call = scenarios.build("ring_group_second_answers", seed=5, customer=RINGING_AT_GROUP, start=now)
    notes = [n for n in call.notifications if n.payload.get("location") != "ivr" and n.path != "events/dtmf"]
    ringing = [n for n in notes if n.path == "events/call" and n.payload["call_state"] == "Appeared"]
    stack.mango.play(ringing)  # the group rings 101, 102 and 103; no IVR step
    legs = {n.payload["call_id"] for n in ringing}
    route = stack.mango.wait_for("commands/route", where=lambda r: r.json.get("call_id") in legs, timeout=10)
    assert route.json["to_number"] == "205"
    routing = _routing(stack, call.entry_id, lambda r: r["outcome"] == "sent")
    assert (routing["extension"], routing["reason"]) == ("205", "familiar")
    assert wait_call(stack.daemon, call.entry_id, lambda c: c["answered_by"] == "205")


def test_no_answer_from_the_crm_in_time_sends_nothing_and_the_ivr_goes_on(slow_crm: Stack) -> None:
    ivr = slow_crm.mango.ring_ivr(customer=SLOW_CRM, wait=3, fallback_extension="101")
    entry_id = slow_crm.mango.calls[ivr]
    routing = _routing(slow_crm, entry_id, lambda r: r["outcome"] == "undecided")
    assert routing["extension"] is None and routing["command_id"] is None
    assert "no answer from demo within 600 ms" in routing["detail"]
    call = wait_closed(slow_crm.daemon, urllib.parse.unquote(entry_id))
    assert call["answered_by"] == "101"  # the IVR scheme's own next step
    assert _routes(slow_crm) == []
