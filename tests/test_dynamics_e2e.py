"""End to end: the simulator's scenarios through `callbridge run` into the Dataverse contract fake.

One daemon per backend (module-scoped) with ``[connectors.dynamics]`` pointing at the fake over TLS (its own
certificate, trusted through ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE``); msal gets its tokens from the fake's
token endpoint. The tests assert the exact phone calls, tasks and leads Dataverse holds afterwards, that a
token refused mid-run is replaced once, that a 429 burst loses nothing and sends nothing twice, that the
limit is never exceeded, and that a popup's caller card carries the contact.
"""

from __future__ import annotations

import math
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator import CommandServer
from bridge.pbx.mango.simulator.command_server import default_users
from bridge.pbx.mango.simulator.poster import Poster
from connectors.dynamics.records import record_id
from tests.conftest import BACKENDS, _pg_database
from tests.daemon import API_KEY, API_SALT, CALLBRIDGE, Daemon, wait_closed
from tests.fakes.dynamics import FakeDataverse, certificate
from tests.fakes.realtime_client import Client

SECRET_VALUE = "dyn-e2e-secret-" + "7c6b5a49" * 4
PUBLIC = "https://calls.example.com"
KEY = "dynamics-e2e-secret-" + "k" * 24
USERS = {ext: f"00000000-0000-0000-0000-000000000{ext}" for ext in ("101", "102", "103")}
KNOWN = "79161234567"

pytestmark = pytest.mark.daemon


class Stack:
    """The daemon, the fake and a Mango poster, shared by the module's tests."""

    def __init__(self, daemon: Daemon, fake: FakeDataverse, mango: CommandServer, anna: str) -> None:
        self.daemon, self.fake, self.mango, self.anna = daemon, fake, mango, anna
        self.poster = Poster(daemon.mango_url, API_KEY, API_SALT)


def config_file(workdir: Path, fake: FakeDataverse) -> Path:
    lines = [
        "[connectors.dynamics]",
        f'url = "{fake.url}"',
        f'tenant_id = "{fake.tenant}"',
        f'client_id = "{fake.client_id}"',
        f'authority_host = "{fake.url}"',
        'unknown_caller = "lead"',
        "",
        "[connectors.dynamics.users]",
        *[f'"{ext}" = "{uid}"' for ext, uid in USERS.items()],
    ]
    path = workdir / "callbridge.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("dynamics")
    if request.param == "sqlite":
        databases: Iterator[str] = iter([f"sqlite:///{workdir / 'callbridge.db'}"])
    else:
        databases = _pg_database(f"cb_test_{uuid.uuid4().hex[:12]}")
    database_url = next(databases)
    cert, key = certificate(workdir)
    fake = FakeDataverse(cert=cert, key=key, client_secret=SECRET_VALUE).start()
    fake.systemusers.update(USERS.values())
    anna = fake.add_contact("Анна Соколова", owner=USERS["102"], telephone1="+7 (916) 123-45-67")
    mango = CommandServer(API_KEY, API_SALT, rate_limits=False).start()
    env = {
        "CALLBRIDGE_MANGO_API_URL": mango.url,
        "CALLBRIDGE_CONFIG": str(config_file(workdir, fake)),
        "CALLBRIDGE_HTTP_PUBLIC_URL": PUBLIC,
        "CALLBRIDGE_SECURITY_SECRET_KEY": KEY,
        "CALLBRIDGE_CONNECTORS_DYNAMICS_CLIENT_SECRET": SECRET_VALUE,
        "REQUESTS_CA_BUNDLE": str(cert),
        "SSL_CERT_FILE": str(cert),
    }
    daemon = Daemon(database_url, workdir, env=env)
    mango.bridge_url = daemon.mango_url
    try:
        daemon.start()
        stack = Stack(daemon, fake, mango, anna)
        yield stack
        stack.poster.close()
        log = daemon.log_path.read_text(errors="replace")
        assert SECRET_VALUE not in log and not any(token in log for token in fake.tokens)
    finally:
        daemon.stop()
        mango.stop(timeout=1)
        fake.stop()
        for _ in databases:  # drops the PostgreSQL database
            pass


def play(stack: Stack, scenario: scenarios.Scenario) -> None:
    assert not stack.poster.play(list(scenario.notifications)).errors


def summary(scenario: scenarios.Scenario) -> dict[str, Any]:
    return next(n.payload for n in scenario.notifications if n.path == "events/summary")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def phonecall(stack: Stack, scenario: scenarios.Scenario) -> dict[str, Any] | None:
    rows = stack.fake.rows("phonecalls", activityid=record_id(scenario.entry_id, "phonecall"))
    return rows[0] if rows else None


def closed(stack: Stack, scenario: scenarios.Scenario) -> bool:
    row = phonecall(stack, scenario)
    return row is not None and row["statecode"] == 1


def expected_call(
    scenario: scenarios.Scenario, number: str, regarding: tuple[str, str] | None, owner: str
) -> dict[str, Any]:
    s = summary(scenario)
    talk = s["end_time"] - s["talk_time"] if s["talk_time"] else 0
    incoming = scenario.expected.direction == "incoming"
    word = ("Incoming call from" if talk else "Missed call from") if incoming else "Outgoing call to"
    parties = []
    row: dict[str, Any] = {
        "activityid": record_id(scenario.entry_id, "phonecall"),
        "subject": f"{word} +{number}",
        "phonenumber": f"+{number}",
        "directioncode": not incoming,
        "actualstart": iso(s["create_time"]),
        "actualend": iso(s["end_time"]),
        "actualdurationminutes": math.ceil(talk / 60),
        "statecode": 1,
        "statuscode": 4 if incoming else 2,
        "_ownerid_value": USERS[owner],
    }
    if regarding:
        table, rid = regarding
        row[f"regardingobjectid_{table}_phonecall"] = f"/{table}s({rid})"
        parties.append({"party": f"/{table}s({rid})", "mask": 1 if incoming else 2})
    parties.append({"party": f"/systemusers({USERS[owner]})", "mask": 2 if incoming else 1})
    row["parties"] = parties
    return row


def comparable(row: dict[str, Any] | None) -> dict[str, Any]:
    assert row is not None
    drop = {"description", "_regardingobjectid_value", "ownerid"}
    return {k: v for k, v in row.items() if k not in drop}


def test_calls_reach_dynamics_as_the_exact_records(stack: Stack) -> None:
    fake = stack.fake
    # 1. Anna (a contact, written "+7 (916) 123-45-67") answered by 101: one phone call regarding her,
    #    closed as Received, the exact seconds and the signed recording link in the description.
    s1 = scenarios.build("incoming_answered", seed=31, customer=KNOWN, extensions=("101",))
    play(stack, s1)
    wait_closed(stack.daemon, s1.entry_id, recordings=1)
    assert fake.wait_until(lambda: closed(stack, s1))
    row = phonecall(stack, s1)
    assert comparable(row) == expected_call(s1, KNOWN, ("contact", stack.anna), "101")
    s = summary(s1)
    talk = s["end_time"] - s["talk_time"]
    recording = urllib.parse.quote(s1.expected.recording_ids[0], safe="")
    assert row is not None and f"({talk} s)" in row["description"]
    assert f"Recording: {PUBLIC}/recordings/{recording}?t=" in row["description"]

    # 2. A new number rings 101, 102, 103 and nobody answers: a lead, a missed call regarding it, and a
    #    task for the lead's owner, the first employee rung (101).
    new = "79035550101"
    s2 = scenarios.build("incoming_missed", seed=32, customer=new, extensions=("101", "102", "103"))
    play(stack, s2)
    lead_id = record_id(s2.entry_id, "lead")
    assert fake.wait_until(lambda: closed(stack, s2) and fake.rows("tasks", _regardingobjectid_value=lead_id))
    assert fake.rows("leads", telephone1=f"+{new}") == [
        {
            "leadid": lead_id,
            "telephone1": f"+{new}",
            "subject": f"Call from +{new}",
            "lastname": f"+{new}",
            "fullname": f"+{new}",
            "ownerid": f"/systemusers({USERS['101']})",
            "_ownerid_value": USERS["101"],
            "statecode": 0,
            "statuscode": 1,
        }
    ]
    assert comparable(phonecall(stack, s2)) == expected_call(s2, new, ("lead", lead_id), "101")
    (task,) = fake.rows("tasks", _regardingobjectid_value=lead_id)
    end = summary(s2)["end_time"]
    assert (task["subject"], task["_ownerid_value"], task["scheduledend"]) == (
        f"Call back +{new}",
        USERS["101"],
        iso(end + 30 * 60),
    )

    # 3. Anna calls again and 101 misses it: the task goes to her owner (102), not to the one rung.
    s3 = scenarios.build("incoming_missed", seed=33, customer=KNOWN, extensions=("101",))
    play(stack, s3)
    assert fake.wait_until(
        lambda: closed(stack, s3) and fake.rows("tasks", _regardingobjectid_value=stack.anna)
    )
    (task,) = fake.rows("tasks", _regardingobjectid_value=stack.anna)
    assert task["_ownerid_value"] == USERS["102"]

    # 4. 102 calls a number Dataverse does not know: a phone call made, no lead (only callers become leads).
    out = "79250001122"
    s4 = scenarios.build("outgoing_answered", seed=34, customer=out, extensions=("102",))
    play(stack, s4)
    assert fake.wait_until(lambda: closed(stack, s4))
    assert comparable(phonecall(stack, s4)) == expected_call(s4, out, None, "102")
    assert fake.rows("leads", telephone1=f"+{out}") == []

    assert len(fake.rows("phonecalls")) == 4 and len(fake.rows("tasks")) == 2
    assert fake.violations == 0
    assert fake.recorded(outcome=None) == fake.recorded()  # nothing refused, invalid or duplicated


def test_a_token_refused_mid_run_is_replaced_once(stack: Stack) -> None:
    fake = stack.fake
    issued, refused = fake.tokens_issued, fake.refused_tokens
    fake.revoke_tokens()  # the token msal holds is refused from now on, though msal thinks it fresh
    scenario = scenarios.build("incoming_answered", seed=41, customer="79035550202", extensions=("103",))
    play(stack, scenario)
    assert fake.wait_until(lambda: closed(stack, scenario))
    # Every request that carried the refused token (the lookup and the delivery may race) got one 401;
    # msal was asked once for a new token, which all of them then shared.
    assert fake.tokens_issued == issued + 1 and fake.refused_tokens > refused
    assert len(fake.rows("phonecalls", activityid=record_id(scenario.entry_id, "phonecall"))) == 1


def test_a_token_about_to_expire_is_refreshed_before_it_is_refused(stack: Stack) -> None:
    fake = stack.fake
    fake.lifetimes.append(302)  # the next token: msal uses it for 2 s of its 302, then asks again
    fake.revoke_tokens()
    first = scenarios.build("incoming_answered", seed=42, customer="79035550303", extensions=("103",))
    play(stack, first)
    assert fake.wait_until(lambda: closed(stack, first))
    issued_at = max(fake.tokens.values()) - 302
    issued, refused = fake.tokens_issued, fake.refused_tokens
    assert fake.wait_until(lambda: time.monotonic() > issued_at + 2.1, timeout=5)
    second = scenarios.build("incoming_answered", seed=43, customer="79035550404", extensions=("103",))
    play(stack, second)
    assert fake.wait_until(lambda: closed(stack, second))
    # A new token before the old one ran out, and not one request refused for it.
    assert fake.tokens_issued == issued + 1 and fake.refused_tokens == refused


def test_429_bursts_lose_nothing_and_send_nothing_twice(stack: Stack) -> None:
    fake = stack.fake
    calls = []
    for i in range(6):
        kind = "incoming_answered" if i % 2 == 0 else "incoming_missed"
        calls.append(scenarios.build(kind, seed=200 + i, customer=f"7903888{i:04d}", extensions=("103",)))
    fake.throttle(2.0, retry_after=1)  # service protection answers 429 to everything for a while
    notes = [n for scenario in calls for n in scenario.notifications]
    assert not stack.poster.play(notes, concurrency=4).errors
    assert fake.wait_until(lambda: all(closed(stack, s) for s in calls), timeout=60)
    for scenario in calls:
        lead = record_id(scenario.entry_id, "lead")
        assert len(fake.rows("leads", leadid=lead)) == 1
        missed = scenario.name == "incoming_missed"
        assert fake.wait_until(
            lambda lead=lead, missed=missed: len(fake.rows("tasks", _regardingobjectid_value=lead)) == missed
        )  # noqa: E501
    assert fake.scripted_429 > 0, "the throttle never bit"
    assert fake.violations == 0
    assert not fake.recorded("duplicate")


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


def test_the_popup_card_carries_the_contact(stack: Stack) -> None:
    port = int(stack.daemon.env["CALLBRIDGE_WS_PORT"])
    olga = Client(port, cli_token(stack.daemon, "101"))
    try:
        olga.wait_for("hello")
        scenario = scenarios.build("incoming_answered", seed=51, customer=KNOWN, extensions=("101",))
        play(stack, scenario)
        ringing = olga.wait_for("call.ringing", lambda m: m["entry_id"] == scenario.entry_id, timeout=15)
        card = ringing["card"]
        if ringing.get("card_pending") or not card or not card.get("complete"):
            card = olga.wait_for("call.card", lambda m: m["entry_id"] == scenario.entry_id, timeout=15)[
                "card"
            ]
        assert card["name"] == "Анна Соколова" and "dynamics" in card["sources"]
        assert card["details"]["dynamics"] == {"contactid": stack.anna}
        assert card["responsible"] == {"name": None, "extension": "102", "source": "dynamics"}
        assert stack.fake.wait_until(lambda: closed(stack, scenario))
    finally:
        olga.close()


def run_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CALLBRIDGE, *args],
        env=stack.daemon.env,
        cwd=stack.daemon.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_callbridge_check_explains_the_setup(stack: Stack) -> None:
    done = run_cli(stack, "check", "--skip-mango")
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        f"dynamics: Connected to Dynamics 365 at 127.0.0.1 as application user {stack.fake.app_user}. "
        "3 extension(s) mapped to Dynamics users. Unknown callers become: lead. "
        f"Channel page for Dynamics: {PUBLIC}/connectors/dynamics/cif" in done.stdout
    )
    assert SECRET_VALUE not in done.stdout + done.stderr


def test_employee_import_maps_new_extensions_the_daemon_then_uses(stack: Stack) -> None:
    fake = stack.fake
    gleb = fake.add_user("Глеб Соколов", main_phone="104")
    darya = fake.add_user("Дарья Козлова", email="USER105@example.com")
    fake.add_user("callbridge", email="user101@example.com", application=True)
    stack.mango.users = default_users(("101", "102", "103", "104", "105"))
    done = run_cli(stack, "connectors", "import-employees", "dynamics")
    assert done.returncode == 0, done.stderr
    assert "2 extension(s) matched to Dynamics users (1 by Main Phone, 1 by e-mail)" in done.stdout
    assert f"104 -> systemuser {gleb}" in done.stdout and f"105 -> systemuser {darya}" in done.stdout
    # The daemon's deliveries read the stored map: 105's call is owned by Darya.
    scenario = scenarios.build("incoming_answered", seed=71, customer="79035550505", extensions=("105",))
    play(stack, scenario)
    assert fake.wait_until(lambda: closed(stack, scenario))
    row = phonecall(stack, scenario)
    assert row is not None and row["_ownerid_value"] == darya
