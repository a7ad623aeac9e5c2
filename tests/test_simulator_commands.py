"""The Mango simulator answers commands the way Mango does, seen through `callbridge run`.

A live call is played into the daemon by the simulator's command API; the bridge's own Mango client then
hangs it up or transfers it through that API, and the read API shows what the simulator posted back: the
legs' `Disconnected`, the transfer's legs and the summary. `callbridge simulate` gives every run fresh ids,
so playing a scenario twice makes two calls; `--fixed-ids` replays the same call. The `groups` query
answers in the documented shape (PDF §3.7.2) with its filters.
"""

from __future__ import annotations

import random
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.client import MangoClient
from bridge.pbx.mango.signing import signed_form
from bridge.pbx.mango.simulator import CommandServer
from tests.daemon import API_KEY, API_SALT, CALLBRIDGE, Daemon, wait_call, wait_closed
from tests.fakes.webhook_receiver import WebhookReceiver
from tests.test_admin_support import PASSWORD, panel_session
from tests.test_e2e_calls import WEBHOOK_SECRET, start_daemon

GROUP_FIELDS = {
    "id",
    "name",
    "description",
    "extension",
    "dial_alg_group",
    "dial_alg_users",
    "auto_redirect",
    "auto_dial",
    "line_id",
    "use_dynamic_ivr",
    "use_dynamic_seq_num",
    "melody_id",
}
OPERATOR_FIELDS = {"id", "name", "extension", "priority", "order"}


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    instance = WebhookReceiver(secret=WEBHOOK_SECRET).start()
    yield instance
    instance.stop()


@pytest.fixture
def daemon(database_url: str, tmp_path: Path, receiver: WebhookReceiver) -> Iterator[Daemon]:
    instance = start_daemon(database_url, tmp_path, receiver)
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def mango(daemon: Daemon) -> Iterator[CommandServer]:
    server = CommandServer(API_KEY, API_SALT, bridge_url=daemon.mango_url, rng=random.Random(7)).start()
    try:
        yield server
    finally:
        server.stop()


def _talking(mango: CommandServer, daemon: Daemon, seed: int) -> tuple[scenarios.Scenario, str]:
    """An incoming call answered by 101 and still in progress (its events up to the answer and the
    recording's start), known to the bridge as answered. Returns it and the answered leg's call_id."""
    scenario = scenarios.build("incoming_answered", seed=seed)
    notes = list(scenario.notifications)
    connected = next(i for i, n in enumerate(notes) if n.payload.get("call_state") == "Connected")
    mango.play(notes[: connected + 2])  # up to Connected and the recording's Started
    assert mango.wait_idle(10)
    wait_call(daemon, scenario.entry_id, lambda c: c["status"] == "answered")
    return scenario, str(notes[connected].payload["call_id"])


def _all_acked(mango: CommandServer) -> None:
    assert mango.wait_idle(10)
    assert [(d.path, d.status) for d in mango.deliveries if not d.acked] == []


def _events_of(receiver: WebhookReceiver, entry_id: str, kind: str, timeout: float = 20.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [b for b in receiver.accepted_for(entry_id) if b["type"] == kind]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {kind} for {entry_id}: {receiver.accepted_for(entry_id)}")


def test_hangup_ends_the_call_with_its_legs_and_summary(mango: CommandServer, daemon: Daemon) -> None:
    scenario, leg = _talking(mango, daemon, seed=31)
    with MangoClient(API_KEY, API_SALT, base_url=mango.url) as client:
        assert client.hangup(leg, command_id="hang-1").result == 1000
    call = wait_closed(daemon, scenario.entry_id, recordings=1)
    assert (call["status"], call["answered_by"], call["missed"]) == ("ended", "101", False)
    assert call["disconnect_reason"] == 1181  # ended by an external system's command (mango.md §4)
    legs = {item["call_id"]: item for item in call["legs"]}
    ivr = next(n.payload["call_id"] for n in scenario.notifications if n.payload.get("location") == "ivr")
    assert set(legs) == {ivr, leg}
    assert (legs[ivr]["state"], legs[ivr]["disconnect_reason"]) == ("Disconnected", 1100)
    assert (legs[leg]["state"], legs[leg]["disconnect_reason"], legs[leg]["seq"]) == ("Disconnected", 1181, 3)
    assert [r["ready"] for r in call["recordings"]] == [True]  # the running recording completed
    _all_acked(mango)
    paths = [d.path for d in mango.deliveries]
    assert {"result/call/hangup", "events/summary", "events/record/added"} <= set(paths)
    assert paths.index("events/summary") > max(i for i, p in enumerate(paths) if p == "events/call")
    [result] = [d.payload for d in mango.deliveries if d.path == "result/call/hangup"]
    assert result == {"command_id": "hang-1", "result": 1000}
    with MangoClient(API_KEY, API_SALT, base_url=mango.url) as client:
        client.hangup(leg, command_id="hang-2")  # the leg has ended: Mango answers 4101 later
    mango.wait_for("commands/call/hangup", count=2)
    assert mango.wait_idle(10)
    assert {"command_id": "hang-2", "result": 4101} in [d.payload for d in mango.deliveries]


@pytest.mark.parametrize(("method", "kind"), [("blind", "blind"), ("hold", "consultative")])
def test_transfer_shows_as_transferred_answered_by_the_first_employee(
    mango: CommandServer, daemon: Daemon, receiver: WebhookReceiver, method: str, kind: str
) -> None:
    scenario, leg = _talking(mango, daemon, seed=32)
    with MangoClient(API_KEY, API_SALT, base_url=mango.url) as client:
        accepted = client.transfer(leg, "102", method, initiator="101", command_id=f"move-{kind}")  # type: ignore[arg-type]
        assert accepted.result == 1000
    call = wait_closed(daemon, scenario.entry_id)
    assert (call["status"], call["missed"]) == ("ended", False)
    assert call["answered_by"] == "101"
    assert (call["responsible"], call["extensions"]) == ("102", ["101", "102"])
    legs = {item["call_id"]: item for item in call["legs"]}
    assert (legs[leg]["state"], legs[leg]["disconnect_reason"]) == ("Disconnected", 1120)
    [new] = [item for item in call["legs"] if item["to_extension"] == "102"]
    assert new["taken_from_call_id"] == leg and new["command_id"] == f"move-{kind}"
    assert (new["transferred_from"], new["transfer_kind"]) == ("101", kind)
    assert [item["call_id"] for item in call["legs"] if item["transferred_from"]] == [new["call_id"]]
    assert (new["state"], new["from_number"], new["from_extension"]) == (
        "Disconnected",
        scenario.expected.customer_number,
        None,
    )
    [moved] = [b["data"] for b in _events_of(receiver, scenario.entry_id, "call.transferred")]
    assert (moved["extension"], moved["transferred_from"], moved["transfer_kind"]) == ("102", "101", kind)
    [ended] = [b["data"] for b in _events_of(receiver, scenario.entry_id, "call.ended")]
    assert ended["extra"]["transferred_to"] == "102" and ended["extension"] == "101"
    _all_acked(mango)
    assert {"command_id": f"move-{kind}", "result": 1000} in [d.payload for d in mango.deliveries]
    # The call's page in the panel marks the transfer, its kind, who answered and who is responsible now.
    daemon.create_user("boss", PASSWORD, "admin")
    page = panel_session(daemon.url, "boss").get(f"{daemon.url}/admin/calls/{scenario.entry_id}", timeout=10)
    words = {"blind": "blind", "consultative": "after a consultation"}[kind]
    assert f"from 101 to 102 ({words})" in page.text and f"transferred from 101, {words}" in page.text
    assert re.search(r"Answered by</th><td>101<", page.text) and re.search(
        r"Responsible now</th><td>102<", page.text
    )


def _simulate(daemon: Daemon, *args: str) -> str:
    """`callbridge simulate ...` with the daemon's settings (key, salt and port come from them)."""
    done = subprocess.run(
        [CALLBRIDGE, "simulate", *args],
        env=daemon.env,
        cwd=daemon.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _entry_ids(output: str) -> list[str]:
    """The entry_id column of `callbridge simulate`'s table (the rows between the rule and the summary)."""
    lines = output.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("scenario"))
    assert set(lines[header + 1]) <= {"-", " "}, "a dashed rule under the header"
    rows = [line for line in lines[header + 2 :] if line and not line.startswith(("played", "sent"))]
    return [line.split()[1] for line in rows if len(line.split()) >= 5]


def test_running_a_scenario_twice_makes_two_calls_unless_ids_are_fixed(daemon: Daemon) -> None:
    first = _entry_ids(_simulate(daemon, "incoming_answered"))
    second = _entry_ids(_simulate(daemon, "incoming_answered"))
    assert len(first) == len(second) == 1 and first != second
    for entry_id in first + second:
        assert wait_closed(daemon, entry_id)["status"] == "ended"
    fixed = [_entry_ids(_simulate(daemon, "incoming_answered", "--fixed-ids", "--seed", "5")) for _ in "ab"]
    assert len(fixed[0]) == 1 and fixed[0] == fixed[1] and fixed[0] != first
    wait_closed(daemon, fixed[0][0])
    listed = daemon.api("/api/calls", limit="50").json()["items"]
    assert sorted(item["entry_id"] for item in listed) == sorted(first + second + fixed[0])


# --------------------------------------------------------------------------- groups (no daemon needed)


@pytest.fixture
def groups_api() -> Iterator[CommandServer]:
    server = CommandServer(API_KEY, API_SALT, rng=random.Random(3), rate_limits=False)
    server.groups = {"200": ("101", "102", "103"), "300": ("103",)}
    with server:
        yield server


def _groups(server: CommandServer, payload: Any) -> dict:
    response = requests.post(server.url + "groups", data=signed_form(API_KEY, API_SALT, payload), timeout=5)
    assert response.status_code == 200
    return response.json()


def test_groups_answer_in_the_documented_shape(groups_api: CommandServer) -> None:
    every = _groups(groups_api, {})
    assert every["result"] == 1000 and [g["extension"] for g in every["groups"]] == ["200", "300"]
    for group in every["groups"]:
        assert set(group) == GROUP_FIELDS
        assert isinstance(group["id"], int) and group["id"] != int(group["extension"])
    shown = _groups(groups_api, {"show_users": 1})["groups"]
    assert [set(g) for g in shown] == [GROUP_FIELDS | {"operators"}] * 2
    assert shown[0]["operators"] == [
        {"id": 300000101, "name": "Анна Смирнова", "extension": "101", "priority": 1, "order": 1},
        {"id": 300000102, "name": "Борис Иванов", "extension": "102", "priority": 1, "order": 2},
        {"id": 300000103, "name": "Вера Петрова", "extension": "103", "priority": 1, "order": 3},
    ]
    assert all(set(o) == OPERATOR_FIELDS for g in shown for o in g["operators"])
    assert "operators" not in _groups(groups_api, {"show_users": "0"})["groups"][0]


def test_groups_filters(groups_api: CommandServer) -> None:
    ids = {g["extension"]: g["id"] for g in _groups(groups_api, {})["groups"]}

    def extensions(payload: dict) -> list[str]:
        return [g["extension"] for g in _groups(groups_api, payload)["groups"]]

    assert extensions({"group_id": ids["300"]}) == extensions({"group_id": str(ids["300"])}) == ["300"]
    assert extensions({"group_id": 1}) == []
    assert extensions({"operator_extension": "103"}) == ["200", "300"]
    assert extensions({"operator_extension": "101"}) == ["200"]
    assert extensions({"operator_extension": "109"}) == []
    assert extensions({"operator_id": 300000103}) == ["200", "300"]
    assert extensions({"operator_id": "300000102"}) == ["200"]
    assert extensions({"group_id": ids["300"], "operator_extension": "101"}) == []
    [group] = _groups(groups_api, {"group_id": ids["300"], "show_users": 1})["groups"]
    assert [o["extension"] for o in group["operators"]] == ["103"]
    with MangoClient(API_KEY, API_SALT, base_url=groups_api.url) as client:  # the bridge's own reader
        [parsed] = client.groups(ids["300"])
        assert (parsed.group_id, parsed.extension, parsed.operators) == (str(ids["300"]), "300", ("103",))


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({"group_id": "sales"}, 3100),
        ({"group_id": -5}, 3100),
        ({"group_id": True}, 3100),
        ({"operator_id": "abc"}, 3100),
        ({"operator_extension": "10x"}, 3100),
        ({"show_users": 2}, 3100),
        ({"show_users": "yes"}, 3100),
        ({"group_id": [1, 2]}, 3104),
        ({"operator_extension": {"extension": "101"}}, 3104),
    ],
)
def test_groups_refuse_bad_filters_with_mangos_codes(
    groups_api: CommandServer, payload: dict, code: int
) -> None:
    assert _groups(groups_api, payload) == {"result": code}


# --------------------------------------------------------------------------- what the simulator posts


@pytest.fixture
def offline() -> Iterator[CommandServer]:
    """A command API with no bridge: what it would post stays in `outbox`."""
    with CommandServer(API_KEY, API_SALT, rng=random.Random(5), rate_limits=False) as server:
        yield server


def _command(server: CommandServer, path: str, payload: dict) -> list[Any]:
    """Post a command; once it is answered and its results queued, the notifications it produced."""
    before = len(server.outbox)
    response = requests.post(server.url + path, data=signed_form(API_KEY, API_SALT, payload), timeout=5)
    assert response.json() == {"result": 1000}
    assert server.wait_idle(10)
    return server.outbox[before:]


def test_hangup_in_the_ivr_ends_a_missed_call(offline: CommandServer) -> None:
    ivr = offline.ring_ivr(wait=60)
    notes = _command(offline, "commands/call/hangup", {"command_id": "h-ivr", "call_id": ivr})
    assert [n.path for n in notes] == ["result/call/hangup", "events/call", "events/summary"]
    ended, summary = notes[1].payload, notes[2].payload
    assert (ended["call_id"], ended["call_state"], ended["disconnect_reason"], ended["seq"]) == (
        ivr,
        "Disconnected",
        1181,
        2,
    )
    assert (summary["call_direction"], summary["talk_time"], summary["entry_result"]) == (1, 0, 0)
    assert summary["to"] == {"number": offline.line} and summary["disconnect_reason"] == 1181
    assert summary["end_time"] == ended["timestamp"] >= summary["create_time"]


def test_hangup_ends_every_live_leg_of_the_call(offline: CommandServer) -> None:
    scenario = scenarios.build("ring_group_second_answers", seed=9, extensions=("101", "102", "103"))
    ringing = [n for n in scenario.notifications if n.payload.get("call_state") in ("Appeared",)]
    offline.remember([scenario.notifications[0], scenario.notifications[1], *ringing[1:]])
    legs = [n.payload["call_id"] for n in ringing[1:]]
    notes = _command(offline, "commands/call/hangup", {"call_id": legs[0]})
    ended = [n.payload for n in notes if n.path == "events/call"]
    assert sorted(e["call_id"] for e in ended) == sorted(legs)
    assert {(e["call_state"], e["disconnect_reason"], e["seq"]) for e in ended} == {("Disconnected", 1181, 2)}
    summary = notes[-1].payload
    assert notes[-1].path == "events/summary" and summary["entry_result"] == 0
    assert summary["to"] == {"extension": "101"}  # the first party rung; no number for a group (§2.2)


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"to_number": "79990000000"}, 3200),  # not an employee or a group
        ({"initiator": "109"}, 3100),  # not a party of the leg
        ({"call_id": "no-such-leg"}, 4101),
    ],
)
def test_transfer_refusals_come_as_the_async_result(offline: CommandServer, change: dict, code: int) -> None:
    scenario = scenarios.build("incoming_answered", seed=12)
    connected = next(n for n in scenario.notifications if n.payload.get("call_state") == "Connected")
    offline.remember(scenario.notifications[: scenario.notifications.index(connected) + 1])
    body = {
        "command_id": "t-x",
        "call_id": connected.payload["call_id"],
        "to_number": "102",
        "initiator": "101",
    }
    notes = _command(offline, "commands/transfer", {**body, **change})
    assert [(n.path, n.payload) for n in notes] == [
        ("result/transfer", {"command_id": "t-x", "result": code})
    ]


def test_transfer_of_a_ringing_leg_is_4100_and_to_a_group_reaches_its_first_operator(
    offline: CommandServer,
) -> None:
    scenario = scenarios.build("incoming_answered", seed=13)
    connected = next(n for n in scenario.notifications if n.payload.get("call_state") == "Connected")
    upto = scenario.notifications.index(connected)
    offline.remember(scenario.notifications[:upto])  # still ringing
    body = {"call_id": connected.payload["call_id"], "to_number": "200", "initiator": "101"}
    assert _command(offline, "commands/transfer", body)[0].payload == {"result": 4100}
    offline.remember([connected])
    offline.groups["200"] = ("103", "102")
    notes = _command(offline, "commands/transfer", body)
    rung = [n.payload for n in notes if n.path == "events/call" and n.payload["call_id"] != body["call_id"]]
    assert {e["to"]["extension"] for e in rung} == {"103"} and rung[-1]["transfer"] == "blind"
    # the summary, then the new leg's recording (started when 103 answered) completes
    assert [n.path for n in notes][-3:] == ["events/summary", "events/recording", "events/record/added"]


def test_a_second_hangup_right_after_the_first_is_4101(offline: CommandServer) -> None:
    ivr = offline.ring_ivr(wait=60)
    offline.pace = 0.5  # the first hangup's events are still being posted when the second comes
    for command_id in ("first", "second"):
        body = signed_form(API_KEY, API_SALT, {"command_id": command_id, "call_id": ivr})
        assert requests.post(offline.url + "commands/call/hangup", data=body, timeout=5).json() == {
            "result": 1000
        }
    assert offline.wait_idle(10)
    results = [n.payload for n in offline.outbox if n.path == "result/call/hangup"]
    assert results == [{"command_id": "first", "result": 1000}, {"command_id": "second", "result": 4101}]
    assert [n.path for n in offline.outbox].count("events/summary") == 1
