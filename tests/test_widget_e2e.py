"""End to end through the real `callbridge run` (two HTTP worker processes, the scheduler thread), the
Mango simulator's command API and the webhook connector: a visitor's request rings the group, then the
visitor; outside hours it waits for the schedule and is dialled exactly once; abuse is refused.

Skipped until the widget is wired into the daemon (`GET /widget/callback.js` answers 200): see
docs/widget.md, "Wiring".
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from bridge.pbx.mango.simulator import CommandServer
from tests.conftest import BACKENDS, _pg_database
from tests.daemon import API_KEY, API_SALT, CALLBRIDGE, Daemon
from tests.fakes.webhook_receiver import WebhookReceiver

WEBHOOK_SECRET = "widget-webhook-secret-0123456789"
LINE = "74951234567"
GROUP = "200"
SHOP = "http://shop.localhost:8765"  # the page's origin: not the daemon's


@dataclass
class Bridge:
    """The daemon and the fakes around it, shared by a module's tests on one backend."""

    daemon: Daemon
    mango: CommandServer
    receiver: WebhookReceiver
    workdir: Path

    @property
    def url(self) -> str:
        return self.daemon.url

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [CALLBRIDGE, *args],
            env=self.daemon.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def add_site(self, key: str, *options: str, origin: str = SHOP) -> None:
        self.cli(
            "widget", "add-site", "--key", key, "--origin", origin, "--group", GROUP, "--line", LINE, *options
        )

    def config(self, site: str, origin: str | None = SHOP) -> requests.Response:
        headers = {"Origin": origin} if origin else {}
        return requests.get(f"{self.url}/widget/config", params={"site": site}, headers=headers, timeout=10)

    def post(self, site: str, body: dict[str, Any], origin: str | None = SHOP) -> requests.Response:
        headers = {"Origin": origin} if origin else {}
        return requests.post(
            f"{self.url}/widget/callback", params={"site": site}, json=body, headers=headers, timeout=15
        )

    def status(self, token: str, origin: str = SHOP) -> dict[str, Any]:
        response = requests.get(f"{self.url}/widget/status/{token}", headers={"Origin": origin}, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def commands_to(self, number: str) -> list[Any]:
        return [
            r for r in self.mango.received if r.path == "commands/callback_group" and r.json["to"] == number
        ]


def widget_wired(url: str) -> bool:
    try:
        return requests.get(f"{url}/widget/callback.js", timeout=5).status_code == 200
    except requests.RequestException:
        return False


def start_bridge(database_url: str, workdir: Path, env: dict[str, str] | None = None) -> Iterator[Bridge]:
    """The daemon with the simulator and the webhook receiver; `env` adds settings (CALLBRIDGE_...)."""
    receiver = WebhookReceiver(secret=WEBHOOK_SECRET).start()
    mango = CommandServer(API_KEY, API_SALT).start()
    daemon = Daemon(
        database_url,
        workdir,
        env={
            "CALLBRIDGE_MANGO_API_URL": mango.url,
            "CALLBRIDGE_CONNECTORS_WEBHOOK_URL": receiver.url,
            "CALLBRIDGE_CONNECTORS_WEBHOOK_SECRET": WEBHOOK_SECRET,
            **(env or {}),
        },
    ).start()
    mango.bridge_url = daemon.mango_url
    try:
        assert widget_wired(daemon.url), "callbridge run does not serve /widget/callback.js"
        yield Bridge(daemon, mango, receiver, workdir)
    finally:
        daemon.stop()
        mango.stop(timeout=1)
        receiver.stop()


def bridge_on_each_backend(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    env: dict[str, str] | None = None,
) -> Iterator[Bridge]:
    """The body of the module-scoped `bridge` fixture (the browser and fraud tests make their own from it)."""
    workdir = tmp_path_factory.mktemp("widget-e2e")
    if request.param == "sqlite":
        yield from start_bridge(f"sqlite:///{workdir / 'callbridge.db'}", workdir, env)
    else:
        database = _pg_database(f"cb_widget_{os.getpid()}_{int(time.time() * 1000) % 10**8}")
        try:
            yield from start_bridge(next(database), workdir, env)
        finally:
            database.close()  # drops the database, also when the tests were skipped


bridge = pytest.fixture(scope="module", params=BACKENDS)(bridge_on_each_backend)


def fill_form(bridge: Bridge, site: str, phone: str, **extra: Any) -> dict[str, Any]:
    """What the widget sends after a visitor typed `phone` (the config fetched, then a human pause)."""
    config = bridge.config(site)
    assert config.status_code == 200, config.text
    time.sleep(1.05)  # the sites in these tests ask for at least 1 s between showing and sending
    return {
        "phone": phone,
        "form_token": config.json()["form_token"],
        "visitor_id": extra.pop("visitor_id", "e2e-visitor-0001"),
        "page": f"{SHOP}/catalog?utm_source=google",
        "referrer": "https://www.google.com/",
        "lang": "ru",
        "utm": {"utm_source": "google", "utm_campaign": "spring"},
        **extra,
    }


def form_tokens(bridge: Bridge, site: str, count: int) -> list[str]:
    """`count` form tokens (each serves one accepted request), old enough for a 1 s minimum fill time."""
    found = []
    for _ in range(count):
        config = bridge.config(site)
        assert config.status_code == 200, config.text
        found.append(config.json()["form_token"])
    time.sleep(1.05)
    return found


def test_request_rings_the_managers_then_the_visitor_and_reaches_the_connectors(bridge: Bridge) -> None:
    bridge.add_site("e2e-open", "--hours", "daily 00:00-24:00", "--min-fill", "1")
    bridge.mango.pace = 0.25  # a simulated second lasts 0.25 s, so every step of the call can be seen
    try:
        answer = bridge.post("e2e-open", fill_form(bridge, "e2e-open", "8 (916) 555-01-01"))
        assert answer.status_code == 202, answer.text
        assert answer.headers["Access-Control-Allow-Origin"] == SHOP
        state = answer.json()
        assert state["state"] == "calling_managers" and state["countdown"] == 30

        [command] = bridge.commands_to("79165550101")
        assert command.signature_valid and command.result == 1000
        assert command.json["from"] == GROUP and command.json["line_number"] == LINE
        assert command.json["command_id"].startswith("wcb-")

        seen = [state["state"]]
        deadline = time.time() + 40
        while time.time() < deadline and seen[-1] != "connected":
            current = bridge.status(state["token"])["state"]
            if current != seen[-1]:
                seen.append(current)
            time.sleep(0.1)
        assert seen == ["calling_managers", "connecting", "connected"]
    finally:
        bridge.mango.pace = 0

    # The lead reached the connector, with its UTM tags, durably through the outbox.
    entry_id = f"widget-{state['token']}"
    deadline = time.time() + 20
    while time.time() < deadline and not bridge.receiver.accepted_for(entry_id):
        time.sleep(0.1)
    [lead] = bridge.receiver.accepted_for(entry_id)
    assert lead["type"] == "callback.requested"
    data = lead["data"]
    assert data["customer_number"] == "+79165550101" and data["line_number"] == LINE
    assert data["extra"]["utm"] == {"utm_source": "google", "utm_campaign": "spring"}
    assert data["extra"]["page"] == f"{SHOP}/catalog?utm_source=google"
    assert data["extra"]["referrer"] == "https://www.google.com/" and data["extra"]["site"] == "e2e-open"

    # The call itself is in the store, tied to the command.
    calls = bridge.daemon.api("/api/calls").json()
    items = calls["items"] if isinstance(calls, dict) else calls
    assert any(c.get("command_id") == command.json["command_id"] for c in items)


def test_outside_hours_request_is_dialled_once_when_the_schedule_opens(bridge: Bridge) -> None:
    today = datetime.now(ZoneInfo("Europe/Moscow")).date().isoformat()
    bridge.add_site("e2e-closed", "--hours", "daily 00:00-24:00", "--holiday", today, "--min-fill", "1")
    answer = bridge.post("e2e-closed", fill_form(bridge, "e2e-closed", "+7 916 555-02-02"))
    assert answer.status_code == 202, answer.text
    state = answer.json()
    assert state["state"] == "scheduled" and state["next_attempt_at"]
    time.sleep(2.0)  # the scheduler runs twice a second: nothing may be dialled while closed
    assert not bridge.commands_to("79165550202")

    # Time travel: the holiday is lifted, so the schedule is open now.
    bridge.cli("widget", "set-site", "e2e-closed", "--clear-holidays")
    bridge.mango.wait_for(
        "commands/callback_group", timeout=10, where=lambda r: r.json["to"] == "79165550202"
    )
    time.sleep(3.0)  # several more scheduler passes (and both web workers) may not dial it again
    [command] = bridge.commands_to("79165550202")
    assert command.signature_valid and command.json["from"] == GROUP
    assert bridge.status(state["token"])["state"] in ("calling_managers", "connecting", "connected")


def test_abuse_is_refused_across_worker_processes(bridge: Bridge) -> None:
    bridge.add_site(
        "e2e-abuse",
        "--hours",
        "daily 00:00-24:00",
        "--min-fill",
        "1",
        "--limit",
        "ip=3/600",
        "--limit",
        "visitor=100/600",
    )
    sent_before = len([r for r in bridge.mango.received if r.path == "commands/callback_group"])
    body = fill_form(bridge, "e2e-abuse", "+79165550300")
    tokens = form_tokens(bridge, "e2e-abuse", 6)
    answers = []
    for i in range(6):  # one address, different numbers: requests spread over both web workers
        answers.append(
            bridge.post("e2e-abuse", {**body, "phone": f"+7916555030{i}", "form_token": tokens[i]})
        )
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429, 429]
    refused = answers[-1]
    assert refused.json()["code"] == "rate_limited" and refused.json()["message"]
    assert int(refused.headers["Retry-After"]) > 0
    time.sleep(1.0)
    sent = [r for r in bridge.mango.received if r.path == "commands/callback_group"]
    assert len(sent) - sent_before == 3

    # One number from many "visitors": the per-number limit (3 per hour by default).
    bridge.add_site("e2e-number", "--hours", "daily 00:00-24:00", "--min-fill", "1", "--limit", "ip=100/600")
    body = fill_form(bridge, "e2e-number", "+79165550400")
    tokens = form_tokens(bridge, "e2e-number", 5)
    codes = [
        bridge.post(
            "e2e-number", {**body, "visitor_id": f"e2e-visitor-{i:04d}", "form_token": tokens[i]}
        ).status_code
        for i in range(5)
    ]
    assert codes == [202, 202, 202, 429, 429]
    assert len(bridge.commands_to("79165550400")) == 3

    # Bots: the honeypot, and a form sent right after it was shown.
    body = fill_form(bridge, "e2e-number", "+79165550500")
    assert bridge.post("e2e-number", {**body, "website": "http://spam.example"}).status_code == 400
    fresh = bridge.config("e2e-number").json()["form_token"]
    too_fast = bridge.post("e2e-number", {**body, "form_token": fresh})
    assert too_fast.status_code == 400 and too_fast.json()["code"] == "refused"
    assert not bridge.commands_to("79165550500")

    # A page on another origin gets no CORS, for the config and the request.
    evil = "http://evil.localhost:9999"
    for response in (bridge.config("e2e-number", origin=evil), bridge.post("e2e-number", body, origin=evil)):
        assert response.status_code == 403 and "Access-Control-Allow-Origin" not in response.headers
    preflight = requests.options(
        f"{bridge.url}/widget/callback",
        params={"site": "e2e-number"},
        headers={"Origin": evil, "Access-Control-Request-Method": "POST"},
        timeout=10,
    )
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert not bridge.commands_to("79165550500")
