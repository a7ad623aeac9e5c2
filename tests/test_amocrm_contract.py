"""The amoCRM connector against the contract fake (tests/fakes/amocrm.py), in process.

A table of cases (events in, exact requests out, as the Apprise plugin tests do), then the behaviours
around it: errors surfaced, the rate limit, lookup, check(), the employee import from the Mango simulator,
the OAuth rotation shared by two "processes" through the real state store, and the OAuth callback.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from flask import Flask
from pydantic import ValidationError
from sqlalchemy import Engine, select

from bridge.connector_api import (
    CallEvent,
    ConnectorContext,
    Employee,
    PermanentDeliveryError,
    RetryableDeliveryError,
)
from bridge.connector_api.testing import MemoryRefs as Refs
from bridge.connector_api.testing import MemoryState
from bridge.pbx.mango.client import MangoClient
from bridge.pbx.mango.simulator import CommandServer
from bridge.recordings.links import RecordingLinks
from bridge.registry import ConnectorConfigError, build_connectors
from bridge.store.connector_state import SqlStateStore
from bridge.store.schema import connector_state
from connectors.amocrm import AmoClient, AmoCrmConfig, AmoCrmConnector, suggest_mapping
from connectors.amocrm.client import StaticToken
from connectors.amocrm.lookup import best_match, query_terms
from connectors.amocrm.oauth import STATE_KEY, TokenRecord
from tests.fakes.amocrm import FakeAmoCrm

LLT = "llt-" + "a1b2c3d4" * 6
PUBLIC = "https://calls.example.com"
NOW = time.time()
KNOWN = "79161234567"  # stored in amoCRM as "8 (916) 123-45-67"
UNKNOWN = "79035550101"
LINE = "74951234567"
USERS = {"101": "1001", "102": "1002", "103": "1003"}


def links(public_url: str | None) -> RecordingLinks:
    """The core's signed recording links, with a fixed clock so a link is the same in every run."""
    return RecordingLinks(
        lambda: "contract-test-secret", public_url, ttl_seconds=90 * 86400, clock=lambda: NOW
    )


@pytest.fixture
def fake():
    with FakeAmoCrm(long_lived_token=LLT) as server:
        server.add_contact("Иван Петров", ["8 (916) 123-45-67"], responsible_user_id=1002, leads=2)
        yield server


def connector(fake: FakeAmoCrm, public_url: str | None = PUBLIC, **settings: Any) -> AmoCrmConnector:
    config = {"account_url": fake.url, "long_lived_token": LLT, "users": USERS, **settings}
    built = AmoCrmConnector(config, clock=lambda: NOW)  # the events happen at NOW, however late this runs
    built.bind(
        ConnectorContext(state=MemoryState(), public_url=public_url, recording_url=links(public_url).url)
    )
    return built


def ev(type_: str, entry: str = "E1", **kw: Any) -> CallEvent:
    base: dict[str, Any] = {
        "type": type_,
        "entry_id": entry,
        "key": type_ if type_ != "call.ringing" else f"call.ringing:{kw.get('call_id', 'leg1')}",
        "occurred_at": NOW,
        "direction": "incoming",
        "customer_number": KNOWN,
        "line_number": LINE,
        "started_at": NOW - 100,
    }
    base.update(kw)
    return CallEvent(**base)


def ended(
    entry: str = "E1", *, answered: bool = True, responsible: str | None = "101", **kw: Any
) -> CallEvent:
    extra = {"status": "ended" if answered else "missed", "responsible": responsible, "missed": not answered}
    values: dict[str, Any] = {
        "extension": responsible if answered else None,
        "answered_at": NOW - 90 if answered else None,
        "ended_at": NOW - 10,
        "duration": 90,
        "talk_seconds": 80 if answered else 0,
        "recording_ids": ("MTo0MDA+/w==",) if answered else (),
        "disconnect_reason": 1110,
        "extra": extra,
    }
    values.update(kw)
    return ev("call.ended", entry, **values)


def missed(entry: str = "E1", responsible: str | None = "101", **kw: Any) -> CallEvent:
    return replace(
        ended(entry, answered=False, responsible=responsible, **kw),
        type="call.missed",
        key="call.missed",
        extension=responsible,
    )


def sent(fake: FakeAmoCrm) -> list[tuple[str, str, Any]]:
    """(method, path, body or query) of every request the fake accepted."""
    return [(r.method, r.path, r.body if r.method == "POST" else r.query) for r in fake.recorded()]


def search(term: str) -> tuple[str, str, dict[str, str]]:
    return ("GET", "/api/v4/contacts", {"query": term, "with": "leads"})


def call_item(**kw: Any) -> dict[str, Any]:
    item = {
        "direction": "inbound",
        "uniq": "E1",
        "duration": 80,
        "source": "Mango Office",
        "phone": "+79161234567",
        "call_result": "Разговор состоялся",
        "call_status": 4,
        "created_at": int(NOW - 100),
        "link": f"{PUBLIC}/recordings/MTo0MDA%2B%2Fw%3D%3D?t={links(PUBLIC).token('MTo0MDA+/w==')}",
        "responsible_user_id": 1001,
        "call_responsible": 1001,
    }
    item.update(kw)
    return {k: v for k, v in item.items() if v is not None}


def popup(phone: str, *users: int) -> tuple[str, str, dict[str, Any]]:
    return (
        "POST",
        "/api/v2/events",
        {"add": [{"type": "phone_call", "phone_number": phone, "users": list(users)}]},
    )


# ---------------------------------------------------------------------------------------------- the table


@dataclass
class Case:
    name: str
    events: list[CallEvent]
    expected: list[tuple[str, str, Any]]
    settings: dict[str, Any] = field(default_factory=dict)
    public_url: str | None = PUBLIC


CASES = [
    Case(
        "ringing an incoming call pops up for the mapped user only",
        [ev("call.ringing", extension="101")],
        [popup("+79161234567", 1001)],
    ),
    Case(
        "a ring group: one popup per user, never one for everyone, and no repeat for the same user",
        [
            ev("call.ringing", extension="101", call_id="a"),
            ev("call.ringing", extension="102", call_id="b"),
            ev("call.ringing", extension="101", call_id="c"),
        ],
        [popup("+79161234567", 1001), popup("+79161234567", 1002)],
    ),
    Case(
        "an unmapped extension with unmapped = skip gets no popup", [ev("call.ringing", extension="555")], []
    ),
    Case(
        "an unmapped extension with unmapped = default pops up for the default user",
        [ev("call.ringing", extension="555")],
        [popup("+79161234567", 1009)],
        {"unmapped": "default", "default_user": 1009},
    ),
    Case("outgoing calls have no popup", [ev("call.ringing", extension="101", direction="outgoing")], []),
    Case(
        "a popup that comes too late is dropped",
        [ev("call.ringing", extension="101", occurred_at=NOW - 600)],
        [],
    ),
    Case(
        "a hidden number sends nothing",
        [ev("call.ringing", extension="101", customer_number="anonymous")],
        [],
    ),
    Case(
        "a known caller's answered call is logged with status, duration, responsible and recording link",
        [ended()],
        [search("79161234567"), search("9161234567"), ("POST", "/api/v4/calls", [call_item()])],
    ),
    Case(
        "without http.public_url the call is logged without a link",
        [ended()],
        [search("79161234567"), search("9161234567"), ("POST", "/api/v4/calls", [call_item(link=None)])],
        public_url=None,
    ),
    Case(
        "handling call.ended twice sends it once",
        [ended(), ended()],
        [search("79161234567"), search("9161234567"), ("POST", "/api/v4/calls", [call_item()])],
    ),
    Case(
        "an outgoing call to a busy known number: outbound, status 7, no talk",
        [ended(direction="outgoing", answered=False, responsible="102", disconnect_reason=1121)],
        [
            search("79161234567"),
            search("9161234567"),
            (
                "POST",
                "/api/v4/calls",
                [
                    call_item(
                        direction="outbound",
                        duration=0,
                        call_result="Занято",
                        call_status=7,
                        link=None,
                        responsible_user_id=1002,
                        call_responsible=1002,
                    )
                ],
            ),
        ],
    ),
    Case(
        "a missed call from a known number: status 6, then a task on the contact for the responsible user",
        [ended(answered=False), missed()],
        [
            search("79161234567"),
            search("9161234567"),
            (
                "POST",
                "/api/v4/calls",
                [call_item(duration=0, call_result="Пропущенный звонок", call_status=6, link=None)],
            ),
            (
                "POST",
                "/api/v4/tasks",
                [
                    {
                        "text": "Пропущенный звонок с +79161234567: перезвонить",
                        "complete_till": int(NOW - 10 + 30 * 60),
                        "responsible_user_id": 1001,
                        "task_type_id": 1,
                        "entity_type": "contacts",
                        "entity_id": 1001,
                    }
                ],
            ),
        ],
    ),
    Case(
        "an unknown caller becomes an unsorted lead, and its missed call a task on that lead",
        [
            ended(answered=False, customer_number=UNKNOWN, responsible="102"),
            missed(customer_number=UNKNOWN, responsible="102"),
        ],
        [
            search("79035550101"),
            search("9035550101"),
            (
                "POST",
                "/api/v4/leads/unsorted/sip",
                [
                    {
                        "source_name": "Mango Office",
                        "source_uid": "callbridge-mango",
                        "created_at": int(NOW - 100),
                        "metadata": {
                            "uniq": "E1",
                            "duration": 0,
                            "service_code": "callbridge",
                            "phone": LINE,
                            "called_at": int(NOW - 100),
                            "from": "+79035550101",
                            "is_call_event_needed": True,
                            "call_responsible": 1002,
                        },
                        "_embedded": {
                            "leads": [{"name": "Звонок с +79035550101", "responsible_user_id": 1002}],
                            "contacts": [
                                {
                                    "name": "+79035550101",
                                    "custom_fields_values": [
                                        {
                                            "field_code": "PHONE",
                                            "values": [{"value": "+79035550101", "enum_code": "WORK"}],
                                        }
                                    ],
                                    "responsible_user_id": 1002,
                                }
                            ],
                        },
                        "pipeline_id": 777,
                    }
                ],
            ),
            (
                "POST",
                "/api/v4/tasks",
                [
                    {
                        "text": "Call back +79035550101",
                        "complete_till": int(NOW - 10 + 15 * 60),
                        "responsible_user_id": 1002,
                        "task_type_id": 1,
                        "entity_type": "leads",
                        "entity_id": 1004,
                    }
                ],
            ),
        ],
        {"pipeline_id": 777, "task_text": "Call back {number}", "task_due_minutes": 15},
    ),
    Case(
        "a missed call whose call.ended never went out still gets its task (lookup on the spot)",
        [missed(customer_number=UNKNOWN)],
        [
            search("79035550101"),
            search("9035550101"),
            (
                "POST",
                "/api/v4/tasks",
                [
                    {
                        "text": "Missed call from +79035550101: call back",
                        "complete_till": int(NOW - 10 + 30 * 60),
                        "responsible_user_id": 1001,
                        "task_type_id": 1,
                    }
                ],
            ),
        ],
        {"language": "en"},
    ),
    Case(
        "a missed call whose responsible extension is unmapped (skip) gets no task",
        [missed(responsible="555")],
        [],
    ),
    Case(
        "an outgoing call to an unknown number is not logged (amoCRM has nothing to attach it to)",
        [ended(direction="outgoing", customer_number=UNKNOWN)],
        [search("79035550101"), search("9035550101")],
    ),
    Case("internal calls never reach amoCRM", [ended(direction="internal", customer_number=None)], []),
    Case(
        "with log_calls and missed_task off a known caller costs the lookup only",
        [ended(answered=False), missed()],
        [search("79161234567"), search("9161234567")],
        {"log_calls": False, "missed_task": False},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_event_to_requests(fake: FakeAmoCrm, case: Case) -> None:
    amo = connector(fake, case.public_url, **case.settings)
    refs = Refs()
    for event in case.events:
        if amo.wants(event):
            amo.handle(event, refs)
    assert sent(fake) == case.expected
    assert fake.violations == 0 and fake.recorded(outcome="invalid") == []


def test_refs_hold_what_was_created(fake: FakeAmoCrm) -> None:
    amo, refs = connector(fake), Refs()
    amo.handle(ended(customer_number=UNKNOWN, answered=False), refs)
    amo.handle(missed(customer_number=UNKNOWN), refs)
    keys = {k for (_, k) in refs.data}
    assert keys == {"contact", "unsorted", "lead", "task"}
    assert refs.get("E1", "contact") == "none"
    assert refs.get("E1", "unsorted") == fake.unsorted[0]["uid"]
    assert refs.get("E1", "lead") == str(fake.unsorted[0]["lead_id"])
    assert refs.get("E1", "task") == str(fake.tasks[0]["id"])


def test_wants_filters_what_reaches_the_outbox(fake: FakeAmoCrm) -> None:
    amo = connector(fake)
    assert amo.wants(ev("call.ringing")) and not amo.wants(ev("call.ringing", direction="outgoing"))
    assert amo.wants(ended()) and amo.wants(missed())
    assert not amo.wants(ended(direction="internal")) and not amo.wants(ev("call.answered"))
    assert not amo.wants(ev("call.recording_ready"))
    quiet = connector(fake, popup=False, missed_task=False)
    assert not quiet.wants(ev("call.ringing")) and not quiet.wants(missed()) and quiet.wants(ended())


def test_amocrm_not_adding_a_call_falls_back_to_an_unsorted_lead(fake: FakeAmoCrm, monkeypatch) -> None:
    # Our digits match, amoCRM's own matching does not (it answers the item in `errors`).
    monkeypatch.setattr(fake, "_contact_by_phone", lambda phone: None)
    amo, refs = connector(fake), Refs()
    amo.handle(ended(), refs)
    assert [p for _, p, _ in sent(fake)] == [
        "/api/v4/contacts",
        "/api/v4/contacts",
        "/api/v4/calls",
        "/api/v4/leads/unsorted/sip",
    ]
    assert fake.calls == [] and len(fake.unsorted) == 1 and refs.get("E1", "unsorted")


# ---------------------------------------------------------------------------------------------- errors


def test_validation_errors_are_permanent_and_say_which_field(fake: FakeAmoCrm) -> None:
    amo = connector(fake, users={"101": "4242"})  # a user id amoCRM does not have
    with pytest.raises(PermanentDeliveryError) as info:
        amo.handle(ev("call.ringing", extension="101"), Refs())
    assert str(info.value) == (
        "amoCRM POST /api/v2/events: HTTP 400 Bad Request: Request validation failed; "
        "item 0: add.0.users: NotFound (unknown user 4242)"
    )
    assert info.value.status == 400  # type: ignore[attr-defined]


def test_a_wrong_token_is_a_retryable_auth_error_without_the_token_in_it(fake: FakeAmoCrm) -> None:
    amo = connector(fake, long_lived_token="wrong-token-0123456789")
    with pytest.raises(RetryableDeliveryError) as info:
        amo.handle(ended(), Refs())
    assert info.value.retry_after == 60.0
    assert "401" in str(info.value) and "wrong-token" not in str(info.value)


def test_429_is_retryable_with_a_pause_and_nothing_is_created(fake: FakeAmoCrm) -> None:
    amo, refs = connector(fake), Refs()
    fake.throttle(0.5)
    with pytest.raises(RetryableDeliveryError) as info:
        amo.handle(ev("call.ringing", extension="101"), refs)
    assert info.value.retry_after == 1.0 and "HTTP 429 Too Many Requests" in str(info.value)
    assert fake.popups == [] and refs.data == {}
    time.sleep(0.5)
    amo.handle(ev("call.ringing", extension="101"), refs)
    assert len(fake.popups) == 1


# ---------------------------------------------------------------------------------------------- rate


def test_many_threads_never_exceed_the_limit(fake: FakeAmoCrm) -> None:
    amo = connector(fake)
    started = time.monotonic()

    def work(n: int) -> None:
        for i in range(6):
            amo.handle(ev("call.ringing", entry=f"T{n}-{i}", extension="101"), Refs())

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert len(fake.popups) == 24
    assert fake.violations == 0 and fake.max_in_window() <= 7
    assert elapsed >= 23 / 7 - 0.05


def test_the_fake_catches_a_client_that_sends_too_fast(fake: FakeAmoCrm) -> None:
    reckless = AmoClient(fake.url, StaticToken(LLT), rate=50)
    for _ in range(12):
        with contextlib.suppress(RetryableDeliveryError):
            reckless.get("/api/v4/account")
    assert fake.violations >= 1 and fake.max_in_window() > 7


def test_rate_above_amocrm_s_limit_is_refused_in_config() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 7"):
        AmoCrmConfig(account_url="https://a.amocrm.ru", long_lived_token="x", requests_per_second=10)


# ---------------------------------------------------------------------------------------------- lookup


def test_lookup_gives_a_caller_card_with_the_responsible_employee(fake: FakeAmoCrm) -> None:
    amo = connector(fake)
    card = amo.lookup("+7 916 123-45-67")
    assert card is not None
    assert card.source == "amocrm" and card.name == "Иван Петров"
    assert card.links == (("amoCRM", f"{fake.url}/contacts/detail/1001"),)
    assert card.responsible == Employee(extension="102", crm_user_id="1002")
    assert card.details == {"contact_id": 1001, "lead_ids": [1002, 1003], "matched_on": "E.164"}
    assert amo.responsible_for("89161234567") == Employee(extension="102", crm_user_id="1002")
    assert len(fake.recorded("/api/v4/contacts")) == 2  # the second lookup came from the cache
    assert amo.lookup(UNKNOWN) is None
    assert amo.lookup("not a number") is None


@pytest.mark.parametrize(
    "stored", ["+7 916 123-45-67", "89161234567", "9161234567", "8 (916) 123 45 67", "+79161234567"]
)
def test_lookup_finds_numbers_in_every_format(stored: str) -> None:
    with FakeAmoCrm(long_lived_token=LLT) as fake:
        fake.add_contact("Someone", [stored])
        assert connector(fake).lookup(KNOWN) is not None


def test_matching_prefers_e164_then_national_then_last_10_digits() -> None:
    by_last10 = {
        "id": 1,
        "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "+1 916 123 4567"}]}],
    }
    by_e164 = {
        "id": 2,
        "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "+7 916 123-45-67"}]}],
    }
    other = {
        "id": 3,
        "custom_fields_values": [{"field_code": "PHONE", "values": [{"value": "+7 495 000-00-00"}]}],
    }
    match = best_match([by_last10, other, by_e164], "+79161234567")
    assert match is not None and (match.contact_id, match.rank) == (2, 0)
    match = best_match([by_last10, other], "+79161234567")
    assert match is not None and (match.contact_id, match.rank) == (1, 2)
    assert best_match([other], "+79161234567") is None
    assert query_terms("+79161234567") == ["79161234567", "9161234567"]
    assert query_terms("+375291234567") == ["375291234567", "291234567", "5291234567"]


# ---------------------------------------------------------------------------------------------- check


def test_check_reports_in_plain_words(fake: FakeAmoCrm) -> None:
    amo = connector(fake, unmapped="default", default_user="1009")
    assert amo.check() == (
        "Connected to amoCRM account 'Fake Motors' (127.0.0.1) with a long-lived token. 4 amoCRM user(s); "
        "3 extension(s) mapped. Unmapped extensions go to user 1009."
    )
    assert "logged without a recording link" in connector(fake, public_url=None).check()
    assert "user ids amoCRM does not have: 101" in connector(fake, users={"101": "4242"}).check()


def test_check_says_the_widgets_click_to_call_is_on(fake: FakeAmoCrm) -> None:
    assert "click-to-call is on" in connector(fake, client_secret="integration-secret").check()


def test_check_reads_the_long_lived_token_expiry(fake: FakeAmoCrm) -> None:
    import base64
    import json

    claims = base64.urlsafe_b64encode(json.dumps({"exp": 1893456000}).encode()).decode().rstrip("=")
    jwt = f"eyJhbGciOiJSUzI1NiJ9.{claims}.c2ln"
    fake.long_lived_token = jwt
    assert "valid until 2030-01-01" in connector(fake, long_lived_token=jwt).check()


def test_check_explains_failures(fake: FakeAmoCrm) -> None:
    with pytest.raises(RetryableDeliveryError) as info:
        connector(fake, long_lived_token="expired-token-value-0123").check()
    assert "refused the long-lived token (HTTP 401)" in str(info.value) and "Keys and scopes" in str(
        info.value
    )
    port = fake.url.rsplit(":", 1)[1]
    fake.stop()
    with pytest.raises(
        RetryableDeliveryError,
        match=r"Could not reach amoCRM at 127.0.0.1: connection failed \(connection refused\)",
    ):
        AmoCrmConnector({"account_url": f"http://127.0.0.1:{port}", "long_lived_token": LLT}).check()


# ---------------------------------------------------------------------------------------------- mapping


def test_employees_are_imported_from_mango_by_e_mail(fake: FakeAmoCrm) -> None:
    with CommandServer("k", "salt-0123456789", rate_limits=False) as mango:
        mango.users[2]["general"]["email"] = None  # 103 has no e-mail in Mango
        mango_users = MangoClient("k", "salt-0123456789", mango.url).users()
    amo = connector(fake, users={})
    suggestion = amo.import_employees(mango_users)
    assert suggestion.mapped == {"101": "1001", "102": "1002"}  # 102's e-mail differs in case only
    assert suggestion.no_email == ["103"]
    assert sorted(suggestion.unused_users) == ["1003", "1009"]
    assert amo.employees.user_for("102") == "1002"
    # the explicit config wins over the import
    amo2 = connector(fake, users={"102": "1009"})
    amo2.bind(amo.context)  # same state store
    assert amo2.employees.user_for("102") == "1009" and amo2.employees.user_for("101") == "1001"
    assert "2 extension(s) matched" in suggestion.report()


def test_ambiguous_e_mails_are_never_guessed() -> None:
    amo_users = [
        {"id": 1, "name": "A", "email": "team@example.com"},
        {"id": 2, "name": "B", "email": "Team@example.com"},
        {"id": 3, "name": "C", "email": "c@example.com"},
    ]
    mango = [
        {"general": {"email": "team@example.com"}, "telephony": {"extension": "101"}},
        {"general": {"email": "c@example.com"}, "telephony": {"extension": "102"}},
        {"general": {"email": "nobody@example.com"}, "telephony": {"extension": "103"}},
    ]
    result = suggest_mapping(amo_users, mango)
    assert result.mapped == {"102": "3"}
    assert result.ambiguous == ["team@example.com"] and result.unmatched == ["103"]


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"account_url": "ftp://x.amocrm.ru"}, "should look like https://example.amocrm.ru"),
        ({"account_url": "http://x.amocrm.ru"}, "must use https"),
        ({"account_url": "https://x.amocrm.ru/leads"}, "the account's address only"),
        ({"long_lived_token": None}, "no credentials"),
        ({"client_id": "c"}, "without client_secret"),
        ({"long_lived_token": None, "client_id": "c"}, "OAuth needs both"),
        ({"authorization_code": "x"}, "are for OAuth"),
        ({"users": {"101": "anna"}}, "amoCRM user ids are numbers"),
        ({"unmapped": "default"}, "needs default_user"),
        ({"requests_per_second": 0}, "greater than 0"),
    ],
)
def test_config_errors_name_the_problem(settings: dict[str, Any], problem: str) -> None:
    base = {"account_url": "https://x.amocrm.ru", "long_lived_token": LLT}
    with pytest.raises(ConnectorConfigError) as info:
        build_connectors({"amocrm": {k: v for k, v in {**base, **settings}.items() if v is not None}})
    assert problem in str(info.value)
    assert LLT not in str(info.value)


def test_config_accepts_env_strings_and_kommo() -> None:
    config = AmoCrmConfig(
        account_url="acme.kommo.com/",
        long_lived_token=LLT,
        users='{"101": 1001, "102": "1002"}',
        default_user=5,
    )
    assert config.account_url == "https://acme.kommo.com" and config.host == "acme.kommo.com"
    assert config.users == {"101": "1001", "102": "1002"} and config.default_user == "5"
    built = build_connectors({"amocrm": {"account_url": "https://acme.amocrm.ru", "long_lived_token": LLT}})[
        "amocrm"
    ]
    assert LLT not in repr(built) and LLT not in repr(built.settings)
    assert built.rate_limit.rate == 7.0 and AmoCrmConnector.rate_limit.rate == 7.0


# ---------------------------------------------------------------------------------------------- OAuth


@pytest.fixture
def oauth_fake():
    with FakeAmoCrm(
        client_id="cid", client_secret="csecret", redirect_uri=f"{PUBLIC}/connectors/amocrm/oauth/callback"
    ) as server:
        server.add_contact("Иван Петров", ["8 (916) 123-45-67"])
        yield server


def oauth_connector(fake: FakeAmoCrm, state: Any, **settings: Any) -> AmoCrmConnector:
    config = {
        "account_url": fake.url,
        "client_id": "cid",
        "client_secret": "csecret",
        "users": USERS,
        **settings,
    }
    built = AmoCrmConnector(config, clock=lambda: NOW)  # the events happen at NOW, however late this runs
    built.bind(ConnectorContext(state=state, public_url=PUBLIC, recording_url=links(PUBLIC).url))
    return built


def test_two_processes_sharing_the_store_refresh_the_single_use_token_once(
    oauth_fake: FakeAmoCrm, engine: Engine
) -> None:
    code = oauth_fake.issue_code()
    state_a, state_b = SqlStateStore(engine, "amocrm"), SqlStateStore(engine, "amocrm")
    # Two processes share amoCRM's 7 requests/s: 3.5 each (3 + 3 in any second; docs: scaling out).
    first = oauth_connector(oauth_fake, state_a, authorization_code=code, requests_per_second=3.5)
    second = oauth_connector(oauth_fake, state_b, authorization_code=code, requests_per_second=3.5)
    assert first.lookup(KNOWN) is not None and second.client.auth.token() == first.client.auth.token()
    assert [t["grant_type"] for t in oauth_fake.token_requests] == ["authorization_code"]

    oauth_fake.expire_access_tokens()
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def work(amo: AmoCrmConnector, n: int) -> None:
        barrier.wait()
        try:
            amo.handle(ev("call.ringing", entry=f"R{n}", extension="101"), Refs())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(amo, n)) for n, amo in enumerate([first, second] * 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(oauth_fake.popups) == 6 and oauth_fake.violations == 0
    assert [t["grant_type"] for t in oauth_fake.token_requests] == ["authorization_code", "refresh_token"]
    assert set(oauth_fake.refresh_uses.values()) == {1}
    with engine.connect() as conn:
        value, version = conn.execute(
            select(connector_state.c.value, connector_state.c.version).where(
                connector_state.c.key == STATE_KEY
            )
        ).one()
    record = TokenRecord.from_json(value)
    assert record.refresh_token == oauth_fake.current_refresh_token and record.generation == 2
    assert record.lease_owner is None and version == 4  # claim + store, twice
    assert "csecret" not in value and code not in value


def test_oauth_without_tokens_says_how_to_authorise(oauth_fake: FakeAmoCrm) -> None:
    amo = oauth_connector(oauth_fake, MemoryState())
    with pytest.raises(RetryableDeliveryError, match="not authorised .*oauth/start") as info:
        amo.handle(ended(), Refs())
    assert info.value.retry_after == 300.0
    with pytest.raises(RetryableDeliveryError, match="not authorised"):
        amo.check()


def test_a_used_code_is_refused_with_amocrm_s_hint(oauth_fake: FakeAmoCrm) -> None:
    amo = oauth_connector(oauth_fake, MemoryState(), authorization_code="def502-never-issued")
    with pytest.raises(RetryableDeliveryError) as info:
        amo.lookup(KNOWN)
    assert "Authorization code has been revoked" in str(info.value)
    assert "def502-never-issued" not in str(info.value)


def callback_app(amo: AmoCrmConnector) -> Flask:
    app = Flask("test")
    app.register_blueprint(amo.blueprint(), url_prefix="/connectors/amocrm")
    return app


def test_the_oauth_callback_exchanges_the_code_and_stores_the_tokens(oauth_fake: FakeAmoCrm) -> None:
    state = MemoryState()
    amo = oauth_connector(oauth_fake, state)
    web = callback_app(amo).test_client()
    start = web.get("/connectors/amocrm/oauth/start")
    assert start.status_code == 302
    location = start.headers["Location"]
    assert location.startswith("https://www.amocrm.ru/oauth?client_id=cid&state=")
    state_param = location.split("state=")[1].split("&")[0]
    code = oauth_fake.issue_code()
    answer = web.get(
        "/connectors/amocrm/oauth/callback",
        query_string={"code": code, "referer": "127.0.0.1", "state": state_param, "client_id": "cid"},
    )
    assert answer.status_code == 200, answer.json
    assert answer.json["status"] == "connected" and code not in answer.get_data(as_text=True)
    assert "via OAuth (token pair #1" in amo.check()
    # a replayed callback does not spend anything
    again = web.get("/connectors/amocrm/oauth/callback", query_string={"code": code})
    assert again.status_code == 200 and len(oauth_fake.token_requests) == 1


@pytest.mark.parametrize(
    ("query", "status", "words"),
    [
        ({}, 400, "needs the 'code'"),
        ({"code": "x", "referer": "evil.amocrm.ru"}, 400, "another account (evil.amocrm.ru)"),
        ({"code": "x", "client_id": "other"}, 400, "another integration"),
        ({"code": "x", "state": "forged"}, 400, "'state' is not ours"),
        ({"error": "access_denied"}, 400, "not granted"),
        ({"code": "never-issued"}, 502, "amoCRM did not accept the code"),
    ],
)
def test_the_oauth_callback_refuses_bad_input(oauth_fake: FakeAmoCrm, query, status, words) -> None:
    web = callback_app(oauth_connector(oauth_fake, MemoryState())).test_client()
    answer = web.get("/connectors/amocrm/oauth/callback", query_string=query)
    assert answer.status_code == status and words in answer.json["error"]


def test_a_long_lived_token_alone_has_no_oauth_hooks_and_no_widget_call(fake: FakeAmoCrm) -> None:
    web = callback_app(connector(fake)).test_client()
    assert web.get("/connectors/amocrm/oauth/start").status_code == 404
    assert web.post("/connectors/amocrm/widget/call", json={"phone": "+79161234567"}).status_code == 404
