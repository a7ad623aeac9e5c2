"""End to end: the simulator's scenarios through `callbridge run` into the retailCRM contract fake.

One daemon per store backend serves the whole module (the tests use different numbers and calls). The
notifications are posted as the phones ring: after each leg that rings an employee, the test waits for
that employee's popup before posting on (in real time phones ring for seconds). The assertions are on the
exact requests retailCRM received: the registration, popups and their hangups for exactly the ringing
employees, one upload per call, the missed-call task for the right manager, click-to-call through Mango,
and that a burst of 503s loses nothing and sends nothing twice, never above the 10 requests/s limit.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import func, select

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator import CommandServer
from bridge.pbx.mango.simulator.command_server import default_users
from bridge.pbx.mango.simulator.poster import Poster
from bridge.recordings.links import RecordingLinks
from bridge.store.engine import make_engine
from bridge.store.schema import connector_state, outbox
from tests.conftest import BACKENDS, _pg_database
from tests.daemon import API_KEY, API_SALT, CALLBRIDGE, Daemon, wait_closed
from tests.fakes.realtime_client import Client
from tests.fakes.retailcrm import FakeRetailCrm

API_KEY_CRM = "rcrm-e2e-" + "5a4b3c2d" * 5
PUBLIC = "https://calls.example.com"
SECRET = "retailcrm-e2e-secret-" + "s" * 24
LINK_TTL = 90 * 86400
USERS = {"101": 7, "102": 8, "103": 9}
MAPPED = {*USERS, "104"}  # 104 once the employee import has run
LINE = "74951234567"
SITE = "shop-one"
ZONE = "Europe/Moscow"

KNOWN_A = "79161234567"  # manager 8 (extension 102), stored as "8 (916) 123-45-67"
KNOWN_B = "79250001122"  # manager 9 (extension 103)


@dataclass
class Stack:
    daemon: Daemon
    fake: FakeRetailCrm
    mango: CommandServer
    poster: Poster
    database_url: str


def _config(path: Path, fake: FakeRetailCrm) -> Path:
    lines = [
        "[connectors.retailcrm]",
        f'url = "{fake.url}"',
        'code = "callbridge"',
        f'timezone = "{ZONE}"',
        "",
        "[connectors.retailcrm.users]",
        *[f'"{ext}" = {uid}' for ext, uid in USERS.items()],
        "",
        "[connectors.retailcrm.external_phones]",
        f'"{LINE}" = "{SITE}"',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("retailcrm")
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{workdir / 'callbridge.db'}"])
    else:
        urls = _pg_database(f"cb_test_rcrm_{random.randrange(1 << 40):x}")
    database_url = next(urls)
    with (
        FakeRetailCrm(api_key=API_KEY_CRM) as fake,
        CommandServer(API_KEY, API_SALT, rate_limits=False, rng=random.Random(5), pace=0.1) as mango,
    ):
        fake.add_customer("Иван", "Петров", ["8 (916) 123-45-67"], manager=8, orders=2)
        fake.add_customer("Ромашка", "ООО", ["+7 925 000-11-22"], manager=9)
        env = {
            "CALLBRIDGE_CONFIG": str(_config(workdir / "callbridge.toml", fake)),
            "CALLBRIDGE_CONNECTORS_RETAILCRM_API_KEY": API_KEY_CRM,
            "CALLBRIDGE_HTTP_PUBLIC_URL": PUBLIC,
            "CALLBRIDGE_SECURITY_SECRET_KEY": SECRET,
            "CALLBRIDGE_MANGO_API_URL": mango.url,
        }
        daemon = Daemon(database_url, workdir, env=env)
        mango.bridge_url = daemon.mango_url
        daemon.start()
        poster = Poster(daemon.mango_url, API_KEY, API_SALT)
        try:
            yield Stack(daemon, fake, mango, poster, database_url)
        finally:
            poster.close()
            daemon.stop()
            for _ in urls:  # drops the PostgreSQL database
                pass


# ---------------------------------------------------------------------------------------------- helpers


def ringing_extension(note: scenarios.Notification) -> str | None:
    """The employee a leg starts ringing with this notification (the tracker's rule), if any."""
    p = note.payload
    if note.path != "events/call" or p.get("call_state") != "Appeared" or p.get("location") != "abonent":
        return None
    to, frm = p.get("to") or {}, p.get("from") or {}
    if to.get("extension"):
        return str(to["extension"])
    if frm.get("extension") and not frm.get("taken_from_call_id"):
        return str(frm["extension"])
    return None


def popups(fake: FakeRetailCrm, entry: str) -> list[dict[str, Any]]:
    return [e for e in fake.events if e.get("callExternalId") == entry]


def play(stack: Stack, scenario: scenarios.Scenario) -> None:
    """Post the notifications as the phones ring: after a leg rings a mapped employee, wait for the popup."""
    for note in scenario.notifications:
        assert not stack.poster.play([note]).errors
        ext = ringing_extension(note)
        if ext in MAPPED and scenario.name != "internal_call":
            assert stack.fake.wait_for(
                lambda ext=ext: any(
                    e["type"] in ("in", "out") and e["codes"] == [ext]
                    for e in popups(stack.fake, scenario.entry_id)
                ),
                timeout=15,
            ), (scenario.name, ext)


def settle(stack: Stack, scenario: scenarios.Scenario, uploads: int = 1) -> None:
    wait_closed(stack.daemon, scenario.entry_id, recordings=len(scenario.expected.recording_ids))
    assert stack.fake.wait_for(
        lambda: sum(c["externalId"] == scenario.entry_id for c in stack.fake.calls) >= uploads, timeout=20
    )
    wait_delivered(stack.database_url)


def outbox_counts(database_url: str) -> dict[str, int]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.status, func.count())
                .where(outbox.c.connector == "retailcrm")
                .group_by(outbox.c.status)
            ).all()
    finally:
        engine.dispose()
    return {status: n for status, n in rows}


def wait_delivered(database_url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        counts = outbox_counts(database_url)
        if counts and set(counts) == {"done"}:
            return
        time.sleep(0.1)
    raise AssertionError(f"the outbox did not drain: {counts}")


def by_extension(fake: FakeRetailCrm, entry: str) -> dict[str, list[tuple[str, str | None]]]:
    """Per extension, what its popup went through: [("in", None), ("hangup", "cancel")], in order."""
    out: dict[str, list[tuple[str, str | None]]] = {}
    for event in popups(fake, entry):
        for code in event["codes"]:
            out.setdefault(code, []).append((event["type"], event.get("hangupStatus")))
    return out


def local(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, ZoneInfo(ZONE)).strftime("%Y-%m-%d %H:%M:%S")


def summary_of(scenario: scenarios.Scenario) -> dict[str, Any]:
    return next(n.payload for n in scenario.notifications if n.path == "events/summary")


def uploaded(fake: FakeRetailCrm, entry: str) -> list[dict[str, Any]]:
    calls = [dict(c) for c in fake.calls if c["externalId"] == entry]
    for call in calls:
        if "recordUrl" in call:
            call["recordUrl"] = checked_link(call["recordUrl"])
    return calls


def checked_link(link: str) -> str:
    """A recording link checked as the daemon's signed link, cut to its unsigned part."""
    url, _, query = link.partition("?")
    token = urllib.parse.parse_qs(query, strict_parsing=True)["t"][0]
    RecordingLinks(lambda: SECRET, PUBLIC, ttl_seconds=LINK_TTL).verify(
        urllib.parse.unquote(url.rsplit("/", 1)[1]), token
    )
    return url


def call_item(scenario: scenarios.Scenario, number: str, code: str | None, **extra: Any) -> dict[str, Any]:
    s = summary_of(scenario)
    answered = int(s.get("talk_time") or 0) > 0
    item: dict[str, Any] = {
        "date": local(int(s["create_time"])),
        "type": "in" if scenario.expected.direction == "incoming" else "out",
        "phone": f"+{number}",
        "result": "answered" if answered else "no answer",
        "duration": int(s["end_time"]) - int(s["talk_time"]) if answered else 0,
        "durationWaiting": (int(s["talk_time"]) if answered else int(s["end_time"])) - int(s["create_time"]),
        "externalId": scenario.entry_id,
        "externalPhone": LINE,
        "site": SITE,
    }
    if code:
        item["code"] = code
        item["userId"] = USERS[code]
    if answered and scenario.expected.recording_ids:
        rid = urllib.parse.quote(scenario.expected.recording_ids[0], safe="")
        item["recordUrl"] = f"{PUBLIC}/recordings/{rid}"
    item.update(extra)
    return item


# ---------------------------------------------------------------------------------------------- tests


def test_the_telephony_is_registered_once_on_start(stack: Stack) -> None:
    assert stack.fake.wait_for(lambda: len(stack.fake.modules) >= 1, timeout=15)
    time.sleep(0.3)  # every process has bound by now (the daemon answered /healthz before the tests)
    (module,) = stack.fake.modules
    engine = make_engine(stack.database_url)
    with engine.connect() as conn:
        stored = conn.execute(
            select(connector_state.c.value).where(
                connector_state.c.connector == "retailcrm", connector_state.c.key == "client_id"
            )
        ).scalar_one()
    engine.dispose()
    assert module == {
        "code": "callbridge",
        "integrationCode": "callbridge",
        "active": True,
        "name": "callbridge (Mango Office)",
        "clientId": stored,
        "baseUrl": PUBLIC,
        "accountUrl": f"{PUBLIC}/admin",
        "integrations": {
            "telephony": {
                "allowEdit": False,
                "inputEventSupported": True,
                "outputEventSupported": True,
                "hangupEventSupported": True,
                "additionalCodes": [{"userId": str(uid), "code": ext} for ext, uid in USERS.items()],
                "externalPhones": [{"siteCode": SITE, "externalPhone": LINE}],
                "makeCallUrl": f"{PUBLIC}/connectors/retailcrm/make-call",
            }
        },
    }
    assert len(stored) >= 40


def test_a_ring_group_pops_up_for_exactly_the_ringing_employees(stack: Stack) -> None:
    s = scenarios.build(
        "ring_group_second_answers", seed=11, customer=KNOWN_A, extensions=("101", "102", "103")
    )
    play(stack, s)
    settle(stack, s)
    assert by_extension(stack.fake, s.entry_id) == {
        "101": [("in", None), ("hangup", "cancel")],
        "102": [("in", None), ("hangup", "answered")],
        "103": [("in", None), ("hangup", "cancel")],
    }
    first = popups(stack.fake, s.entry_id)[0]
    assert first == {
        "phone": f"+{KNOWN_A}",
        "type": "in",
        "codes": [first["codes"][0]],
        "callExternalId": s.entry_id,
        "userIds": [USERS[first["codes"][0]]],
        "externalPhone": LINE,
        "site": SITE,
    }
    assert uploaded(stack.fake, s.entry_id) == [call_item(s, KNOWN_A, "102")]


def test_a_transfer_pops_up_for_the_target_and_logs_the_call_once(stack: Stack) -> None:
    s = scenarios.build("blind_transfer", seed=12, customer=KNOWN_B, extensions=("101", "103"))
    play(stack, s)
    settle(stack, s)
    assert by_extension(stack.fake, s.entry_id) == {
        "101": [("in", None), ("hangup", "answered")],
        "103": [("in", None), ("hangup", "answered")],
    }
    assert uploaded(stack.fake, s.entry_id) == [call_item(s, KNOWN_B, "101")]


def test_a_missed_call_leaves_a_task_for_the_customers_manager(stack: Stack) -> None:
    s = scenarios.build("incoming_missed", seed=13, customer=KNOWN_A, extensions=("101", "103"))
    tasks_before = len(stack.fake.tasks)
    play(stack, s)
    settle(stack, s)
    # the caller hung up while it rang (1110): the popups close as "cancel", the log says "no answer"
    assert by_extension(stack.fake, s.entry_id) == {
        "101": [("in", None), ("hangup", "cancel")],
        "103": [("in", None), ("hangup", "cancel")],
    }
    assert uploaded(stack.fake, s.entry_id) == [call_item(s, KNOWN_A, "101")]
    assert stack.fake.wait_for(lambda: len(stack.fake.tasks) == tasks_before + 1)
    task = stack.fake.tasks[-1]
    ended = summary_of(s)["end_time"]
    assert task["performerId"] == 8  # the customer's manager, not the first employee rung (7)
    assert task["customer"] == {"id": 101} and task["phone"] == f"+{KNOWN_A}"
    assert task["datetime"] == local(int(ended) + 30 * 60)[:16]
    assert local(int(ended))[:16].replace("-", ".") not in task["commentary"]  # dd.mm.yyyy in the text
    assert f"+{KNOWN_A}" in task["text"]


def test_a_missed_call_from_an_unknown_number_goes_to_the_first_employee_rung(stack: Stack) -> None:
    unknown = "79035550101"
    s = scenarios.build("incoming_missed", seed=14, customer=unknown, extensions=("102", "101"))
    play(stack, s)
    settle(stack, s)
    assert stack.fake.wait_for(lambda: any(t["phone"] == f"+{unknown}" for t in stack.fake.tasks))
    (task,) = [t for t in stack.fake.tasks if t["phone"] == f"+{unknown}"]
    assert task["performerId"] == 8 and "customer" not in task


def test_an_outgoing_call_pops_up_out_and_is_logged_out(stack: Stack) -> None:
    s = scenarios.build("outgoing_answered", seed=15, customer=KNOWN_B, extensions=("102",))
    play(stack, s)
    settle(stack, s)
    assert by_extension(stack.fake, s.entry_id) == {"102": [("out", None), ("hangup", "answered")]}
    assert uploaded(stack.fake, s.entry_id) == [call_item(s, KNOWN_B, "102")]


def test_click_to_call_is_authenticated_and_dials_from_the_managers_extension(stack: Stack) -> None:
    url = f"{stack.daemon.url}/connectors/retailcrm/make-call"
    target = "79265556677"
    stack.mango.outcomes[target] = "busy"
    sent_before = len(stack.mango.received)
    for bad in ({}, {"clientId": "x" * 43}):
        answer = requests.get(
            url, params={**bad, "code": "103", "phone": f"+{target}", "userId": "9"}, timeout=10
        )
        assert answer.status_code == 403 and answer.json() == {"success": False, "errorMsg": "wrong clientId"}
    assert len(stack.mango.received) == sent_before
    client_id = stack.fake.modules[0]["clientId"]
    answer = requests.get(
        url, params={"clientId": client_id, "code": "103", "phone": f"+{target}", "userId": "9"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["success"] is True and answer.json()["code"] == "103"
    sent = stack.mango.wait_for("commands/callback", timeout=10)
    assert sent.json["from"]["extension"] == "103" and sent.json["to_number"] == target
    assert stack.fake.wait_for(lambda: any(c["phone"] == f"+{target}" for c in stack.fake.calls), timeout=30)
    wait_delivered(stack.database_url)
    (call,) = [c for c in stack.fake.calls if c["phone"] == f"+{target}"]
    assert (call["type"], call["result"], call["code"], call["userId"]) == ("out", "busy", "103", 9)
    assert by_extension(stack.fake, call["externalId"]) == {"103": [("out", None), ("hangup", "busy")]}


def test_a_burst_of_503s_loses_nothing_and_sends_nothing_twice(stack: Stack) -> None:
    fake = stack.fake
    calls = []
    for i in range(6):
        kind = ("incoming_answered", "incoming_missed", "outgoing_answered")[i % 3]
        number = f"7903777{i:04d}"
        calls.append(
            scenarios.build(kind, seed=100 + i, customer=number, extensions=("101",), recording=False)
        )
    tasks_before = len(fake.tasks)
    fake.throttle(3.0)
    notes = [n for s in calls for n in s.notifications]
    assert not stack.poster.play(notes, concurrency=4).errors
    for s in calls:
        wait_closed(stack.daemon, s.entry_id)
    assert fake.wait_for(
        lambda: all(any(c["externalId"] == s.entry_id for c in fake.calls) for s in calls), 60
    )
    wait_delivered(stack.database_url)  # every row done: nothing more is sent, so a double would show now
    assert fake.scripted_503 >= 1
    ids = Counter(c["externalId"] for c in fake.calls)
    assert all(ids[s.entry_id] == 1 for s in calls) and fake.duplicate_uploads == 0
    assert len(fake.tasks) - tasks_before == 2
    events = Counter(json.dumps(e, sort_keys=True) for e in fake.events)
    assert max(events.values()) == 1, "an event was sent twice"
    assert fake.violations == 0 and fake.max_in_window() <= 10


def test_the_popup_card_shows_the_customer_their_orders_and_manager(stack: Stack) -> None:
    token = (
        subprocess.run(
            [CALLBRIDGE, "token", "--extension", "101"],
            env=stack.daemon.env,
            cwd=stack.daemon.workdir,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    anna = Client(int(stack.daemon.env["CALLBRIDGE_WS_PORT"]), token)
    try:
        anna.wait_for("hello")
        s = scenarios.build("incoming_answered", seed=17, customer=KNOWN_A, extensions=("101",))
        play(stack, s)
        ringing = anna.wait_for("call.ringing", lambda m: m["entry_id"] == s.entry_id, timeout=15)
        card = ringing["card"]
        if ringing.get("card_pending") or not card or not card.get("complete"):
            card = anna.wait_for("call.card", lambda m: m["entry_id"] == s.entry_id, timeout=15)["card"]
        assert card["name"] == "Петров Иван" and "retailcrm" in card["sources"]
        assert card["responsible"] == {"name": "Иванов Борис", "extension": "102", "source": "retailcrm"}
        assert [(o["number"], o["total"]) for o in card["orders"]] == [("103A", 2000), ("102A", 1000)]
        assert card["orders"][0]["url"] == f"{stack.fake.url}/orders/103/edit"
        titles = {link["title"]: link["url"] for link in card["links"]}
        assert titles["retailCRM customer"].endswith("/customers/101") and "New order" in titles
        settle(stack, s)
    finally:
        anna.close()


def test_the_employee_import_maps_by_e_mail_and_updates_the_registration(stack: Stack) -> None:
    fake = stack.fake
    with fake.lock:
        fake.users.append({"id": 13, "firstName": "Глеб", "email": "USER104@example.com", "active": True})
        fake.users.append({"id": 14, "firstName": "Уволен", "email": "user105@example.com", "active": False})
        registered = len(fake.modules)
    stack.mango.users = default_users(("101", "102", "103", "104", "105"))  # Mango has two more employees
    done = subprocess.run(
        [CALLBRIDGE, "connectors", "import-employees", "retailcrm"],
        env=stack.daemon.env,
        cwd=stack.daemon.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "4 extension(s) matched to retailCRM users by e-mail" in done.stdout
    assert (
        "104 -> user 13" in done.stdout and "no retailCRM user with the same e-mail for: 105" in done.stdout
    )
    assert fake.wait_for(lambda: len(fake.modules) == registered + 1, timeout=15)
    codes = fake.modules[-1]["integrations"]["telephony"]["additionalCodes"]
    assert codes == [
        {"userId": "7", "code": "101"},
        {"userId": "8", "code": "102"},
        {"userId": "9", "code": "103"},
        {"userId": "13", "code": "104"},
    ]
    # the daemon's dispatcher reads the stored map: 104 now gets popups
    s = scenarios.build("incoming_answered", seed=16, customer=KNOWN_B, extensions=("104",))
    play(stack, s)
    settle(stack, s)
    assert by_extension(fake, s.entry_id) == {"104": [("in", None), ("hangup", "answered")]}


def test_callbridge_check_explains_the_setup(stack: Stack) -> None:
    registered = len(stack.fake.modules)
    done = subprocess.run(
        [CALLBRIDGE, "check", "--skip-mango"],
        env=stack.daemon.env,
        cwd=stack.daemon.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (
        "retailcrm: Connected to retailCRM at 127.0.0.1; 4 extension(s) mapped to retailCRM users. "
        "The telephony module 'callbridge' is registered and up to date." in done.stdout
    )
    assert len(stack.fake.modules) == registered  # nothing changed: nothing sent again


def _setup(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CALLBRIDGE, "connectors", "setup", "retailcrm", *args],
        env=stack.daemon.env,
        cwd=stack.daemon.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_connectors_setup_registers_the_module_again_and_off_switches_it_off(stack: Stack) -> None:
    before = len(stack.fake.modules)
    registered = _setup(stack)
    assert registered.returncode == 0, registered.stderr
    assert registered.stdout.strip() == (
        "integration module 'callbridge' registered in retailCRM: 4 extension code(s), "
        f"click-to-call {PUBLIC}/connectors/retailcrm/make-call"
    )
    assert len(stack.fake.modules) == before + 1 and stack.fake.modules[-1]["active"] is True
    off = _setup(stack, "--off")
    assert off.returncode == 0 and "switched off in retailCRM" in off.stdout
    assert stack.fake.modules[-1]["active"] is False
    assert {k: v for k, v in stack.fake.modules[-1].items() if k != "active"} == {
        k: v for k, v in stack.fake.modules[-2].items() if k != "active"
    }
    assert _setup(stack).returncode == 0 and stack.fake.modules[-1]["active"] is True  # on again
    assert API_KEY_CRM not in registered.stdout + registered.stderr + off.stdout + off.stderr


def test_nothing_was_refused_and_the_limit_held(stack: Stack) -> None:
    refused = [o for o in stack.fake.outcomes if o[2] not in (200, 503)]
    assert refused == []
    assert stack.fake.violations == 0
    log = stack.daemon.log_path.read_text(encoding="utf-8", errors="replace")
    assert "retailcrm: call logged" in log  # the daemon does log the connector's work...
    assert API_KEY_CRM not in log and stack.fake.modules[0]["clientId"] not in log  # ...never its secrets
