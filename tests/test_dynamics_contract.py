"""The Dynamics 365 connector against the contract fake (tests/fakes/dynamics.py) over TLS, with msal asking
the fake's token endpoint for real: the shared contract's harness (run in tests/test_connector_contract.py),
then Dataverse's own cases: the exact records, the digit-tail lookup, a lost answer that still makes one
record, tokens refreshed before they expire and replaced when refused, `check()`."""

from __future__ import annotations

import os
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pytest

from bridge.connector_api import CallEvent, PermanentDeliveryError, RetryableDeliveryError
from bridge.connector_api.testing import ContractHarness, MemoryRefs, capture_logs, context
from bridge.pbx.port import PbxUser  # what the core's PbxUsers fetcher gives
from connectors.dynamics import DynamicsConnector
from connectors.dynamics.records import record_id
from connectors.dynamics.tokens import TokenRefused
from tests.fakes.dynamics import FakeDataverse, certificate

SECRET = "dyn-contract-secret-" + "0a1b2c3d" * 4
PUBLIC = "https://calls.example.com"
USERS = {"201": "00000000-0000-0000-0000-000000000201", "202": "00000000-0000-0000-0000-000000000202"}
NOW = 1_796_000_000.0
Kind = Literal["retryable", "permanent"]


@contextmanager
def dataverse(directory: Path, **extra: Any) -> Iterator[FakeDataverse]:
    """The fake, started over TLS with its own certificate, trusted through REQUESTS_CA_BUNDLE meanwhile."""
    cert, key = certificate(directory)
    before = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(cert)
    fake = FakeDataverse(cert=cert, key=key, client_secret=SECRET, **extra).start()
    fake.systemusers.update(USERS.values())
    try:
        yield fake
    finally:
        fake.stop()
        if before is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = before


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDataverse]:
    with dataverse(tmp_path) as started:
        yield started


def settings(fake: FakeDataverse, **extra: Any) -> dict[str, Any]:
    base = {
        "url": fake.url,
        "tenant_id": fake.tenant,
        "client_id": fake.client_id,
        "client_secret": SECRET,
        "authority_host": fake.url,
        "users": USERS,
    }
    return {**base, **extra}


def connector(fake: FakeDataverse, **extra: Any) -> DynamicsConnector:
    built = DynamicsConnector(settings(fake, **extra))
    built.bind(context(public_url=PUBLIC, recording_url=lambda rid: f"{PUBLIC}/recordings/{rid}?t=x"))
    return built


def ended(entry: str, number: str, *, talk: int = 0, direction: str = "incoming", **fields: Any) -> CallEvent:
    values: dict[str, Any] = {
        "type": "call.ended",
        "entry_id": entry,
        "key": "call.ended",
        "occurred_at": NOW,
        "direction": direction,
        "customer_number": number,
        "extension": "201",
        "extensions": ("201", "202"),
        "started_at": NOW - 60 - talk,
        "ended_at": NOW,
        "talk_seconds": talk,
        "answered_at": NOW - talk if talk else None,
        "extra": {"responsible": "201"},
    }
    values.update(fields)
    return CallEvent(**values)


class DynamicsHarness(ContractHarness):
    """A missed call from a caller of its own: a lead, a phone call (created, then closed), a task."""

    def __init__(self, fake: FakeDataverse) -> None:
        self.fake, self.refs = fake, MemoryRefs()
        self.connector = connector(fake)
        self.secrets = (SECRET,)

    @staticmethod
    def phone(entry_id: str) -> str:
        return f"7916{zlib.crc32(entry_id.encode()) % 10**7:07d}"

    def call(self, entry_id: str) -> list[CallEvent]:
        return [ended(entry_id, self.phone(entry_id))]

    def effects(self, entry_id: str) -> list[str]:
        names = {
            ("POST", "/leads", record_id(entry_id, "lead")): "lead",
            ("POST", "/phonecalls", record_id(entry_id, "phonecall")): "phonecall",
            ("PATCH", f"/phonecalls({record_id(entry_id, 'phonecall')})", None): "closed",
            ("POST", "/tasks", record_id(entry_id, "task")): "task",
        }
        out = []
        for s in self.fake.recorded():
            body = s.body if isinstance(s.body, dict) else {}
            key = body.get("leadid") or body.get("activityid") if s.method == "POST" else None
            name = names.get((s.method, s.path, key))
            if name:
                out.append(name)
        return out

    def expected(self, entry_id: str) -> list[str]:
        return ["lead", "phonecall", "closed", "task"]

    def fail_next(self, kind: Kind) -> None:
        self.fake.script(503 if kind == "retryable" else 400)


# The shared contract runs `DynamicsHarness` in tests/test_connector_contract.py.


def test_an_answered_call_from_a_contact_is_one_closed_phonecall_regarding_them(fake: FakeDataverse) -> None:
    anna = fake.add_contact("Анна Соколова", owner=USERS["202"], mobilephone="8 916 123 45 67")
    fake.add_contact("Someone Else", telephone1="+7 (925) 123-45-67")  # the same last digits
    dyn, refs = connector(fake), MemoryRefs()
    event = ended("A1", "79161234567", talk=125, recording_ids=("rec-1",))
    dyn.handle(event, refs)
    dyn.handle(event, refs)  # redelivered: nothing more
    (call,) = fake.rows("phonecalls")
    assert call["regardingobjectid_contact_phonecall"] == f"/contacts({anna})"
    assert (call["statecode"], call["statuscode"], call["directioncode"]) == (1, 4, False)
    assert call["actualdurationminutes"] == 3 and "2 min 5 s (125 s)" in call["description"]
    assert f"Recording: {PUBLIC}/recordings/rec-1?t=x" in call["description"]
    assert call["parties"] == [
        {"party": f"/contacts({anna})", "mask": 1},
        {"party": f"/systemusers({USERS['201']})", "mask": 2},
    ]
    assert fake.rows("tasks") == [] and fake.rows("leads") == []


def test_an_outgoing_call_is_made_by_the_employee(fake: FakeDataverse) -> None:
    bob = fake.add_contact("Bob Smith", telephone1="+7 916 765-43-21")
    connector(fake).handle(ended("O1", "79167654321", talk=30, direction="outgoing"), MemoryRefs())
    (call,) = fake.rows("phonecalls")
    assert (call["statuscode"], call["directioncode"], call["subject"]) == (
        2,
        True,
        "Outgoing call to +79167654321",
    )
    assert call["parties"] == [
        {"party": f"/contacts({bob})", "mask": 2},
        {"party": f"/systemusers({USERS['201']})", "mask": 1},
    ]


def test_unknown_callers_become_what_the_setting_says(fake: FakeDataverse) -> None:
    connector(fake, unknown_caller="contact").handle(ended("U1", "79035550001"), MemoryRefs())
    (contact,) = [c for c in fake.rows("contacts") if c.get("telephone1") == "+79035550001"]
    assert contact["contactid"] == record_id("U1", "contact")
    connector(fake, unknown_caller="none").handle(ended("U2", "79035550002"), MemoryRefs())
    (call,) = [c for c in fake.rows("phonecalls") if c["phonenumber"] == "+79035550002"]
    assert "parties" in call and not any(k.startswith("regardingobjectid") for k in call)
    assert fake.rows("leads") == []
    # A second call from the lead's number regards the same lead.
    dyn = connector(fake)
    dyn.handle(ended("U3", "79035550003"), MemoryRefs())
    dyn.handle(ended("U4", "79035550003"), MemoryRefs())
    assert len(fake.rows("leads")) == 1
    assert len(fake.rows("tasks", _regardingobjectid_value=record_id("U3", "lead"))) == 2


def test_a_lost_answer_still_makes_one_record(fake: FakeDataverse) -> None:
    dyn = connector(fake)
    refs = MemoryRefs()
    event = ended("L1", "79035550011")
    dyn.handle(event, refs)
    refs.data.clear()  # as if every answer had been lost: the steps are sent again
    dyn.handle(event, refs)
    assert len(fake.rows("phonecalls")) == 1 and len(fake.rows("tasks")) == 1 and len(fake.rows("leads")) == 1
    # The lead is found by number the second time; the phone call and the task meet "duplicate key".
    assert len(fake.recorded("duplicate")) == 2


def test_errors_carry_dataverse_words_and_are_classified(fake: FakeDataverse) -> None:
    dyn, refs = connector(fake), MemoryRefs()
    fake.script(503)
    with pytest.raises(RetryableDeliveryError, match=r"HTTP 503 0x80040216: scripted 503"):
        dyn.handle(ended("E1", "79035550021"), refs)
    fake.systemusers.discard(USERS["201"])  # the owner bind now names a user that does not exist
    with pytest.raises(PermanentDeliveryError, match=r"0x80040217: systemuser With Id"):
        dyn.handle(ended("E2", "79035550022"), MemoryRefs())


def test_tokens_are_refreshed_before_they_expire_and_replaced_when_refused(tmp_path: Path) -> None:
    # msal never serves a token with less than five minutes left: one issued for 301 s is used for 1 s.
    with dataverse(tmp_path, lifetimes=deque([301])) as fake:
        dyn = connector(fake)
        dyn.check()
        issued_at = time.monotonic()
        dyn.check()
        assert fake.tokens_issued == 1
        assert fake.wait_until(lambda: time.monotonic() - issued_at > 1.05, timeout=5)
        dyn.check()
        assert fake.tokens_issued == 2 and fake.refused_tokens == 0
        fake.revoke_tokens()
        dyn.check()  # 401: the token leaves msal's cache, a new one is asked for once
        assert fake.tokens_issued == 3 and fake.refused_tokens == 1


def test_the_caller_card_is_the_contact_found_by_number(fake: FakeDataverse) -> None:
    anna = fake.add_contact("Анна Соколова", owner=USERS["202"], telephone1="+7 (916) 123-45-67")
    dyn = connector(fake)
    card = dyn.lookup("89161234567")
    assert card is not None and card.name == "Анна Соколова"
    assert card.details == {"contactid": anna}
    assert card.links == (
        ("Dynamics 365", f"{fake.url}/main.aspx?pagetype=entityrecord&etn=contact&id={anna}"),
    )
    assert card.responsible is not None and card.responsible.extension == "202"
    assert dyn.lookup("+79161234567") is card  # cached
    assert dyn.lookup("79990001122") is None


def test_check_explains_a_wrong_secret(fake: FakeDataverse) -> None:
    dyn = connector(fake, client_secret="wrong-" + "x" * 20)
    with capture_logs() as lines, pytest.raises(TokenRefused, match="invalid_client.*client_secret"):
        dyn.check()
    assert not any(SECRET in line for line in lines)
    text = connector(fake).check()
    assert f"as application user {fake.app_user}" in text and "/connectors/dynamics/cif" in text


def test_the_limit_is_never_exceeded(tmp_path: Path) -> None:
    with dataverse(tmp_path, limit=10, window=1.0) as fake:
        dyn = connector(fake, requests_per_second=9)
        for i in range(4):
            dyn.handle(ended(f"R{i}", f"7903555{i:04d}"), MemoryRefs())
        assert fake.violations == 0 and fake.max_in(1.0) <= 10


def test_employees_are_imported_by_main_phone_then_by_e_mail(fake: FakeDataverse) -> None:
    olga = fake.add_user("Olga", main_phone="201", email="olga@example.com")
    ivan = fake.add_user("Ivan", email="Ivan@Example.com")
    fake.add_user("Gone", email="gone@example.com", disabled=True)
    fake.add_user("callbridge", email="app@example.com", application=True)
    fake.page_size = 2  # the list comes in pages, followed by @odata.nextLink
    dyn = connector(fake, users={})
    mango = [
        PbxUser(extension="201", email="someone.else@example.com"),
        PbxUser(extension="202", email="ivan@example.com"),
        PbxUser(extension="203", email="gone@example.com"),
        PbxUser(extension="204", email="app@example.com"),
    ]
    result = dyn.import_employees(lambda: mango)
    assert (result.by_phone, result.by_email) == ({"201": olga}, {"202": ivan})
    assert result.unmatched == ["203", "204"]
    assert "2 extension(s) matched to Dynamics users (1 by Main Phone, 1 by e-mail)" in result.report()
    assert dyn.mapped_users() == {"201": olga, "202": ivan}
    assert dyn.employees.user_for("202") == ivan
    pages = [s for s in fake.recorded() if s.path == "/systemusers"]
    assert len(pages) == 2


def test_more_requests_at_once_than_allowed_are_refused(tmp_path: Path) -> None:
    with dataverse(tmp_path, concurrency=1) as fake:
        dyn = connector(fake)
        dyn.check()  # a token first, so what follows is only the Web API
        outcomes: list[str] = []

        def ask() -> None:
            try:
                dyn.client.get("/WhoAmI")
                outcomes.append("ok")
            except RetryableDeliveryError as exc:
                outcomes.append(type(exc).__name__)

        threads = [threading.Thread(target=ask) for _ in range(2)]
        with fake.lock:  # hold the fake's answers: the second request arrives while the first waits
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 5
            while fake.most_at_once < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
        for thread in threads:
            thread.join(10)
        assert sorted(outcomes) == ["DataverseRateLimited", "ok"] and fake.violations == 1


def test_a_contact_owned_by_a_team_leaves_the_task_to_the_employee_rung(fake: FakeDataverse) -> None:
    team = "00000000-0000-0000-0000-000000007ea3"  # owners may be teams; a team is no systemuser
    fake.add_contact("Team Client", owner=team, telephone1="+7 916 111-22-33")
    connector(fake).handle(ended("T1", "79161112233"), MemoryRefs())
    (task,) = fake.rows("tasks")
    assert task["_ownerid_value"] == USERS["201"]


def test_nothing_is_queued_when_nothing_is_to_be_sent(fake: FakeDataverse) -> None:
    event = ended("N1", "79035550031")
    assert connector(fake).wants(event)
    assert not connector(fake).wants(ended("N2", "101", direction="internal"))
    quiet = connector(fake, log_calls=False, missed_task=False, unknown_caller="none")
    assert not quiet.wants(event)
