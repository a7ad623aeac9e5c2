"""The retailCRM connector against the contract fake, case by case (tests/fakes/retailcrm.py), and its
harness for the shared contract suite (tests/test_connector_contract.py)."""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from flask import Flask

from bridge.connector_api import CallEvent, DeliveryError, PermanentDeliveryError, RetryableDeliveryError
from bridge.connector_api.testing import ContractHarness, MemoryRefs, MemoryState, capture_logs, context
from connectors.retailcrm import RetailCrmConnector, RetailCrmPermanentError, RetailCrmRateLimited
from connectors.retailcrm.registration import CLIENT_ID_KEY
from tests.fakes.retailcrm import FakeRetailCrm

KEY = "rcrm-contract-" + "0a1b2c3d" * 5
PUBLIC = "https://calls.example.com"
USERS = {"101": "7", "102": "8", "103": "9"}
LINE = "74951234567"


def ev(kind: str, entry: str, phone: str, **fields: Any) -> CallEvent:
    now = time.time()
    base: dict[str, Any] = {
        "type": kind,
        "entry_id": entry,
        "key": kind,
        "occurred_at": now,
        "received_at": now,
        "direction": "incoming",
        "customer_number": phone,
        "line_number": LINE,
        "started_at": now - 40,
    }
    return CallEvent(**{**base, **fields})


def missed_call(entry: str, phone: str, exts: tuple[str, ...] = ("101",)) -> list[CallEvent]:
    ringing = [ev("call.ringing", entry, phone, key=f"call.ringing:{e}", extension=e) for e in exts]
    end = {"extension": None, "ended_at": time.time(), "disconnect_reason": 1111, "wait_seconds": 40}
    ended = ev("call.ended", entry, phone, extra={"missed": True, "responsible": exts[0]}, **end)
    return [*ringing, ended, ev("call.missed", entry, phone, extension=exts[0], ended_at=end["ended_at"])]


def connector(fake: FakeRetailCrm, **settings: Any) -> RetailCrmConnector:
    config = {"url": fake.url, "api_key": KEY, "users": USERS, **settings}
    built = RetailCrmConnector(config, register_on_bind=False)
    links = f"{PUBLIC}/recordings/{{}}?t=signed"
    built.bind(context(MemoryState(), public_url=PUBLIC, recording_url=links.format))
    return built


class RetailCrmHarness(ContractHarness):
    def __init__(self, fake: FakeRetailCrm) -> None:
        self.fake, self.refs = fake, MemoryRefs()
        self.connector = connector(fake)
        self.callers: set[str] = set()
        self.secrets = (KEY,)

    def phone(self, entry_id: str) -> str:
        """A caller of its own per call (tasks name the caller, not the call), with a manager."""
        number = f"7916{zlib.crc32(entry_id.encode()) % 10**7:07d}"
        if number not in self.callers:
            self.callers.add(number)
            self.fake.add_customer("Caller", entry_id, [f"+{number}"], manager=8)
        return number

    def call(self, entry_id: str) -> list[CallEvent]:
        return missed_call(entry_id, self.phone(entry_id))

    def effects(self, entry_id: str) -> list[str]:
        phone = f"+{self.phone(entry_id)}"
        out = []
        for request, (method, path, status) in zip(self.fake.requests, self.fake.outcomes, strict=True):
            if method != "POST" or status != 200:
                continue
            text = request.body.decode()
            if entry_id not in text and phone.replace("+", "%2B") not in text:
                continue
            out.append(path.rsplit("/", 2)[-2] + "/" + path.rsplit("/", 1)[-1])
        return out

    def expected(self, entry_id: str) -> list[str]:
        return ["call/event", "call/event", "calls/upload", "tasks/create"]

    def fail_next(self, kind: Literal["retryable", "permanent"]) -> None:
        self.fake.fail_next(503 if kind == "retryable" else 400)


@pytest.fixture
def fake() -> Iterator[FakeRetailCrm]:
    with FakeRetailCrm(api_key=KEY) as server:
        server.add_customer("Иван", "Петров", ["8 (916) 123-45-67"], manager=8, orders=3)
        yield server


def test_popups_go_to_exactly_the_mapped_ringing_employees(fake: FakeRetailCrm) -> None:
    crm = connector(fake)
    refs = MemoryRefs()
    for event in missed_call("E1", "79035550000", ("101", "104", "102")):
        crm.handle(event, refs)
    kinds = [(e["type"], e["codes"], e.get("hangupStatus"), e.get("userIds")) for e in fake.events]
    assert kinds == [
        ("in", ["101"], None, [7]),
        ("in", ["102"], None, [8]),
        ("hangup", ["101", "102"], "no answered", [7, 8]),
    ]  # 104 has no retailCRM user (unmapped = skip): no popup
    (task,) = fake.tasks
    assert task["performerId"] == 7 and "customer" not in task  # unknown number: the first employee rung


def test_the_call_log_uses_the_upload_spelling_and_the_task_goes_to_the_manager(fake: FakeRetailCrm) -> None:
    crm = connector(fake, timezone="UTC")
    refs = MemoryRefs()
    for event in missed_call("E2", "79161234567"):
        crm.handle(event, refs)
    (call,) = fake.calls
    assert call["result"] == "no answer" and fake.events[-1]["hangupStatus"] == "no answered"
    assert (call["type"], call["code"], call["userId"], call["externalId"]) == ("in", "101", 7, "E2")
    (task,) = fake.tasks
    assert task["performerId"] == 8 and task["customer"] == {"id": 101}


def test_redelivery_sends_nothing_twice(fake: FakeRetailCrm) -> None:
    crm = connector(fake)
    refs = MemoryRefs()
    events = missed_call("E3", "79161234567")
    for event in events + events:
        crm.handle(event, refs)
    assert len(fake.events) == 2 and len(fake.calls) == 1 and len(fake.tasks) == 1
    assert fake.duplicate_uploads == 0


def test_an_answered_call_links_the_recording(fake: FakeRetailCrm) -> None:
    crm = connector(fake)
    refs = MemoryRefs()
    now = time.time()
    crm.handle(ev("call.ringing", "E4", "79161234567", extension="102"), refs)
    crm.handle(ev("call.answered", "E4", "79161234567", extension="102"), refs)
    crm.handle(
        ev(
            "call.ended",
            "E4",
            "79161234567",
            extension="102",
            answered_at=now - 30,
            ended_at=now,
            talk_seconds=30,
            wait_seconds=10,
            recording_ids=("R-1",),
            disconnect_reason=1110,
        ),
        refs,
    )
    (call,) = fake.calls
    assert call["result"] == "answered" and call["duration"] == 30 and call["durationWaiting"] == 10
    assert call["recordUrl"] == f"{PUBLIC}/recordings/R-1?t=signed"
    assert [e.get("hangupStatus") for e in fake.events] == [None, "answered"]


def test_a_503_is_retryable_and_pauses_the_client(fake: FakeRetailCrm) -> None:
    crm = connector(fake)
    fake.fail_next(503, headers={"Retry-After": "2"})
    with pytest.raises(RetailCrmRateLimited) as caught:
        crm.handle(missed_call("E5", "79161234567")[0], MemoryRefs())
    assert isinstance(caught.value, RetryableDeliveryError) and caught.value.retry_after == 2
    assert crm.client.bucket.try_acquire() > 1.0  # nobody in this process sends for ~2 s


def test_a_refused_payload_is_permanent_with_retailcrms_words(fake: FakeRetailCrm) -> None:
    crm = connector(fake)
    with pytest.raises(RetailCrmPermanentError) as caught:
        crm.client.post("/telephony/calls/upload", {"calls": [{"type": "in", "result": "no answered"}]})
    assert isinstance(caught.value, PermanentDeliveryError)
    assert "Errors in the entity format" in str(caught.value) and "result: Invalid value" in str(caught.value)


def test_a_wrong_key_is_explained_by_check(fake: FakeRetailCrm) -> None:
    crm = RetailCrmConnector({"url": fake.url, "api_key": "wrong-key"}, register_on_bind=False)
    with capture_logs() as lines, pytest.raises(DeliveryError) as caught:
        crm.check()
    assert "refused the API key (HTTP 403)" in str(caught.value)
    assert all("wrong-key" not in line for line in lines) and "wrong-key" not in str(caught.value)


def test_the_caller_card_has_the_customer_the_manager_and_the_last_orders(fake: FakeRetailCrm) -> None:
    card = connector(fake, last_orders=2).lookup("+7 916 123-45-67")
    assert card is not None and card.name == "Петров Иван"
    assert card.responsible is not None and card.responsible.extension == "102"
    assert [o["number"] for o in card.details["orders"]] == ["104A", "103A"]
    assert dict(card.links)["retailCRM customer"].endswith("/customers/101")
    assert connector(fake).lookup("79035550000") is None


def test_registration_is_sent_once_per_content_and_again_when_the_map_changes(fake: FakeRetailCrm) -> None:
    crm = connector(fake)
    assert crm.register() is True and crm.register() is False
    assert crm.context is not None
    client_id = crm.context.state.get(CLIENT_ID_KEY)
    assert client_id is not None and fake.modules[0]["clientId"] == client_id[0]
    imported = crm.import_employees(
        [{"telephony": {"extension": "104"}, "general": {"email": "duty@example.com"}}]
    )
    assert imported.mapped == {"104": "12"}
    assert len(fake.modules) == 2
    codes = fake.modules[1]["integrations"]["telephony"]["additionalCodes"]
    assert {"userId": "12", "code": "104"} in codes


def test_click_to_call_checks_the_client_id_and_dials_from_the_users_extension(fake: FakeRetailCrm) -> None:
    dialled: list[tuple[str, str]] = []
    crm = RetailCrmConnector({"url": fake.url, "api_key": KEY, "users": USERS}, register_on_bind=False)
    crm.bind(
        context(MemoryState(), public_url=PUBLIC, originate=lambda e, n: dialled.append((e, n)) or "cmd-1")
    )
    client_id = crm.module()["clientId"]
    app = Flask("t")
    app.register_blueprint(crm.blueprint(), url_prefix="/connectors/retailcrm")
    web = app.test_client()
    assert (
        web.get("/connectors/retailcrm/make-call?clientId=nope&phone=79161234567&userId=8").status_code == 403
    )
    answer = web.post(
        "/connectors/retailcrm/make-call",
        data={"clientId": client_id, "phone": "8 916 123 45 67", "userId": "8", "code": "999"},
    )
    assert answer.status_code == 200 and json.loads(answer.data)["commandId"] == "cmd-1"
    assert dialled == [("102", "+79161234567")]  # the user's mapped extension wins over a stray code
    bad = web.get(f"/connectors/retailcrm/make-call?clientId={client_id}&phone=abc&userId=8")
    assert bad.status_code == 400 and dialled == [("102", "+79161234567")]


def test_no_request_above_the_limit(fake: FakeRetailCrm) -> None:
    crm = connector(fake)
    refs = MemoryRefs()
    for i in range(6):
        for event in missed_call(f"L{i}", f"790355500{i:02d}"):
            crm.handle(event, refs)
    assert fake.violations == 0 and fake.max_in_window() <= 10


def test_a_registration_that_failed_on_start_is_retried_by_the_deliveries(fake: FakeRetailCrm) -> None:
    crm = RetailCrmConnector({"url": fake.url, "api_key": KEY, "users": USERS})
    fake.fail_next(503, times=1)  # retailCRM is down when callbridge starts
    crm.bind(context(MemoryState(), public_url=PUBLIC))
    assert fake.wait_for(lambda: len(fake.requests) == 1)
    assert fake.wait_for(lambda: not crm._register_lock.locked())
    event = missed_call("RR1", "79161234567")[0]
    crm.handle(event, MemoryRefs())  # within the minute: not tried again
    assert fake.modules == []
    crm._register_tried -= 61  # a minute later
    crm.handle(event, MemoryRefs())
    assert len(fake.modules) == 1
    crm._register_tried -= 61
    crm.handle(event, MemoryRefs())  # registered: never again
    assert len(fake.modules) == 1
