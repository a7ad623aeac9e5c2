"""End to end: the simulator's scenarios through `callbridge run` into the amoCRM contract fake.

Each test starts the real daemon (tests/daemon.py) with ``[connectors.amocrm]`` pointing at the fake on
loopback, plays Mango notifications with the simulator's `Poster`, and asserts the exact requests amoCRM
received: popups for the ringing users, the call log for known numbers, unsorted leads for unknown ones,
missed-call tasks for the right user; then that 429s lose and double nothing, that the 7/s limit is never
exceeded, and that an OAuth token expiring mid-burst is refreshed exactly once.
"""

from __future__ import annotations

import json
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import func, select

from bridge.cli import cli
from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator.poster import Poster
from bridge.recordings.links import RecordingLinks
from bridge.store.engine import make_engine
from bridge.store.schema import connector_state, outbox
from connectors.amocrm.oauth import STATE_KEY, TokenRecord
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes.amocrm import FakeAmoCrm

LLT = "llt-e2e-" + "0f1e2d3c" * 6
PUBLIC = "https://calls.example.com"
REDIRECT = f"{PUBLIC}/connectors/amocrm/oauth/callback"
USERS = {"101": 1001, "102": 1002, "103": 1003}

KNOWN_A = "79161234567"  # stored as "8 (916) 123-45-67"
KNOWN_B = "79250001122"
KNOWN_C = "79263334455"
KNOWN_D = "79265556677"
SECRET = "amocrm-e2e-secret-" + "s" * 24
LINK_TTL = 90 * 86400


def toml_value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, bool) else str(value).lower()


def start(
    database_url: str, workdir: Path, fake: FakeAmoCrm, *, env: dict[str, str] | None = None, **settings: Any
) -> Daemon:
    """`callbridge run` with [connectors.amocrm] in a TOML file (the users map is a nested table)."""
    users = settings.pop("users", USERS)
    lines = ["[connectors.amocrm]", f"account_url = {toml_value(fake.url)}"]
    lines += [f"{key} = {toml_value(value)}" for key, value in settings.items()]
    lines += ["", "[connectors.amocrm.users]"] + [f'"{ext}" = {uid}' for ext, uid in users.items()]
    config = workdir / f"callbridge-{time.monotonic_ns()}.toml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    base = {
        "CALLBRIDGE_CONFIG": str(config),
        "CALLBRIDGE_HTTP_PUBLIC_URL": PUBLIC,
        "CALLBRIDGE_SECURITY_SECRET_KEY": SECRET,
    }
    if "client_id" not in settings:
        base["CALLBRIDGE_CONNECTORS_AMOCRM_LONG_LIVED_TOKEN"] = LLT
    return Daemon(database_url, workdir, env={**base, **(env or {})}).start()


@pytest.fixture
def fake() -> Iterator[FakeAmoCrm]:
    with FakeAmoCrm(long_lived_token=LLT) as server:
        server.add_contact("Иван Петров", ["8 (916) 123-45-67"], responsible_user_id=1001)
        server.add_contact("ООО Ромашка", ["+7 925 000-11-22"], responsible_user_id=1002)
        server.add_contact("Мария", ["+7 (926) 333-44-55"], responsible_user_id=1003, leads=1)
        server.add_contact("Пётр", ["79265556677"], responsible_user_id=1003)
        yield server


def split_at_ringing(notes: Sequence[scenarios.Notification]) -> tuple[list, list]:
    """The notifications up to the moment the employees' phones ring, and the rest."""
    for i, note in enumerate(notes):
        payload = note.payload
        if (
            note.path == "events/call"
            and payload.get("location") == "abonent"
            and payload.get("call_state") != "Appeared"
        ):
            return list(notes[:i]), list(notes[i:])
    return list(notes), []


def summary_of(scenario: scenarios.Scenario) -> dict[str, Any]:
    return next(n.payload for n in scenario.notifications if n.path == "events/summary")


def wait_status(daemon: Daemon, entry_id: str, statuses: set[str], timeout: float = 15.0) -> dict:
    quoted = urllib.parse.quote(entry_id, safe="")
    deadline = time.time() + timeout
    call: dict = {}
    while time.time() < deadline:
        response = daemon.api(f"/api/calls/{quoted}")
        if response.status_code == 200:
            call = response.json()
            if call["status"] in statuses:
                return call
        time.sleep(0.05)
    raise AssertionError(f"call {entry_id} never reached {statuses}: {call}")


def play(poster: Poster, daemon: Daemon, scenario: scenarios.Scenario) -> None:
    """Ring first (so the tracker emits `call.ringing` while the legs still ring), then the rest."""
    head, tail = split_at_ringing(scenario.notifications)
    assert not poster.play(head).errors
    if scenario.expected.direction == "incoming" and tail:
        wait_status(daemon, scenario.entry_id, {"ringing"})
    assert not poster.play(tail).errors


def requests_since(fake: FakeAmoCrm, start_index: int) -> list[tuple[str, str, Any]]:
    with fake.lock:
        items = fake.requests[start_index:]
    return [(r.method, r.path, r.body if r.method == "POST" else r.query) for r in items if r.outcome == "ok"]


def posts_and_searches(
    fake: FakeAmoCrm, start_index: int, number: str | None
) -> tuple[list[tuple[str, str, Any]], set[str]]:
    """The POSTs in order (exact), and the contact searches for `number` as a set of query terms.

    Lookups come from two places: the call log (`call.ended`) and the daemon's caller-card service (the
    popup card, at ringing time, concurrently with the popup, and possibly still running for an earlier
    call); a found contact is reused by the other. So *which* of them searched and when is not asserted,
    only what was searched for this call's number and that it was little.
    """
    got = requests_since(fake, start_index)
    posts = [g for g in got if g[0] == "POST"]
    for _, path, body in posts:
        if path == "/api/v4/calls":
            for item in body:
                if "link" in item:
                    item["link"] = checked_link(item["link"])
    gets = [g for g in got if g[0] == "GET"]
    assert all(path == "/api/v4/contacts" and query.get("with") == "leads" for _, path, query in gets), gets
    terms = [query["query"] for _, _, query in gets if number and number.endswith(query["query"])]
    assert len(terms) <= 4, terms
    return posts, set(terms)


def popup(number: str, user: int) -> tuple[str, str, dict]:
    return (
        "POST",
        "/api/v2/events",
        {"add": [{"type": "phone_call", "phone_number": f"+{number}", "users": [user]}]},
    )


def checked_link(link: str) -> str:
    """A call log's recording link checked as the daemon's signed link (valid, for its recording, for
    recordings.link_ttl_days) and cut to its unsigned part for the exact comparisons."""
    url, _, query = link.partition("?")
    token = urllib.parse.parse_qs(query, strict_parsing=True)["t"][0]
    RecordingLinks(lambda: SECRET, PUBLIC, ttl_seconds=LINK_TTL).verify(
        urllib.parse.unquote(url.rsplit("/", 1)[1]), token
    )
    assert time.time() + LINK_TTL - 600 < int(token.split(".")[0]) <= time.time() + LINK_TTL
    return url


def recording_link(scenario: scenarios.Scenario) -> str:
    return f"{PUBLIC}/recordings/{urllib.parse.quote(scenario.expected.recording_ids[0], safe='')}"


def call_log(scenario: scenarios.Scenario, number: str, **fields: Any) -> tuple[str, str, list]:
    s = summary_of(scenario)
    answered = s["talk_time"] > 0
    item = {
        "direction": "inbound" if scenario.expected.direction == "incoming" else "outbound",
        "uniq": scenario.entry_id,
        "duration": s["end_time"] - s["talk_time"] if answered else 0,
        "source": "Mango Office",
        "phone": f"+{number}",
        "call_result": "Разговор состоялся" if answered else "Не дозвонились",
        "call_status": 4 if answered else 6,
        "created_at": s["create_time"],
    }
    if answered:
        item["link"] = recording_link(scenario)
    item.update(fields)
    return ("POST", "/api/v4/calls", [{k: v for k, v in item.items() if v is not None}])


def outbox_counts(database_url: str) -> dict[str, int]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.status, func.count())
                .where(outbox.c.connector == "amocrm")
                .group_by(outbox.c.status)
            ).all()
    finally:
        engine.dispose()
    return {status: n for status, n in rows}


def wait_delivered(database_url: str, timeout: float = 60.0) -> dict[str, int]:
    deadline = time.time() + timeout
    counts: dict[str, int] = {}
    while time.time() < deadline:
        counts = outbox_counts(database_url)
        if counts and set(counts) == {"done"}:
            return counts
        time.sleep(0.2)
    raise AssertionError(f"outbox did not drain: {counts}")


# ---------------------------------------------------------------------------------------------- scenarios


def test_scenarios_reach_amocrm_as_the_exact_requests(
    database_url: str, tmp_path: Path, fake: FakeAmoCrm
) -> None:
    daemon = start(database_url, tmp_path, fake)
    poster = Poster(daemon.mango_url, API_KEY, API_SALT)
    try:
        # 1. A known caller, answered: popup for the ringing user, the lookup, the call log.
        s1 = scenarios.build("incoming_answered", seed=1, customer=KNOWN_A, extensions=("101",))
        mark = len(fake.requests)
        play(poster, daemon, s1)
        assert fake.wait_for(lambda: len(fake.calls) == 1)
        posts, searched = posts_and_searches(fake, mark, KNOWN_A)
        assert posts == [
            popup(KNOWN_A, 1001),
            call_log(s1, KNOWN_A, responsible_user_id=1001, call_responsible=1001),
        ]
        assert searched == {"79161234567", "9161234567"}  # stored as "8 (916) ...": E.164 digits miss

        # 2. An unknown caller rings a group of three and nobody answers: three popups, an unsorted lead,
        #    a task for the responsible (the first in the chain) on that lead.
        unknown = "79035550101"
        s2 = scenarios.build("incoming_missed", seed=2, customer=unknown, extensions=("101", "102", "103"))
        mark = len(fake.requests)
        play(poster, daemon, s2)
        assert fake.wait_for(lambda: len(fake.tasks) == 1)
        got, searched = posts_and_searches(fake, mark, unknown)
        assert searched == {"79035550101", "9035550101"}
        assert sorted(map(json.dumps, got[:3])) == sorted(
            json.dumps(popup(unknown, u)) for u in (1001, 1002, 1003)
        )
        s = summary_of(s2)
        lead_id = fake.unsorted[0]["lead_id"]
        assert got[3:] == [
            (
                "POST",
                "/api/v4/leads/unsorted/sip",
                [
                    {
                        "source_name": "Mango Office",
                        "source_uid": "callbridge-mango",
                        "created_at": s["create_time"],
                        "metadata": {
                            "uniq": s2.entry_id,
                            "duration": 0,
                            "service_code": "callbridge",
                            "phone": "74951234567",
                            "called_at": s["create_time"],
                            "from": f"+{unknown}",
                            "is_call_event_needed": True,
                            "call_responsible": 1001,
                        },
                        "_embedded": {
                            "leads": [{"name": f"Звонок с +{unknown}", "responsible_user_id": 1001}],
                            "contacts": [
                                {
                                    "name": f"+{unknown}",
                                    "custom_fields_values": [
                                        {
                                            "field_code": "PHONE",
                                            "values": [{"value": f"+{unknown}", "enum_code": "WORK"}],
                                        }
                                    ],
                                    "responsible_user_id": 1001,
                                }
                            ],
                        },
                    }
                ],
            ),
            (
                "POST",
                "/api/v4/tasks",
                [
                    {
                        "text": f"Пропущенный звонок с +{unknown}: перезвонить",
                        "complete_till": s["end_time"] + 30 * 60,
                        "responsible_user_id": 1001,
                        "task_type_id": 1,
                        "entity_type": "leads",
                        "entity_id": lead_id,
                    }
                ],
            ),
        ]

        # 3. A ring group where an unmapped extension (104, unmapped = skip) answers: a popup for 101
        #    only, the call logged without a responsible user.
        s3 = scenarios.build("ring_group_second_answers", seed=3, customer=KNOWN_C, extensions=("101", "104"))
        mark = len(fake.requests)
        play(poster, daemon, s3)
        assert fake.wait_for(lambda: len(fake.calls) == 2)
        posts, searched = posts_and_searches(fake, mark, KNOWN_C)
        assert posts == [popup(KNOWN_C, 1001), call_log(s3, KNOWN_C)]
        assert searched == {"79263334455"}
        assert fake.calls[-1]["_created"]["entity_type"] == "leads"  # Мария has exactly one deal

        # 4. An outgoing call from 102 to a known company: outbound, no popup.
        s4 = scenarios.build("outgoing_answered", seed=4, customer=KNOWN_B, extensions=("102",))
        mark = len(fake.requests)
        play(poster, daemon, s4)
        assert fake.wait_for(lambda: len(fake.calls) == 3)
        posts, searched = posts_and_searches(fake, mark, KNOWN_B)
        assert posts == [call_log(s4, KNOWN_B, responsible_user_id=1002, call_responsible=1002)]
        assert searched == {"79250001122"}

        # 5. A click-to-call from 103 that the customer does not pick up: outbound, "no answer", no link.
        s5 = scenarios.build("click_to_call_no_answer", seed=5, customer=KNOWN_D, extensions=("103",))
        mark = len(fake.requests)
        play(poster, daemon, s5)
        assert fake.wait_for(lambda: len(fake.calls) == 4)
        posts, searched = posts_and_searches(fake, mark, KNOWN_D)
        assert posts == [call_log(s5, KNOWN_D, responsible_user_id=1003, call_responsible=1003)]
        assert searched == {"79265556677"}

        # 6. An internal call and 7. a caller who gives up in the IVR (an unsorted lead, nobody to task).
        s6 = scenarios.build("internal_call", seed=6, extensions=("101", "102"))
        gave_up = "79035550202"
        s7 = scenarios.build("ivr_abandoned", seed=7, customer=gave_up)
        mark = len(fake.requests)
        play(poster, daemon, s6)
        play(poster, daemon, s7)
        assert fake.wait_for(lambda: len(fake.unsorted) == 2)
        for scenario in (s6, s7):
            wait_status(daemon, scenario.entry_id, {"ended", "missed"})
        wait_delivered(database_url)
        got, searched = posts_and_searches(fake, mark, gave_up)
        assert searched == {gave_up, gave_up[1:]}
        assert [(m, p) for m, p, _ in got] == [("POST", "/api/v4/leads/unsorted/sip")]
        metadata = got[0][2][0]["metadata"]
        assert "call_responsible" not in metadata and metadata["from"] == f"+{gave_up}"

        assert fake.violations == 0 and fake.max_in_window() <= 7
        assert fake.recorded(outcome=None) == fake.recorded()  # nothing refused, nothing invalid
    finally:
        poster.close()
        daemon.stop()


# ---------------------------------------------------------------------------------------------- burst helpers


def burst(count: int, seed: int) -> list[tuple[scenarios.Scenario, str | None]]:
    """Calls of three kinds: a known caller answered, an unknown caller missed, an outgoing call."""
    calls = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            s = scenarios.build("incoming_answered", seed=seed + i, customer=KNOWN_A, extensions=("101",))
        elif kind == 1:
            number = f"790355{seed % 100:02d}{i:03d}"
            s = scenarios.build("incoming_missed", seed=seed + i, customer=number, extensions=("102", "150"))
        else:
            s = scenarios.build("outgoing_answered", seed=seed + i, customer=KNOWN_B, extensions=("103",))
        calls.append((s, s.expected.customer_number))
    return calls


def play_burst(poster: Poster, daemon: Daemon, calls: list[tuple[scenarios.Scenario, str | None]]) -> None:
    heads, tails = [], []
    for scenario, _ in calls:
        head, tail = split_at_ringing(scenario.notifications)
        heads += head
        tails += tail
    assert not poster.play(heads, concurrency=4).errors
    for scenario, _ in calls:
        if scenario.expected.direction == "incoming":
            wait_status(daemon, scenario.entry_id, {"ringing"})
    assert not poster.play(tails, concurrency=4).errors


def expected_creations(
    calls: list[tuple[scenarios.Scenario, str | None]], default_user: int | None
) -> dict[str, Any]:
    users = {**{k: v for k, v in USERS.items()}, **({"150": default_user} if default_user else {})}
    popups, logged, unsorted, tasks = Counter(), set(), set(), Counter()
    for scenario, number in calls:
        if scenario.name == "incoming_answered":
            popups[(f"+{number}", users["101"])] += 1
            logged.add(scenario.entry_id)
        elif scenario.name == "incoming_missed":
            for ext in ("102", "150"):
                if ext in users:
                    popups[(f"+{number}", users[ext])] += 1
            unsorted.add(scenario.entry_id)
            tasks[users["102"]] += 1
        else:
            logged.add(scenario.entry_id)
    return {"popups": popups, "calls": logged, "unsorted": unsorted, "tasks": tasks}


def actual_creations(fake: FakeAmoCrm) -> dict[str, Any]:
    with fake.lock:
        popups = Counter((p["phone_number"], p["users"][0]) for p in fake.popups)
        calls = [c["uniq"] for c in fake.calls]
        unsorted = [u["body"]["metadata"]["uniq"] for u in fake.unsorted]
        tasks = Counter(t["responsible_user_id"] for t in fake.tasks)
    assert len(calls) == len(set(calls)) and len(unsorted) == len(set(unsorted)), (
        "something was created twice"
    )
    return {"popups": popups, "calls": set(calls), "unsorted": set(unsorted), "tasks": tasks}


def test_429_for_a_while_loses_nothing_sends_nothing_twice_and_never_exceeds_the_limit(
    database_url: str, tmp_path: Path, fake: FakeAmoCrm
) -> None:
    daemon = start(database_url, tmp_path, fake, unmapped="default", default_user=1009)
    poster = Poster(daemon.mango_url, API_KEY, API_SALT)
    calls = burst(9, seed=300)
    expected = expected_creations(calls, default_user=1009)
    try:
        # amoCRM answers 429 to everything for 3 s, from before the first popup goes out.
        fake.throttle(3.0)
        play_burst(poster, daemon, calls)
        assert fake.wait_for(
            lambda: sum(1 for r in fake.requests if r.path == "/api/v4/tasks" and r.outcome == "ok") == 3, 60
        )
        wait_delivered(database_url)
        time.sleep(0.5)  # anything sent twice would show now
        assert actual_creations(fake) == expected
        assert fake.scripted_429 >= 1
        assert fake.violations == 0 and fake.max_in_window() <= 7
        assert (fake.tightest_span() or 1.0) >= 1.0  # no 8 requests ever arrived within one second
    finally:
        poster.close()
        daemon.stop()
    engine = make_engine(database_url)
    with engine.connect() as conn:
        retried = conn.execute(
            select(func.count()).where(outbox.c.connector == "amocrm", outbox.c.attempts > 1)
        ).scalar()
    engine.dispose()
    # A 429 pauses the whole connector: whichever request met it first (a delivery, or the caller-card
    # lookup the daemon makes at ringing time), the deliveries waited. Those that met one were retried.
    refused_deliveries = [r for r in fake.requests if r.outcome == "throttled" and r.method == "POST"]
    assert retried >= (1 if refused_deliveries else 0)


# ---------------------------------------------------------------------------------------------- OAuth


@pytest.fixture
def oauth_fake() -> Iterator[FakeAmoCrm]:
    with FakeAmoCrm(
        client_id="cb-client", client_secret="cb-secret-0123456789", redirect_uri=REDIRECT
    ) as server:
        server.add_contact("Иван Петров", ["8 (916) 123-45-67"], responsible_user_id=1001)
        server.add_contact("ООО Ромашка", ["+7 925 000-11-22"], responsible_user_id=1002)
        yield server


def oauth_env(code: str | None = None, **extra: str) -> dict[str, str]:
    env = {"CALLBRIDGE_CONNECTORS_AMOCRM_CLIENT_SECRET": "cb-secret-0123456789", **extra}
    if code:
        env["CALLBRIDGE_CONNECTORS_AMOCRM_AUTHORIZATION_CODE"] = code
    return env


def stored_tokens(database_url: str) -> tuple[TokenRecord, int]:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            value, version = conn.execute(
                select(connector_state.c.value, connector_state.c.version).where(
                    connector_state.c.connector == "amocrm", connector_state.c.key == STATE_KEY
                )
            ).one()
    finally:
        engine.dispose()
    return TokenRecord.from_json(value), version


def test_an_oauth_token_expiring_mid_burst_is_refreshed_once_and_the_burst_completes(
    database_url: str, tmp_path: Path, oauth_fake: FakeAmoCrm
) -> None:
    code = oauth_fake.issue_code()
    daemon = start(
        database_url, tmp_path, oauth_fake, env=oauth_env(code), client_id="cb-client", redirect_uri=REDIRECT
    )
    poster = Poster(daemon.mango_url, API_KEY, API_SALT)
    calls = burst(9, seed=700)
    expected = expected_creations(calls, default_user=None)
    try:
        oauth_fake.expire_after(5)  # the access token dies after the 5th API request, mid-burst
        play_burst(poster, daemon, calls)
        assert oauth_fake.wait_for(lambda: len(oauth_fake.tasks) == 3, 60)
        wait_delivered(database_url)
        time.sleep(0.5)
    finally:
        poster.close()
        daemon.stop()
    assert actual_creations(oauth_fake) == expected
    assert [(t["grant_type"], t["ok"]) for t in oauth_fake.token_requests] == [
        ("authorization_code", True),
        ("refresh_token", True),
    ]
    assert set(oauth_fake.refresh_uses.values()) == {1}  # the single-use refresh token was used once
    assert len(oauth_fake.recorded(outcome="unauthorized")) >= 1
    assert oauth_fake.violations == 0 and oauth_fake.max_in_window() <= 7
    record, version = stored_tokens(database_url)
    assert record.refresh_token == oauth_fake.current_refresh_token and record.generation == 2
    assert record.lease_owner is None and version == 4  # claim + store, for the code and for the refresh
    assert code not in json.dumps(record.__dict__, default=str)

    # `callbridge check` afterwards uses the stored (rotated) tokens and says so in plain words.
    env = {k: None for k in os.environ if k.startswith("CALLBRIDGE_") and not k.startswith("CALLBRIDGE_TEST")}
    env.update(daemon.env)
    result = CliRunner().invoke(cli, ["check", "--skip-mango"], env=env)
    assert result.exit_code == 0, result.output
    assert (
        "ok   amocrm: Connected to amoCRM account 'Fake Motors' (127.0.0.1) via OAuth (token pair #2"
        in result.output
    )
    assert [t["grant_type"] for t in oauth_fake.token_requests] == ["authorization_code", "refresh_token"]


def test_the_oauth_callback_in_a_web_worker_authorises_the_dispatcher(
    database_url: str, tmp_path: Path, oauth_fake: FakeAmoCrm
) -> None:
    daemon = start(database_url, tmp_path, oauth_fake, env=oauth_env(), client_id="cb-client")
    poster = Poster(daemon.mango_url, API_KEY, API_SALT)
    try:
        start_page = requests.get(
            f"{daemon.url}/connectors/amocrm/oauth/start", allow_redirects=False, timeout=5
        )
        assert start_page.status_code == 302 and "client_id=cb-client" in start_page.headers["Location"]
        state = urllib.parse.parse_qs(urllib.parse.urlsplit(start_page.headers["Location"]).query)["state"][0]
        code = oauth_fake.issue_code()
        answer = requests.get(
            f"{daemon.url}/connectors/amocrm/oauth/callback",
            params={"code": code, "referer": "127.0.0.1", "state": state},
            timeout=10,
        )
        assert answer.status_code == 200 and answer.json()["status"] == "connected"
        # redirect_uri defaulted to <public_url>/connectors/amocrm/oauth/callback, which the fake insists on
        s = scenarios.build("outgoing_answered", seed=900, customer=KNOWN_B, extensions=("102",))
        play(poster, daemon, s)
        assert oauth_fake.wait_for(lambda: len(oauth_fake.calls) == 1)
        assert oauth_fake.calls[0]["uniq"] == s.entry_id
        assert [t["grant_type"] for t in oauth_fake.token_requests] == ["authorization_code"]
    finally:
        poster.close()
        daemon.stop()


def test_two_daemons_on_postgresql_rotate_the_refresh_token_once(
    database_url: str, tmp_path: Path, oauth_fake: FakeAmoCrm
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("two daemons share a database on PostgreSQL only (SQLite is the single-process mode)")
    code = oauth_fake.issue_code()
    settings = {"client_id": "cb-client", "redirect_uri": REDIRECT, "requests_per_second": 3.5}
    first = start(database_url, tmp_path, oauth_fake, env=oauth_env(code), **settings)
    second = start(database_url, tmp_path, oauth_fake, env=oauth_env(code), **settings)
    posters = [Poster(d.mango_url, API_KEY, API_SALT) for d in (first, second)]
    calls = burst(9, seed=1100)
    expected = expected_creations(calls, default_user=None)
    try:
        oauth_fake.expire_after(4)
        for i, (scenario, _) in enumerate(calls):  # half the calls come in through each daemon
            play(posters[i % 2], (first, second)[i % 2], scenario)
        assert oauth_fake.wait_for(lambda: len(oauth_fake.tasks) == 3, 90)
        wait_delivered(database_url, 90)
        time.sleep(0.5)
    finally:
        for poster in posters:
            poster.close()
        first.stop()
        second.stop()
    assert actual_creations(oauth_fake) == expected
    assert [t["grant_type"] for t in oauth_fake.token_requests] == ["authorization_code", "refresh_token"]
    assert set(oauth_fake.refresh_uses.values()) == {1}
    assert oauth_fake.violations == 0
