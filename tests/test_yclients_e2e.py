"""End to end: the simulator's scenarios through `callbridge run` into the YClients contract fake.

One daemon per backend (module-scoped) with ``[connectors.yclients]`` pointing at the fake on loopback;
the simulator's `Poster` plays Mango's notifications. The tests assert the exact requests YClients received
(setup once; popups for incoming calls only; one history row per call with the right type, status, duration,
user and recording link), that 429 bursts lose nothing and send nothing twice, that the 5/s and 200/min
limits are never exceeded, and that a popup's caller card shows the client's last visit.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator.poster import Poster
from bridge.recordings.links import RecordingLinks
from tests.conftest import BACKENDS, _pg_database
from tests.daemon import API_KEY, API_SALT, CALLBRIDGE, Daemon, wait_closed
from tests.fakes.realtime_client import Client
from tests.fakes.yclients import VOIP, FakeYClients

PARTNER = "partner-e2e-" + "5a4b3c2d" * 4
CRM = "crm-e2e-" + "1f2e3d4c" * 4
USER = "user-e2e-" + "9e8d7c6b" * 4
COMPANY = 4321
PUBLIC = "https://calls.example.com"
SECRET = "yclients-e2e-secret-" + "s" * 24
LINK_TTL = 90 * 86400
STAFF = {"101": "31", "102": "32", "103": "33"}
KNOWN = "79161234567"
LINE = "74951234567"

pytestmark = pytest.mark.daemon


class Stack:
    """The daemon, the fake and a Mango poster, shared by the module's tests."""

    def __init__(self, daemon: Daemon, fake: FakeYClients) -> None:
        self.daemon, self.fake = daemon, fake
        self.poster = Poster(daemon.mango_url, API_KEY, API_SALT)


def config_file(workdir: Path, fake: FakeYClients) -> Path:
    lines = [
        "[connectors.yclients]",
        f'api_url = "{fake.url}"',
        f"company_id = {COMPANY}",
        "",
        "[connectors.yclients.staff]",
        *[f'"{ext}" = "{sid}"' for ext, sid in STAFF.items()],
    ]
    path = workdir / "callbridge.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def seed(fake: FakeYClients) -> None:
    """A known client with two visits to staff 32 (extension 102), one to 31, and one booked."""
    now = datetime.now(UTC)

    def at(days: int) -> str:
        return (now + timedelta(days=days)).replace(microsecond=0).isoformat()

    anna = fake.add_client("Анна Соколова", "8 (916) 123-45-67")
    fake.add_record(anna, at(-60), "Стрижка", (32, "Мария"))
    fake.add_record(anna, at(-30), "Окрашивание", (32, "Мария"))
    fake.add_record(anna, at(-5), "Маникюр", (31, "Ольга"))
    fake.add_record(anna, at(7), "Стрижка", (32, "Мария"), attendance=2)


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("yclients")
    if request.param == "sqlite":
        databases: Iterator[str] = iter([f"sqlite:///{workdir / 'callbridge.db'}"])
    else:
        databases = _pg_database(f"cb_test_{uuid.uuid4().hex[:12]}")
    database_url = next(databases)
    fake = FakeYClients(partner_token=PARTNER, crm_token=CRM, user_token=USER, company_id=COMPANY).start()
    seed(fake)
    env = {
        "CALLBRIDGE_CONFIG": str(config_file(workdir, fake)),
        "CALLBRIDGE_HTTP_PUBLIC_URL": PUBLIC,
        "CALLBRIDGE_SECURITY_SECRET_KEY": SECRET,
        "CALLBRIDGE_CONNECTORS_YCLIENTS_PARTNER_TOKEN": PARTNER,
        "CALLBRIDGE_CONNECTORS_YCLIENTS_CRM_TOKEN": CRM,
        "CALLBRIDGE_CONNECTORS_YCLIENTS_USER_TOKEN": USER,
    }
    daemon = Daemon(database_url, workdir, env=env)
    try:
        daemon.start()
        stack = Stack(daemon, fake)
        yield stack
        stack.poster.close()
    finally:
        daemon.stop()
        fake.stop()
        for _ in databases:  # drops the PostgreSQL database
            pass


def split_at_ringing(notes: list[scenarios.Notification]) -> tuple[list, list]:
    """The notifications up to the moment the employees' phones ring, and the rest."""
    for i, note in enumerate(notes):
        payload = note.payload
        if (
            note.path == "events/call"
            and payload.get("location") == "abonent"
            and payload.get("call_state") != "Appeared"
        ):
            return notes[:i], notes[i:]
    return notes, []


def ringing_seen(stack: Stack, scenario: scenarios.Scenario) -> None:
    quoted = urllib.parse.quote(scenario.entry_id, safe="")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        response = stack.daemon.api(f"/api/calls/{quoted}")
        if response.status_code == 200 and response.json()["status"] == "ringing":
            return
        time.sleep(0.05)
    raise AssertionError(f"{scenario.entry_id} never rang")


def play(stack: Stack, scenario: scenarios.Scenario) -> None:
    """Ring first (so the tracker emits `call.ringing` while the legs ring), then the rest."""
    head, tail = split_at_ringing(list(scenario.notifications))
    assert not stack.poster.play(head).errors
    if scenario.expected.direction == "incoming" and tail:
        ringing_seen(stack, scenario)
    assert not stack.poster.play(tail).errors


def summary(scenario: scenarios.Scenario) -> dict[str, Any]:
    return next(n.payload for n in scenario.notifications if n.path == "events/summary")


def checked_link(link: str) -> str:
    """A row's recording link checked as the daemon's signed link, cut to its unsigned part."""
    url, _, query = link.partition("?")
    token = urllib.parse.parse_qs(query, strict_parsing=True)["t"][0]
    RecordingLinks(lambda: SECRET, PUBLIC, ttl_seconds=LINK_TTL).verify(
        urllib.parse.unquote(url.rsplit("/", 1)[1]), token
    )
    return url


def row(scenario: scenarios.Scenario, phone: str, user: str | None, **fields: Any) -> dict[str, Any]:
    s = summary(scenario)
    answered = s["talk_time"] > 0
    body: dict[str, Any] = {
        "command": "history",
        "type": scenario.expected.direction,
        "crm_token": CRM,
        "phone": phone,
        "call_id": scenario.entry_id,
        "status": "success" if answered else "missed",
        "duration": s["end_time"] - s["talk_time"] if answered else 0,
        "date": datetime.fromtimestamp(s["create_time"], UTC).isoformat(timespec="seconds"),
    }
    if user:
        body["user"] = user
    if answered and scenario.expected.recording_ids:
        body["link"] = (
            f"{PUBLIC}/recordings/{urllib.parse.quote(scenario.expected.recording_ids[0], safe='')}"
        )
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


def voip_since(fake: FakeYClients, mark: int) -> list[dict[str, Any]]:
    with fake.lock:
        seen = fake.seen[mark:]
    out = []
    for s in seen:
        if s.path == VOIP and s.outcome == "ok":
            body = dict(s.body)
            if "link" in body:
                body["link"] = checked_link(body["link"])
            out.append(body)
    return out


def popup(phone: str, user: str, line: str | None = LINE) -> dict[str, Any]:
    body = {"command": "event", "type": "incoming", "crm_token": CRM, "phone": phone, "user": user}
    if line:
        body["diversion"] = line
    return body


def test_scenarios_reach_yclients_as_the_exact_requests(stack: Stack) -> None:
    fake = stack.fake
    # 1. A known client, answered by 101: setup (once for the module), the popup, one row with the link.
    s1 = scenarios.build("incoming_answered", seed=11, customer=KNOWN, extensions=("101",))
    mark = len(fake.seen)
    play(stack, s1)
    wait_closed(stack.daemon, s1.entry_id, recordings=1)
    assert fake.wait_until(lambda: len(fake.rows(s1.entry_id)) == 1)
    got = voip_since(fake, mark)
    if fake.setups == ["enable"] and got[0]["command"] == "setup":  # the module's first delivery
        assert got.pop(0) == {"command": "setup", "type": "enable", "crm_token": CRM}
    assert got == [popup(KNOWN, "101"), row(s1, KNOWN, "101", diversion=LINE)]

    # 2. A new number rings a group of three and nobody answers: three popups, one missed row for the
    #    responsible (the first in the chain), no link, no duration.
    new = "79035550101"
    s2 = scenarios.build("incoming_missed", seed=12, customer=new, extensions=("101", "102", "103"))
    mark = len(fake.seen)
    play(stack, s2)
    assert fake.wait_until(lambda: len(fake.rows(s2.entry_id)) == 1)
    got = voip_since(fake, mark)
    assert sorted(json.dumps(g, sort_keys=True) for g in got[:3]) == sorted(
        json.dumps(popup(new, ext), sort_keys=True) for ext in ("101", "102", "103")
    )
    assert got[3:] == [row(s2, new, "101", diversion=LINE)]

    # 3. An outgoing call from 102: no popup, one outgoing row.
    s3 = scenarios.build("outgoing_answered", seed=13, customer="79250001122", extensions=("102",))
    mark = len(fake.seen)
    play(stack, s3)
    wait_closed(stack.daemon, s3.entry_id, recordings=len(s3.expected.recording_ids))
    assert fake.wait_until(lambda: len(fake.rows(s3.entry_id)) == 1)
    got = voip_since(fake, mark)
    assert len(got) == 1 and got[0]["command"] == "history"
    assert got == [row(s3, "79250001122", "102", diversion=got[0].get("diversion"))]

    # 4. An internal call 101 -> 102: no popup, an internal row: taken by 102, the other party 101.
    s4 = scenarios.build("internal_call", seed=14, extensions=("101", "102"))
    mark = len(fake.seen)
    play(stack, s4)
    assert fake.wait_until(lambda: len(fake.rows(s4.entry_id)) == 1)
    got = voip_since(fake, mark)
    assert [g["command"] for g in got] == ["history"]
    assert (got[0]["type"], got[0]["phone"], got[0]["user"]) == ("internal", "101", "102")

    # 5. 101 answers and hands the client over to 102 (blind transfer): the row names 102, whom the client
    #    spoke with last.
    s5 = scenarios.build("blind_transfer", seed=15, customer="79250003344", extensions=("101", "102"))
    play(stack, s5)
    assert fake.wait_until(lambda: len(fake.rows(s5.entry_id)) == 1)
    transferred = fake.rows(s5.entry_id)[0]
    assert (transferred["status"], transferred["user"]) == ("success", "102")

    assert fake.setups == ["enable"]
    assert fake.violations == 0 and fake.max_in(1.0) <= 5
    assert fake.recorded(outcome=None) == fake.recorded()  # nothing refused, nothing invalid, nothing ignored


def test_429_bursts_lose_nothing_and_send_nothing_twice(stack: Stack) -> None:
    fake = stack.fake
    calls = []
    for i in range(6):
        number = f"7903777{i:04d}"
        kind = "incoming_answered" if i % 2 == 0 else "incoming_missed"
        calls.append(scenarios.build(kind, seed=100 + i, customer=number, extensions=("103",)))
    mark = len(fake.seen)
    fake.throttle(3.0)  # YClients answers 429 to everything for a while
    heads, tails = [], []
    for scenario in calls:
        head, tail = split_at_ringing(list(scenario.notifications))
        heads += head
        tails += tail
    assert not stack.poster.play(heads, concurrency=4).errors
    for scenario in calls:
        ringing_seen(stack, scenario)
    assert not stack.poster.play(tails, concurrency=4).errors
    assert fake.wait_until(lambda: all(len(fake.rows(s.entry_id)) == 1 for s in calls), timeout=60)
    got = voip_since(fake, mark)
    for scenario in calls:
        answered = scenario.name == "incoming_answered"
        rows = fake.rows(scenario.entry_id)
        assert len(rows) == 1 and rows[0]["status"] == ("success" if answered else "missed")
        number = scenario.expected.customer_number
        assert sum(1 for g in got if g["command"] == "event" and g["phone"] == number) <= 1
    assert fake.scripted_429 > 0, "the throttle never bit"
    assert fake.violations == 0 and fake.max_in(1.0) <= 5 and fake.max_in(60.0) <= 200


def cli_token(daemon: Daemon, extension: str) -> str:
    out = subprocess.run(
        [CALLBRIDGE, "token", "--extension", extension],
        env=daemon.env,
        cwd=daemon.workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1]


def test_the_popup_card_shows_the_clients_last_visit_and_usual_staff(stack: Stack) -> None:
    port = int(stack.daemon.env["CALLBRIDGE_WS_PORT"])
    olga = Client(port, cli_token(stack.daemon, "101"))
    try:
        olga.wait_for("hello")
        scenario = scenarios.build("incoming_answered", seed=21, customer=KNOWN, extensions=("101",))
        head, tail = split_at_ringing(list(scenario.notifications))
        assert not stack.poster.play(head).errors
        ringing = olga.wait_for("call.ringing", lambda m: m["entry_id"] == scenario.entry_id, timeout=15)
        card = ringing["card"]
        if ringing.get("card_pending") or not card or not card.get("complete"):
            card = olga.wait_for("call.card", lambda m: m["entry_id"] == scenario.entry_id, timeout=15)[
                "card"
            ]
        assert card["name"] == "Анна Соколова" and "yclients" in card["sources"]
        details = card["details"]["yclients"]
        assert details["last_visit_service"] == "Маникюр" and details["last_visit_staff"] == "Ольга"
        assert details["next_visit_service"] == "Стрижка"
        assert (details["usual_staff"], details["usual_extension"]) == ("Мария", "102")
        assert card["responsible"] == {"name": "Мария", "extension": "102", "source": "yclients"}
        assert not stack.poster.play(tail).errors
        assert stack.fake.wait_until(lambda: len(stack.fake.rows(scenario.entry_id)) == 1)
    finally:
        olga.close()


def test_connectors_setup_switches_the_telephony_on_again_and_off(stack: Stack) -> None:
    def setup(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CALLBRIDGE, "connectors", "setup", "yclients", *args],
            env=stack.daemon.env,
            cwd=stack.daemon.workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )

    before = list(stack.fake.setups)
    off = setup("--off")
    assert off.returncode == 0 and "switched off in YClients" in off.stdout, off.stderr
    on = setup()
    assert on.returncode == 0 and "switched on in YClients" in on.stdout, on.stderr
    assert stack.fake.setups == [*before, "disable", "enable"]  # sent whatever was recorded before
    assert CRM not in off.stdout + off.stderr + on.stdout + on.stderr and PARTNER not in on.stdout + on.stderr
