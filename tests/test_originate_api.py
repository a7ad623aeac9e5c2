"""`POST /api/calls/originate` through `callbridge run` against the Mango command simulator."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bridge.pbx.mango.simulator import CommandServer
from tests.daemon import API_KEY, API_SALT, API_TOKEN, Daemon
from tests.test_realtime_e2e import cli_token


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[tuple[Daemon, CommandServer]]:
    daemon = Daemon(database_url, tmp_path)
    mango = CommandServer(API_KEY, API_SALT, bridge_url=daemon.mango_url, rate_limits=False).start()
    daemon.env["CALLBRIDGE_MANGO_API_URL"] = mango.url
    daemon.start()
    yield daemon, mango
    mango.stop(timeout=1)
    daemon.stop()


def originate(daemon: Daemon, body: object, token: str | None = API_TOKEN) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(f"{daemon.url}/api/calls/originate", json=body, headers=headers, timeout=15)


def status(daemon: Daemon, command_id: str, token: str = API_TOKEN) -> requests.Response:
    return requests.get(
        f"{daemon.url}/api/calls/originate/{command_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_click_to_call_sends_a_signed_callback_and_tracks_result_and_call(
    stack: tuple[Daemon, CommandServer],
) -> None:
    daemon, mango = stack
    answer = originate(daemon, {"extension": "101", "number": "+7 (916) 123-45-67"})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    command_id = body["command_id"]
    # The answer carries the command's state as stored when it is sent: "done" when Mango's result came
    # back through the webhook first (both mean Mango took the command; "done" is checked fully below).
    assert body["status"] in ("accepted", "done") and body["number"] == "+79161234567"
    sent = mango.wait_for("commands/callback", where=lambda r: r.json["command_id"] == command_id)
    assert sent.signature_valid
    assert sent.json["from"]["extension"] == "101" and sent.json["to_number"] == "79161234567"
    # Mango's /result/callback and the call's events come back through the webhook.
    deadline = time.time() + 20
    tracked: dict = {}
    while time.time() < deadline:
        tracked = status(daemon, command_id).json()
        if tracked["status"] == "done" and tracked["call"] and tracked["call"]["closed"]:
            break
        time.sleep(0.2)
    assert tracked["status"] == "done" and tracked["async_result"] == 1000
    assert tracked["call"]["command_id"] == command_id
    assert tracked["call"]["direction"] == "outgoing" and tracked["call"]["answered_by"] == "101"
    assert tracked["reason"] is None

    # An extension the PBX does not have: Mango refuses it later (3100), and the status says why in words.
    refused = originate(daemon, {"extension": "199", "number": "+79161234567"}).json()["command_id"]
    deadline = time.time() + 20
    while (failed := status(daemon, refused).json())["status"] != "failed" and time.time() < deadline:
        time.sleep(0.1)
    assert (failed["status"], failed["async_result"]) == ("failed", 3100)
    assert failed["reason"] == (
        "bad command parameters (result 3100): most often the extension is no employee's in the PBX; "
        "check it in the PBX's cabinet"
    )


def test_numbers_in_any_format_are_normalised_and_bursts_are_limited(
    stack: tuple[Daemon, CommandServer],
) -> None:
    daemon, mango = stack
    for extension, number in enumerate(["8 916 123-45-67", "79161234567", "+7-916-1234567", "9161234567"]):
        answer = originate(daemon, {"extension": 110 + extension, "number": number})
        assert answer.status_code == 202, answer.text
        command_id = answer.json()["command_id"]
        sent = mango.wait_for("commands/callback", where=lambda r, c=command_id: r.json["command_id"] == c)
        assert sent.json["to_number"] == "79161234567"
    codes = [originate(daemon, {"extension": "104", "number": "89161234567"}).status_code for _ in range(8)]
    assert 202 in codes and 429 in codes


def test_bad_input_gets_422_with_the_reason_and_tokens_are_checked(
    stack: tuple[Daemon, CommandServer],
) -> None:
    daemon, mango = stack
    bad_number = originate(daemon, {"extension": "101", "number": "12"})
    assert bad_number.status_code == 422
    assert bad_number.json()["field"] == "number" and "number" in bad_number.json()["error"]
    too_long = originate(daemon, {"extension": "101", "number": "+7 999 123 45 67 89"})
    assert too_long.status_code == 422 and too_long.json()["field"] == "number"
    bad_extension = originate(daemon, {"extension": "10 1", "number": "89161234567"})
    assert bad_extension.status_code == 422 and bad_extension.json()["field"] == "extension"
    assert originate(daemon, {"extension": "101"}).status_code == 422
    assert originate(daemon, ["not", "an", "object"]).status_code == 400
    assert originate(daemon, {"extension": "101", "number": "89161234567"}, token=None).status_code == 401
    assert originate(daemon, {"extension": "101", "number": "89161234567"}, token="forged").status_code == 401

    # An employee's token places calls from its own extension only (and the extension may be left out).
    employee = cli_token(daemon, "--extension", "103")
    assert originate(daemon, {"extension": "101", "number": "89161234567"}, token=employee).status_code == 403
    own = originate(daemon, {"number": "89161234567"}, token=employee)
    assert own.status_code == 202 and own.json()["extension"] == "103"
    assert status(daemon, own.json()["command_id"], token=employee).status_code == 200
    other = originate(daemon, {"extension": "101", "number": "89161234567"}).json()["command_id"]
    assert status(daemon, other, token=employee).status_code == 404, "not another employee's command"
    assert status(daemon, "no-such-command").status_code == 404

    # Mango's refusals are passed on in plain words.
    mango.inject("commands/callback", result=3105)
    refused = originate(daemon, {"extension": "101", "number": "89161234567"})
    assert refused.status_code == 502 and "3105" in refused.json()["error"]
    assert not [r for r in mango.received if not r.signature_valid]
