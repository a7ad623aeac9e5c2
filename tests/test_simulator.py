"""The Mango simulator: the poster signs and delivers like Mango, the command server answers like Mango."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.signing import dump_json, signed_form, verify
from bridge.pbx.mango.simulator import RATE_LIMIT_BODY, CommandServer, Poster, generate_calls
from bridge.pbx.mango.simulator.cli import simulate
from bridge.pbx.mango.simulator.rate_limits import BadRequestLockout, Limit, RateLimiter, limit_class
from bridge.pbx.mango.simulator.stats import DEFAULT_FIELDS, legs_from_notifications, render_csv

API_KEY = "sim-test-key"
API_SALT = "sim-test-salt-0123456789"


# --------------------------------------------------------------------------- a loopback "bridge"


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any) -> None:
        pass


@dataclass
class Received:
    path: str
    form: dict[str, str]
    content_type: str

    @property
    def payload(self) -> dict:
        return json.loads(self.form["json"])


class Loopback:
    """A stand-in for the bridge's Mango receiver: records every form, answers 200 (or `status_for`)."""

    def __init__(self, status_for: dict[str, int] | None = None) -> None:
        self.requests: list[Received] = []
        self.status_for = status_for or {}
        self._cond = threading.Condition()
        self._server = make_server("127.0.0.1", 0, self, threaded=True, request_handler=_Quiet)
        self._thread = threading.Thread(
            target=lambda: self._server.serve_forever(poll_interval=0.05), daemon=True
        )

    def __call__(self, environ: dict, start_response: Any) -> Any:
        request = Request(environ)
        path = request.path.removeprefix("/mango/")
        with self._cond:
            self.requests.append(Received(path, dict(request.form), request.mimetype))
            self._cond.notify_all()
        status = self.status_for.get(path, 200)
        return Response('{"success":true}', status=status, mimetype="application/json")(
            environ, start_response
        )

    def start(self) -> Loopback:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/mango"

    def wait(self, predicate: Any, timeout: float = 5.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [r for r in self.requests if predicate(r)]
                if found:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"nothing matched; got {[r.path for r in self.requests]}")
                self._cond.wait(left)

    def paths(self) -> list[str]:
        with self._cond:
            return [r.path for r in self.requests]


@pytest.fixture
def bridge() -> Iterator[Loopback]:
    loop = Loopback().start()
    yield loop
    loop.stop()


@pytest.fixture
def server(bridge: Loopback) -> Iterator[CommandServer]:
    srv = CommandServer(API_KEY, API_SALT, bridge_url=bridge.url, rng=random.Random(1)).start()
    yield srv
    srv.stop()


def _post(
    srv: CommandServer, path: str, payload: Any, *, key: str = API_KEY, salt: str = API_SALT, **kw: Any
) -> requests.Response:
    form = signed_form(key, salt, payload)
    form.update(kw)
    return requests.post(srv.url + path, data=form, timeout=5, allow_redirects=False)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- poster


def test_posted_forms_are_signed_three_field_forms_that_verify(bridge: Loopback) -> None:
    scenario = scenarios.build("incoming_answered", seed=3)
    report = Poster(bridge.url, API_KEY, API_SALT).play(scenario.notifications)

    assert report.sent == len(scenario.notifications) == len(report.acked)
    assert [r.path for r in bridge.requests] == [n.path for n in scenario.notifications]
    for got, note in zip(bridge.requests, scenario.notifications, strict=True):
        assert set(got.form) == {"vpbx_api_key", "sign", "json"}
        assert got.content_type == "application/x-www-form-urlencoded"
        assert got.form["vpbx_api_key"] == API_KEY
        assert got.form["json"] == dump_json(note.payload)
        assert verify(API_KEY, got.form["json"], API_SALT, got.form["sign"])
        assert not verify(API_KEY, got.form["json"], "other-salt", got.form["sign"])


def test_play_without_options_sends_each_notification_once_in_order(bridge: Loopback) -> None:
    scenario = scenarios.build("ring_group_second_answers", seed=4)
    report = Poster(bridge.url, API_KEY, API_SALT).play(scenario.notifications)
    assert [s.index for s in report.sends] == list(range(len(scenario.notifications)))
    assert not any(s.duplicate for s in report.sends)
    assert [r.payload for r in bridge.requests] == [n.payload for n in scenario.notifications]


def test_shuffle_permutes_the_order_but_sends_the_same_notifications(bridge: Loopback) -> None:
    notes = [n for s in generate_calls(40, seed=5) for n in s.notifications]
    report = Poster(bridge.url, API_KEY, API_SALT).play(notes, shuffle=True, rng=random.Random(9))
    order = [s.index for s in report.sends]
    assert order != sorted(order)
    assert sorted(order) == list(range(len(notes)))
    assert sorted(dump_json(r.payload) for r in bridge.requests) == sorted(
        dump_json(n.payload) for n in notes
    )


def test_duplicate_one_sends_every_notification_twice(bridge: Loopback) -> None:
    notes = scenarios.build("incoming_missed", seed=6).notifications
    report = Poster(bridge.url, API_KEY, API_SALT).play(notes, duplicate=1.0)
    assert report.sent == 2 * len(notes)
    assert sum(s.duplicate for s in report.sends) == len(notes)
    assert report.acked_indexes == set(range(len(notes)))


def test_duplicate_probability_is_roughly_honoured_and_reproducible(bridge: Loopback) -> None:
    notes = [n for s in generate_calls(200, seed=7) for n in s.notifications]
    poster = Poster(bridge.url, API_KEY, API_SALT)
    first = poster.play(notes, duplicate=0.3, rng=random.Random(1), concurrency=4)
    copies = sum(s.duplicate for s in first.sends)
    assert 0.15 * len(notes) < copies < 0.45 * len(notes)
    again = poster.play(notes, duplicate=0.3, rng=random.Random(1), concurrency=4)
    assert sorted((s.index, s.duplicate) for s in again.sends) == sorted(
        (s.index, s.duplicate) for s in first.sends
    )


def test_concurrent_play_delivers_everything(bridge: Loopback) -> None:
    notes = [n for s in generate_calls(150, seed=8) for n in s.notifications]
    report = Poster(bridge.url, API_KEY, API_SALT).play(notes, concurrency=8)
    assert len(report.acked) == len(notes) == len(bridge.requests)
    assert report.latency(0.5) > 0


def test_rate_caps_events_per_second(bridge: Loopback) -> None:
    notes = scenarios.build("incoming_answered", seed=9).notifications[:5]
    report = Poster(bridge.url, API_KEY, API_SALT).play(notes, rate=20, concurrency=3)
    assert report.duration >= (len(notes) - 1) / 20 * 0.9


def test_refused_connection_is_recorded_not_raised() -> None:
    notes = scenarios.build("incoming_answered", seed=10).notifications
    poster = Poster(f"http://127.0.0.1:{_free_port()}/mango", API_KEY, API_SALT, timeout=2)
    report = poster.play(notes)
    assert report.sent == len(notes)
    assert report.acked == [] and len(report.errors) == len(notes)
    assert all(s.status is None and "ConnectionError" in (s.error or "") for s in report.sends)


def test_only_200_counts_as_acked() -> None:
    loop = Loopback(status_for={"events/summary": 503}).start()
    try:
        notes = scenarios.build("incoming_answered", seed=11).notifications
        report = Poster(loop.url, API_KEY, API_SALT).play(notes)
        failed = [s for s in report.sends if not s.acked]
        assert [s.path for s in failed] == ["events/summary"]
        assert failed[0].status == 503 and failed[0].error == "HTTP 503"
        assert all(s.payload is s.notification.payload for s in report.acked)
    finally:
        loop.stop()


def test_report_serialises_each_send() -> None:
    notes = scenarios.build("incoming_missed", seed=12).notifications
    report = Poster(f"http://127.0.0.1:{_free_port()}/mango", API_KEY, API_SALT, timeout=1).play(notes)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["sent"] == len(notes) and data["acked"] == 0
    assert data["sends"][0]["entry_id"] == notes[0].payload["entry_id"]


# --------------------------------------------------------------------------- generated calls


def test_generate_calls_reaches_the_event_count_with_distinct_calls() -> None:
    calls = generate_calls(500, seed=7)
    events = sum(len(c.notifications) for c in calls)
    assert events >= 500
    assert len({c.entry_id for c in calls}) == len(calls)
    assert len({c.name for c in calls}) >= 4
    assert [c.entry_id for c in generate_calls(500, seed=7)] == [c.entry_id for c in calls]
    assert generate_calls(0, seed=1) == []


# --------------------------------------------------------------------------- command server: answers


@pytest.mark.parametrize(
    ("change", "payload", "expected"),
    [
        ({"key": "wrong-key"}, {"call_id": "x"}, 3105),
        ({"salt": "wrong-salt"}, {"call_id": "x"}, 3102),
        ({"json": "{not json"}, None, 3400),
        ({"json": "[1,2]"}, None, 3400),
        ({}, {"command_id": "c1"}, 3103),
        ({}, {"call_id": ""}, 3103),
    ],
    ids=["bad-key", "bad-sign", "bad-json", "json-not-object", "missing-param", "empty-param"],
)
def test_invalid_commands_get_mangos_result_codes(
    server: CommandServer, change: dict, payload: Any, expected: int
) -> None:
    key = change.get("key", API_KEY)
    salt = change.get("salt", API_SALT)
    text = change.get("json", dump_json(payload))
    response = _post(server, "commands/call/hangup", text, key=key, salt=salt)
    assert response.status_code == 200
    assert response.json() == {"result": expected}
    record = server.wait_for("commands/call/hangup")
    assert record.result == expected
    assert record.signature_valid is (expected not in (3102, 3105))
    assert server.outbox == []  # a refused command causes nothing (results are queued before the answer)


def test_missing_nested_parameter_is_3103(server: CommandServer) -> None:
    response = _post(server, "commands/callback", {"command_id": "c", "from": {}, "to_number": "79160000000"})
    assert response.json() == {"result": 3103}


def test_get_is_not_post_and_unknown_methods_are_404(server: CommandServer) -> None:
    assert requests.get(server.url + "commands/callback", timeout=5).json() == {"result": 3101}
    response = requests.post(
        server.url + "commands/teleport", data=signed_form(API_KEY, API_SALT, {}), timeout=5
    )
    assert response.status_code == 404


def test_rate_limit_answers_429_with_mangos_exact_body(server: CommandServer) -> None:
    assert _post(server, "config/users/request", {}).status_code == 200
    response = _post(server, "config/users/request", {})  # users/request: 1 per 2 s
    assert response.status_code == 429
    assert response.json() == RATE_LIMIT_BODY
    assert (
        response.text
        == '{"name":"Service Unavailable","message":"Rate limit exceeded.","code":0,"status":429}'
    )
    assert server.received[-1].status == 429


def test_callbacks_over_four_per_second_are_limited(server: CommandServer) -> None:
    server.results["callback"] = 2240  # keep the test quiet: no events
    codes = [
        _post(server, "commands/callback", {"from": {"extension": "101"}, "to_number": "7916"}).status_code
        for _ in range(6)
    ]
    assert codes.count(200) == 4 and codes.count(429) == 2


def test_rate_limits_can_be_switched_off(bridge: Loopback) -> None:
    with CommandServer(API_KEY, API_SALT, rate_limits=False) as srv:
        assert all(_post(srv, "config/users/request", {}).status_code == 200 for _ in range(3))


def test_too_many_bad_requests_lock_the_product_out_with_401(bridge: Loopback) -> None:
    with CommandServer(API_KEY, API_SALT, lockout=True) as srv:
        assert _post(srv, "commands/sms", {}, salt="bad").json() == {"result": 3102}
        second = _post(srv, "commands/sms", {}, salt="bad")
        assert second.status_code == 401
        good = _post(srv, "commands/sms", {"text": "hi", "from_extension": "101", "to_number": "7916"})
        assert good.status_code == 401


def test_injected_failure_replaces_the_next_answer(server: CommandServer) -> None:
    server.inject("commands/callback", result=5001)
    body = {"command_id": "c1", "from": {"extension": "101"}, "to_number": "79160000001"}
    assert _post(server, "commands/callback", body).json() == {"result": 5001}
    server.results["callback"] = 2240
    assert _post(server, "commands/callback", body).json() == {"result": 1000}


# --------------------------------------------------------------------------- command server: results, events


def test_callback_answers_1000_then_posts_result_and_click_to_call_events(
    server: CommandServer, bridge: Loopback
) -> None:
    body = {
        "command_id": "cmd-42",
        "from": {"extension": "102"},
        "to_number": "79165550000",
        "line_number": "74950001122",
    }
    response = _post(server, "commands/callback", body)
    assert response.json() == {"result": 1000}
    record = server.wait_for("commands/callback")
    assert record.json == body and record.signature_valid and record.form["vpbx_api_key"] == API_KEY

    bridge.wait(lambda r: r.path == "result/callback")
    assert server.wait_idle()
    results = [r.payload for r in bridge.requests if r.path == "result/callback"]
    assert results == [{"command_id": "cmd-42", "result": 1000}]  # exactly once
    for got in bridge.requests:
        assert verify(API_KEY, got.form["json"], API_SALT, got.form["sign"])
    legs = [r.payload for r in bridge.requests if r.path == "events/call"]
    assert legs and all(p["command_id"] == "cmd-42" for p in legs)
    assert any(p["call_state"] == "Connected" and p.get("from", {}).get("extension") == "102" for p in legs)
    assert any(p.get("to", {}).get("number") == "79165550000" for p in legs)
    assert "events/summary" in bridge.paths()
    assert len(server.deliveries) == len(bridge.requests) and all(d.acked for d in server.deliveries)


def test_callback_to_a_number_that_does_not_answer_has_no_connected_target_leg(
    server: CommandServer, bridge: Loopback
) -> None:
    server.outcomes["79160000009"] = "no_answer"
    _post(
        server,
        "commands/callback",
        {"command_id": "c9", "from": {"extension": "101"}, "to_number": "79160000009"},
    )
    assert server.wait_idle()
    summary = next(r.payload for r in bridge.requests if r.path == "events/summary")
    assert summary["talk_time"] == 0


def test_callback_to_a_busy_number_ends_the_dialled_leg_with_1121(
    server: CommandServer, bridge: Loopback
) -> None:
    server.outcomes["79160000008"] = "busy"
    _post(
        server,
        "commands/callback",
        {"command_id": "c8", "from": {"extension": "101"}, "to_number": "79160000008"},
    )
    assert server.wait_idle()
    dialled = [
        r.payload
        for r in bridge.requests
        if r.path == "events/call" and r.payload["to"].get("number") == "79160000008"
    ]
    assert dialled[-1]["call_state"] == "Disconnected" and dialled[-1]["disconnect_reason"] == 1121
    assert not any(p["call_state"] == "Connected" for p in dialled)


def test_callback_from_an_unknown_extension_fails_asynchronously_with_3100(
    server: CommandServer, bridge: Loopback
) -> None:
    body = {"command_id": "c2", "from": {"extension": "999"}, "to_number": "79160000002"}
    assert _post(server, "commands/callback", body).json() == {"result": 1000}
    [result] = bridge.wait(lambda r: r.path == "result/callback")
    assert result.payload == {"command_id": "c2", "result": 3100}
    assert server.wait_idle() and bridge.paths() == ["result/callback"]


def test_callback_group_rings_the_group_then_dials_the_visitor(
    server: CommandServer, bridge: Loopback
) -> None:
    server.groups["300"] = ("201", "202", "203")
    body = {"command_id": "grp-1", "from": "300", "to": "79161112233", "line_number": "74951234567"}
    assert _post(server, "commands/callback_group", body).json() == {"result": 1000}
    assert server.wait_idle()
    results = [r.payload for r in bridge.requests if r.path == "result/callback_group"]
    assert results == [{"command_id": "grp-1", "result": 1000}]
    legs = [r.payload for r in bridge.requests if r.path == "events/call"]
    assert all(p["command_id"] == "grp-1" for p in legs)
    group_legs = {p["call_id"] for p in legs if p.get("to", {}).get("acd_group") == "300"}
    assert len(group_legs) == 3
    connected = [p for p in legs if p["call_state"] == "Connected" and p["call_id"] in group_legs]
    assert len(connected) == 1
    winner = connected[0]
    visitor = [
        p for p in legs if p.get("to", {}).get("number") == "79161112233" and p["call_id"] not in group_legs
    ]
    assert visitor[0]["from"]["taken_from_call_id"] == winner["call_id"]
    assert visitor[0]["from"]["extension"] == winner["to"]["extension"]
    losers = [
        p
        for p in legs
        if p["call_state"] == "Disconnected" and p["call_id"] in group_legs - {winner["call_id"]}
    ]
    assert {p["disconnect_reason"] for p in losers} == {1182}
    assert {p["entry_id"] for p in legs} == {winner["entry_id"]}
    summary = next(r.payload for r in bridge.requests if r.path == "events/summary")
    assert summary["entry_result"] == 1 and summary["talk_time"] > 0
    # per call_id, seq counts up from 1
    for call_id in {p["call_id"] for p in legs}:
        assert [p["seq"] for p in legs if p["call_id"] == call_id] == list(
            range(1, 1 + sum(p["call_id"] == call_id for p in legs))
        )


def test_callback_group_from_a_number_rings_the_visitor_first(
    server: CommandServer, bridge: Loopback
) -> None:
    body = {"command_id": "grp-2", "from": "79162223344", "to": "200", "line_number": "74951234567"}
    _post(server, "commands/callback_group", body)
    assert server.wait_idle()
    legs = [r.payload for r in bridge.requests if r.path == "events/call"]
    first = legs[0]
    assert first["to"]["number"] == "79162223344" and first["call_state"] == "Appeared"
    group_legs = [p for p in legs if p["to"].get("acd_group") == "200"]
    assert {p["to"]["extension"] for p in group_legs} == {"101", "102", "103"}
    assert all(p["from"]["taken_from_call_id"] == first["call_id"] for p in group_legs)
    summary = next(r.payload for r in bridge.requests if r.path == "events/summary")
    assert summary["entry_result"] == 1 and summary["to"] == {"number": "79162223344"}


def test_callback_group_nobody_answers(server: CommandServer, bridge: Loopback) -> None:
    server.outcomes["200"] = "no_answer"
    body = {"command_id": "grp-3", "from": "200", "to": "79162223355", "line_number": "74951234567"}
    _post(server, "commands/callback_group", body)
    assert server.wait_idle()
    legs = [r.payload for r in bridge.requests if r.path == "events/call"]
    assert not any(p["call_state"] == "Connected" for p in legs)
    assert all(p["to"].get("number") != "79162223355" for p in legs)  # the visitor is never dialled
    summary = next(r.payload for r in bridge.requests if r.path == "events/summary")
    assert summary["entry_result"] == 0 and summary["talk_time"] == 0


def test_callback_group_without_a_group_fails_with_3100(server: CommandServer, bridge: Loopback) -> None:
    body = {"command_id": "g2", "from": "79160000000", "to": "79161111111", "line_number": "74951234567"}
    _post(server, "commands/callback_group", body)
    assert server.wait_idle()
    assert [r.payload for r in bridge.requests] == [{"command_id": "g2", "result": 3100}]


def test_route_of_an_unknown_call_posts_4101(server: CommandServer, bridge: Loopback) -> None:
    assert _post(
        server, "commands/route", {"command_id": "r1", "call_id": "nope", "to_number": "101"}
    ).json() == {"result": 1000}
    [result] = bridge.wait(lambda r: r.path == "result/route")
    assert result.payload == {"command_id": "r1", "result": 4101}


def test_route_of_a_known_ivr_leg_posts_the_routed_leg(server: CommandServer, bridge: Loopback) -> None:
    server.calls["ivr-leg-1"] = "entry-1"
    assert _post(
        server, "commands/route", {"command_id": "r2", "call_id": "ivr-leg-1", "to_number": "103"}
    ).json() == {"result": 1000}
    assert server.wait_idle()
    assert {"command_id": "r2", "result": 1000} in [
        r.payload for r in bridge.requests if r.path == "result/route"
    ]
    legs = [r.payload for r in bridge.requests if r.path == "events/call"]
    routed = [p for p in legs if p.get("from", {}).get("taken_from_call_id") == "ivr-leg-1"]
    assert routed and routed[0]["to"]["extension"] == "103" and routed[0]["command_id"] == "r2"
    assert {p["entry_id"] for p in legs} == {"entry-1"}
    # the IVR leg is gone now: a second route finds no call
    server.rate_limiter = None  # route allows 1 per 2 s
    _post(server, "commands/route", {"command_id": "r3", "call_id": "ivr-leg-1", "to_number": "101"})
    assert server.wait_idle()
    assert {"command_id": "r3", "result": 4101} in [r.payload for r in bridge.requests]


def test_a_call_waiting_in_the_ivr_is_routed_where_the_bridge_says(
    server: CommandServer, bridge: Loopback
) -> None:
    ivr_call_id = server.ring_ivr(customer="79163334455", wait=30)
    appeared = bridge.wait(lambda r: r.path == "events/call")[0].payload
    assert appeared["call_id"] == ivr_call_id and appeared["location"] == "ivr"
    assert appeared["from"]["number"] == "79163334455"
    _post(server, "commands/route", {"command_id": "rt-1", "call_id": ivr_call_id, "to_number": "102"})
    assert server.wait_idle()
    legs = [r.payload for r in bridge.requests if r.path == "events/call"]
    ivr_end = [p for p in legs if p["call_id"] == ivr_call_id and p["call_state"] == "Disconnected"]
    assert ivr_end[0]["disconnect_reason"] == 1100 and ivr_end[0]["seq"] == 2
    routed = [p for p in legs if p["from"].get("taken_from_call_id") == ivr_call_id]
    assert routed[0]["to"]["extension"] == "102" and routed[0]["command_id"] == "rt-1"
    assert routed[0]["from"]["number"] == "79163334455"
    assert [r.payload for r in bridge.requests if r.path == "result/route"] == [
        {"command_id": "rt-1", "result": 1000}
    ]
    summary = next(r.payload for r in bridge.requests if r.path == "events/summary")
    assert summary["create_time"] == appeared["timestamp"]


def test_a_call_left_in_the_ivr_goes_on_by_the_scheme(server: CommandServer, bridge: Loopback) -> None:
    ivr_call_id = server.ring_ivr(wait=0.2, fallback_extension="103")
    bridge.wait(lambda r: r.path == "events/summary", timeout=5)
    assert server.wait_idle()
    routed = [
        r.payload
        for r in bridge.requests
        if r.path == "events/call" and r.payload["from"].get("taken_from_call_id") == ivr_call_id
    ]
    assert routed[0]["to"]["extension"] == "103" and "command_id" not in routed[0]
    assert "result/route" not in bridge.paths()


def test_server_remembers_calls_it_played(server: CommandServer, bridge: Loopback) -> None:
    scenario = scenarios.build("incoming_answered", seed=21)
    live = [n for n in scenario.notifications if n.payload.get("call_state") not in ("Disconnected",)]
    live = [n for n in live if n.path == "events/call"]
    server.play(live)
    assert server.wait_idle()
    call_id = live[-1].payload["call_id"]
    assert server.calls[call_id] == scenario.entry_id
    _post(server, "commands/call/hangup", {"command_id": "h1", "call_id": call_id})
    bridge.wait(lambda r: r.path == "result/call/hangup")
    assert {"command_id": "h1", "result": 1000} in [r.payload for r in bridge.requests]


def test_hangup_of_an_ended_call_posts_4101(server: CommandServer, bridge: Loopback) -> None:
    scenario = scenarios.build("incoming_answered", seed=22)
    server.remember(scenario.notifications)
    call_id = next(n.payload["call_id"] for n in scenario.notifications if n.path == "events/call")
    _post(server, "commands/call/hangup", {"command_id": "h2", "call_id": call_id})
    [result] = bridge.wait(lambda r: r.path == "result/call/hangup")
    assert result.payload == {"command_id": "h2", "result": 4101}


def test_sms_posts_its_result_and_a_delivery_event(server: CommandServer, bridge: Loopback) -> None:
    body = {
        "command_id": "s1",
        "text": "Ваш заказ готов",
        "from_extension": "101",
        "to_number": "79160000003",
    }
    assert _post(server, "commands/sms", body).json() == {"result": 1000}
    assert server.wait_idle()
    payloads = {r.path: r.payload for r in bridge.requests}
    assert payloads["result/sms"] == {"command_id": "s1", "result": 1000}
    assert payloads["events/sms"]["command_id"] == "s1" and payloads["events/sms"]["reason"] == 1000
    assert _post(server, "commands/sms", {**body, "text": "я" * 269}).json() == {"result": 3100}


def test_recording_start_twice_is_4102(server: CommandServer, bridge: Loopback) -> None:
    server.calls["leg-r"] = "entry-r"
    body = {"command_id": "rec1", "call_id": "leg-r", "call_party_number": "101"}
    _post(server, "commands/recording/start", body)
    _post(server, "commands/recording/start", {**body, "command_id": "rec2"})
    assert server.wait_idle()
    results = [r.payload for r in bridge.requests if r.path == "result/recording/start"]
    assert {"command_id": "rec1", "result": 1000} in results and {
        "command_id": "rec2",
        "result": 4102,
    } in results
    started = [r.payload for r in bridge.requests if r.path == "events/recording"]
    assert started[0]["recording_state"] == "Started" and started[0]["command_id"] == "rec1"


def test_transfer_validates_method_and_answers(server: CommandServer, bridge: Loopback) -> None:
    scenario = scenarios.build("incoming_answered", seed=23)
    connected = next(n for n in scenario.notifications if n.payload.get("call_state") == "Connected")
    server.remember(scenario.notifications[: scenario.notifications.index(connected) + 1])
    body = {
        "command_id": "t1",
        "call_id": connected.payload["call_id"],
        "to_number": "102",
        "initiator": "101",
        "method": "teleport",
    }
    assert _post(server, "commands/transfer", body).json() == {"result": 3100}
    server.rate_limiter = None  # transfer allows 1 per 2 s
    assert _post(server, "commands/transfer", {**body, "method": "blind"}).json() == {"result": 1000}
    [result] = bridge.wait(lambda r: r.path == "result/transfer")
    assert result.payload == {"command_id": "t1", "result": 1000}


def test_command_without_command_id_gets_a_result_without_one(
    server: CommandServer, bridge: Loopback
) -> None:
    _post(server, "commands/callback", {"from": {"extension": "101"}, "to_number": "79160000004"})
    assert server.wait_idle()
    assert [r.payload for r in bridge.requests if r.path == "result/callback"] == [{"result": 1000}]
    assert all("command_id" not in r.payload for r in bridge.requests if r.path == "events/call")


def test_without_a_bridge_url_events_are_kept_in_the_outbox() -> None:
    with CommandServer(API_KEY, API_SALT) as srv:
        _post(
            srv, "commands/callback", {"command_id": "o1", "from": {"extension": "101"}, "to_number": "7916"}
        )
        assert srv.wait_idle()
        assert srv.outbox[0].path == "result/callback" and len(srv.outbox) > 1
        assert srv.deliveries == []


# --------------------------------------------------------------------------- command server: queries


def test_users_request_returns_the_configured_users(server: CommandServer) -> None:
    users = _post(server, "config/users/request", {}).json()["users"]
    assert [u["telephony"]["extension"] for u in users] == ["101", "102", "103"]
    assert "user_id" not in users[0]["general"] and "groups" not in users[0]
    assert users[0]["telephony"]["numbers"][0]["protocol"] == "sip"
    server.rate_limiter = None  # users/request allows 1 per 2 s
    one = _post(
        server, "config/users/request", {"extension": "102", "ext_fields": ["general.user_id", "groups"]}
    )
    [user] = one.json()["users"]
    assert user["telephony"]["extension"] == "102" and "user_id" in user["general"] and "groups" in user


def test_groups_list_their_operators_when_asked(server: CommandServer) -> None:
    server.groups["300"] = ("103",)
    bare = _post(server, "groups", {}).json()
    assert bare["result"] == 1000
    assert [(g["id"], g["extension"], "operators" in g) for g in bare["groups"]] == [
        (10050200, "200", False),
        (10050300, "300", False),
    ]
    [group] = _post(server, "groups", {"group_id": "10050300", "show_users": 1}).json()["groups"]
    assert group["operators"] == [
        {"id": 300000103, "name": "Вера Петрова", "extension": "103", "priority": 1, "order": 1}
    ]


def test_incominglines_lists_the_lines(server: CommandServer) -> None:
    server.lines = [{"line_id": 1, "number": "78001234567", "name": "8-800", "comment": "", "region": "",
                     "schema_id": 2, "schema_name": "IVR"}]  # fmt: skip
    assert _post(server, "incominglines", {}).json() == {"result": 1000, "lines": server.lines}


def test_recording_link_redirects_once_to_a_single_use_mp3(server: CommandServer) -> None:
    response = _post(server, "queries/recording/post", {"recording_id": "MToxMDA=", "action": "download"})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(server.url + "files/")
    audio = requests.get(location, timeout=5)
    assert audio.status_code == 200
    assert audio.headers["Content-Type"] == "audio/mpeg"
    assert audio.content.startswith(b"ID3") and audio.content[10:12] == b"\xff\xfb"
    assert requests.get(location, timeout=5).status_code == 404  # single use
    bad = _post(server, "queries/recording/post", {"recording_id": "MToxMDA=", "action": "stream"})
    assert bad.json() == {"result": 3100}


def test_signed_get_recording_link_redirects(server: CommandServer) -> None:
    link = server.recording_link("MToxMDAwNjA4NTo1MDA5NDExMDIyOjE=", "play")
    response = requests.get(link, timeout=5, allow_redirects=False)
    assert response.status_code == 302
    assert requests.get(response.headers["Location"], timeout=5).status_code == 200
    forged = link[:-4] + "0000"
    assert requests.get(forged, timeout=5, allow_redirects=False).json() == {"result": 3102}


def test_stats_are_204_first_then_csv_of_the_played_calls(server: CommandServer, bridge: Loopback) -> None:
    scenario = scenarios.build("incoming_answered", seed=30, start=1_767_300_000)
    server.play(scenario.notifications)
    assert server.wait_idle()
    request = {
        "date_from": "1767290000",
        "date_to": "1767310000",
        "fields": "entry_id, start, finish, answer, to_extension, disconnect_reason, records",
        "request_id": "req-1",
    }
    key = _post(server, "stats/request", request).json()["key"]
    first = _post(server, "stats/result", {"key": key})
    assert first.status_code == 204
    notice = bridge.wait(lambda r: r.path == "result/stat")[0]
    assert notice.payload == {"key": key, "request_id": "req-1"}
    second = _post(server, "stats/result", {"key": key})
    assert second.status_code == 200 and second.headers["Content-Type"].startswith("text/csv")
    rows = [line.split(";") for line in second.text.split("\n")]
    legs = {n.payload["call_id"] for n in scenario.notifications if n.path == "events/call"}
    assert len(rows) == len(legs)
    assert all(len(row) == 7 and row[0] == scenario.entry_id for row in rows)
    answered = [row for row in rows if row[3] != "0"]
    assert answered and all(row[6].startswith("[") and row[6].endswith("]") for row in rows)
    assert _post(server, "stats/result", {"key": "unknown"}).status_code == 404


def test_stats_request_over_a_month_is_refused(server: CommandServer) -> None:
    response = _post(server, "stats/request", {"date_from": "0", "date_to": str(40 * 86400)})
    assert response.json() == {"result": 3100}


# --------------------------------------------------------------------------- pure parts


def test_stats_csv_has_one_row_per_leg_in_the_requested_columns() -> None:
    scenario = scenarios.build("incoming_missed", seed=31)
    rows = legs_from_notifications(scenario.notifications)
    assert {r.call_id for r in rows} == {
        n.payload["call_id"] for n in scenario.notifications if n.path == "events/call"
    }
    text = render_csv(rows, DEFAULT_FIELDS)
    assert "\r" not in text and '"' not in text
    assert all(len(line.split(";")) == len(DEFAULT_FIELDS) for line in text.split("\n"))
    assert all(r.answer == 0 for r in rows)


def test_rate_limiter_classes_and_windows() -> None:
    now = [0.0]
    limiter = RateLimiter({"general": Limit(10, 100), "route": Limit(0.5, 10)}, clock=lambda: now[0])
    assert limit_class("commands/route") == "route"
    assert limit_class("queries/recording/link/abc/play/k/1/s") == "recording_access"
    assert limiter.allow("commands/route", "p1") and not limiter.allow("commands/route", "p1")
    assert limiter.allow("commands/route", "p2")  # another product has its own bucket
    now[0] = 2.0
    assert limiter.allow("commands/route", "p1")
    assert sum(limiter.allow("incominglines", "p1") for _ in range(12)) == 10


def test_lockout_allows_one_bad_request_per_two_minutes() -> None:
    now = [0.0]
    lockout = BadRequestLockout(clock=lambda: now[0])
    assert lockout.bad_request() is False and not lockout.blocked()
    now[0] = 130.0
    assert lockout.bad_request() is False
    now[0] = 131.0
    assert lockout.bad_request() is True and lockout.blocked()
    now[0] = 250.0
    assert not lockout.blocked()


# --------------------------------------------------------------------------- CLI


def test_cli_plays_scenarios_and_prints_a_line_per_call_and_a_summary(bridge: Loopback) -> None:
    args = ["incoming_answered", "incoming_missed", "--bridge-url", bridge.url, "--api-key", API_KEY]
    args += ["--api-salt", API_SALT, "--count", "2", "--shuffle", "--duplicate", "0.2", "--seed", "3"]
    result = CliRunner().invoke(simulate, args, env={"CALLBRIDGE_MANGO_API_KEY": None})
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert sum(line.startswith("incoming_answered") for line in lines) == 2
    assert sum(line.startswith("incoming_missed") for line in lines) == 2
    assert lines[-1].startswith("sent ") and "errors 0" in lines[-1]
    for got in bridge.requests:
        assert verify(API_KEY, got.form["json"], API_SALT, got.form["sign"])


def test_cli_burst_writes_a_report_and_fails_when_nothing_is_acked(tmp_path: Any) -> None:
    report = tmp_path / "burst.json"
    args = ["--burst", "50", "--bridge-url", f"http://127.0.0.1:{_free_port()}/mango", "--api-key", "k"]
    args += ["--api-salt", "s", "--timeout", "1", "--quiet", "--concurrency", "4", "--report", str(report)]
    result = CliRunner().invoke(simulate, args)
    assert result.exit_code == 1
    data = json.loads(report.read_text())
    assert data["sent"] >= 50 and data["acked"] == 0


def test_cli_reads_defaults_from_the_daemon_config(bridge: Loopback) -> None:
    port = int(bridge.url.split(":")[2].split("/")[0])

    class Secret:
        def get_secret_value(self) -> str:
            return API_SALT

    config = types.SimpleNamespace(
        mango=types.SimpleNamespace(api_key=API_KEY, api_salt=Secret()),
        http=types.SimpleNamespace(host="0.0.0.0", port=port),
    )
    result = CliRunner().invoke(
        simulate,
        ["click_to_call"],
        obj=types.SimpleNamespace(config=config),
        env={"CALLBRIDGE_MANGO_API_KEY": None},
    )
    assert result.exit_code == 0, result.output
    assert bridge.requests and verify(
        API_KEY, bridge.requests[0].form["json"], API_SALT, bridge.requests[0].form["sign"]
    )


def test_cli_without_credentials_or_with_an_unknown_scenario_is_a_usage_error() -> None:
    env = {"CALLBRIDGE_MANGO_API_KEY": None, "CALLBRIDGE_MANGO_API_SALT": None}
    assert CliRunner().invoke(simulate, ["--all", "--bridge-url", "http://x"], env=env).exit_code == 2
    bad = CliRunner().invoke(simulate, ["nonsense", "--api-key", "k", "--api-salt", "s"], env=env)
    assert bad.exit_code == 2 and "unknown scenario" in bad.output
    listed = CliRunner().invoke(simulate, ["--list"], env=env)
    assert listed.output.split() == list(scenarios.SCENARIO_NAMES)


def test_cli_serve_commands_runs_the_fake_api_until_interrupted(bridge: Loopback) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")}
    code = "from bridge.pbx.mango.simulator.cli import simulate; simulate()"
    args = ["--serve-commands", "--port", str(port), "--bridge-url", bridge.url, "--api-key", API_KEY]
    args += ["--api-salt", API_SALT, "--ivr-wait", "60", "ivr_then_route"]
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        url = f"http://127.0.0.1:{port}/vpbx/"
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.get(url + "commands/callback", timeout=1)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stdout and proc.stdout.read()
                time.sleep(0.1)
        ivr = bridge.wait(lambda r: r.path == "events/call")[0].payload
        assert ivr["location"] == "ivr"
        form = signed_form(
            API_KEY, API_SALT, {"command_id": "x1", "call_id": ivr["call_id"], "to_number": "101"}
        )
        assert requests.post(url + "commands/route", data=form, timeout=5).json() == {"result": 1000}
        bridge.wait(lambda r: r.path == "result/route")
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=15)
    assert f"CALLBRIDGE_MANGO_API_URL=http://127.0.0.1:{port}/vpbx/" in output
    assert "<- /vpbx/commands/route" in output and "-> 1000" in output
    assert "stopped" in output


# --------------------------------------------------------------------------- the bridge's own client agrees


def test_the_bridges_mango_client_works_against_the_fake(server: CommandServer, bridge: Loopback) -> None:
    from bridge.pbx.mango.client import MangoClient
    from bridge.pbx.mango.errors import MangoBadSign

    scenario = scenarios.build("incoming_answered", seed=40, start=1_767_400_000)
    server.play(scenario.notifications)
    server.rate_limiter = None  # the client paces itself; this test is about shapes
    with MangoClient(API_KEY, API_SALT, base_url=server.url, max_wait=10) as client:
        accepted = client.callback("101", "79165550001", command_id="cli-1")
        assert (accepted.command_id, accepted.result) == ("cli-1", 1000)
        assert [u.extension for u in client.users()] == ["101", "102", "103"]
        assert client.incoming_lines()[0].number == server.lines[0]["number"]
        link = client.recording_link("MToxMDAwNjA4NTo1MDA5NDExMDIyOjE=", "download")
        assert requests.get(link, timeout=5).content.startswith(b"ID3")
        assert requests.get(client.recording_get_link("a/b+c=", "play"), timeout=5).status_code == 200
        key = client.stats_request(1_767_390_000, 1_767_410_000, request_id="cli-stats")
        assert client.stats_result(key) is None  # 204 first
        result = client.stats_result(key)
        assert result is not None and {row.entry_id for row in result.rows} == {scenario.entry_id}
        assert client.hangup("no-such-leg", command_id="h-x").result == 1000  # the failure comes later
        [result] = bridge.wait(lambda r: r.path == "result/call/hangup")
        assert result.payload == {"command_id": "h-x", "result": 4101}
    with MangoClient(API_KEY, "wrong-salt", base_url=server.url) as bad, pytest.raises(MangoBadSign):
        bad.incoming_lines()


def test_everything_the_fake_posts_is_accepted_by_the_bridges_parser(
    server: CommandServer, bridge: Loopback
) -> None:
    from bridge.pbx.mango.parse import is_known_path, parse

    server.rate_limiter = None
    server.calls["leg-p"] = "entry-p"
    commands = [
        ("commands/callback", {"command_id": "p1", "from": {"extension": "101"}, "to_number": "79160000010"}),
        (
            "commands/callback_group",
            {"command_id": "p2", "from": "200", "to": "791600011", "line_number": "1"},
        ),
        (
            "commands/callback_group",
            {"command_id": "p3", "from": "791600012", "to": "200", "line_number": "1"},
        ),
        ("commands/recording/start", {"command_id": "p4", "call_id": "leg-p", "call_party_number": "101"}),
        ("commands/sms", {"command_id": "p5", "text": "hi", "from_extension": "101", "to_number": "7916"}),
        ("commands/route", {"command_id": "p6", "call_id": "leg-p", "to_number": "102"}),
    ]
    for path, body in commands:
        assert _post(server, path, body).json() == {"result": 1000}
    stats = {"date_from": "0", "date_to": "100", "request_id": "p7"}
    key = _post(server, "stats/request", stats).json()["key"]
    _post(server, "stats/result", {"key": key})
    ivr = server.ring_ivr(wait=0.1)
    bridge.wait(lambda r: r.path == "result/stat")
    entry_id = server.calls[ivr]  # the IVR scheme goes on after 0.1 s, to the call's summary
    bridge.wait(lambda r: r.path == "events/summary" and r.payload["entry_id"] == entry_id)
    assert server.wait_idle()
    assert {"result/callback", "result/callback_group", "result/sms", "result/route", "events/sms"} <= set(
        bridge.paths()
    )
    for got in bridge.requests:
        assert is_known_path(got.path), got.path
        parse(got.path, got.payload)  # raises ParseError on a shape the bridge would refuse
