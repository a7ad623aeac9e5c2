"""The YClients connector against the contract fake (tests/fakes/yclients.py): the shared contract's harness
(run in tests/test_connector_contract.py), then YClients' own cases: setup once, popups for incoming calls
only, one history row per call whatever fails, YClients' words in errors, and the caller card with visits and
the usual staff."""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import pytest
import requests

from bridge.connector_api import CallEvent, PermanentDeliveryError, RetryableDeliveryError
from bridge.connector_api.testing import (
    ContractHarness,
    MemoryRefs,
    MemoryState,
    capture_logs,
    context,
)
from bridge.pbx.port import PbxUser  # what the core's PbxUsers fetcher gives
from connectors.yclients import YClientsConnector
from connectors.yclients.client import YClientsRateLimited
from tests.fakes.yclients import VOIP, FakeYClients

PARTNER = "partner-token-0123456789abcdef0123456789"
CRM = "crm-token-fedcba9876543210fedcba98"
USER = "user-token-00112233445566778899aabbcc"
COMPANY = 12345
PUBLIC = "https://calls.example.com"
NOW = datetime(2026, 12, 8, 9, 0, tzinfo=UTC).timestamp()
STAFF = {"201": "12", "202": "14"}


def settings(fake: FakeYClients, **extra: Any) -> dict[str, Any]:
    base = {
        "api_url": fake.url,
        "partner_token": PARTNER,
        "crm_token": CRM,
        "company_id": COMPANY,
        "user_token": USER,
        "staff": STAFF,
        "requests_per_second": 3.3,
    }
    return {**base, **extra}


def connector(fake: FakeYClients, state: MemoryState | None = None, **extra: Any) -> YClientsConnector:
    built = YClientsConnector(settings(fake, **extra), clock=lambda: NOW)
    built.bind(context(state, public_url=PUBLIC, recording_url=lambda rid: f"{PUBLIC}/recordings/{rid}?t=x"))
    return built


def event(kind: str, entry: str, **fields: Any) -> CallEvent:
    values: dict[str, Any] = {
        "type": kind,
        "entry_id": entry,
        "key": kind if kind != "call.ringing" else f"{kind}:leg1",
        "occurred_at": NOW - 60,
        "received_at": NOW - 1,
        "direction": "incoming",
        "customer_number": "79161234567",
        "line_number": "74951234567",
        "extension": "201",
        "started_at": NOW - 60,
    }
    values.update(fields)
    return CallEvent(**values)


def ended(entry: str, *, answered: bool = True, **fields: Any) -> CallEvent:
    extra = {"responsible": fields.pop("responsible", "201"), "missed": not answered}
    base: dict[str, Any] = {
        "answered_at": NOW - 50 if answered else None,
        "talk_seconds": 42 if answered else 0,
    }
    if answered:
        base["recording_ids"] = ("REC1",)
    else:
        base["extension"] = None
    return event("call.ended", entry, extra=extra, **{**base, **fields})


@pytest.fixture
def fake() -> Iterator[FakeYClients]:
    with FakeYClients(partner_token=PARTNER, crm_token=CRM, user_token=USER, company_id=COMPANY) as server:
        yield server


# ---------------------------------------------------------------------------------------------- contract

Kind = Literal["retryable", "permanent"]


class YClientsHarness(ContractHarness):
    """A popup and a history row per call, each call from a caller of its own (popups carry no call id)."""

    def __init__(self, fake: FakeYClients) -> None:
        self.fake, self.refs = fake, MemoryRefs()
        self.connector = connector(fake)
        self.secrets = (PARTNER, CRM, USER)

    @staticmethod
    def phone(entry_id: str) -> str:
        return f"7916{zlib.crc32(entry_id.encode()) % 10**7:07d}"

    def call(self, entry_id: str) -> list[CallEvent]:
        phone = self.phone(entry_id)
        return [
            event("call.ringing", entry_id, customer_number=phone),
            ended(entry_id, customer_number=phone),
        ]

    def effects(self, entry_id: str) -> list[str]:
        phone = self.phone(entry_id)
        return [
            "popup" if s.body["command"] == "event" else "history"
            for s in self.fake.recorded(VOIP)
            if s.body.get("phone") == phone and s.body["command"] in ("event", "history")
        ]

    def expected(self, entry_id: str) -> list[str]:
        return ["popup", "history"]

    def fail_next(self, kind: Kind) -> None:
        self.fake.script(503 if kind == "retryable" else 400)


# The shared contract runs `YClientsHarness` in tests/test_connector_contract.py.


# ---------------------------------------------------------------------------------------------- setup


def test_setup_enable_is_sent_once_for_every_process_sharing_the_state(fake: FakeYClients) -> None:
    state = MemoryState()
    first, second = (
        connector(fake, state, requests_per_second=1),
        connector(fake, state, requests_per_second=1),
    )
    refs = MemoryRefs()
    first.handle(event("call.ringing", "S1"), refs)
    second.handle(ended("S1"), refs)
    first.handle(event("call.ringing", "S2"), refs)
    assert fake.setups == ["enable"]
    assert [s.body["command"] for s in fake.recorded(VOIP)] == ["setup", "event", "history", "event"]

    # A new crm_token is enabled again; disable switches YClients off and it ignores what follows.
    fake.crm_token = "crm-token-rotated-0123456789abcdef"
    rotated = connector(fake, state, crm_token=fake.crm_token, requests_per_second=1)
    rotated.handle(event("call.ringing", "S3"), refs)
    assert fake.setups == ["enable", "enable"]
    rotated.disable()
    assert fake.setups == ["enable", "enable", "disable"] and not fake.enabled
    assert '"disabled"' in state.data["telephony"][0] and fake.crm_token not in state.data["telephony"][0]


def test_a_wrong_crm_token_is_a_permanent_error_in_yclients_words(fake: FakeYClients) -> None:
    wrong = connector(fake, crm_token="crm-token-not-this-network-0000")
    with pytest.raises(PermanentDeliveryError, match=r"HTTP 403 \(Invalid crm_token\)"):
        wrong.handle(event("call.ringing", "W1"), MemoryRefs())
    with pytest.raises(PermanentDeliveryError, match="403"):
        wrong.check()


# ---------------------------------------------------------------------------------------------- popups


def test_popups_are_for_incoming_calls_only_once_per_ringing_extension(fake: FakeYClients) -> None:
    yc, refs = connector(fake), MemoryRefs()
    assert not yc.wants(event("call.ringing", "P1", direction="outgoing"))
    assert not yc.wants(event("call.ringing", "P1", direction="internal"))
    assert not yc.wants(event("call.missed", "P1"))
    assert not yc.wants(event("call.recording_ready", "P1"))
    for extension in ("201", "202", "201"):
        yc.handle(event("call.ringing", "P1", extension=extension), refs)
    assert fake.popups == [
        {
            "command": "event",
            "type": "incoming",
            "crm_token": CRM,
            "phone": "79161234567",
            "diversion": "74951234567",
            "user": ext,
        }
        for ext in ("201", "202")
    ]


def test_a_late_popup_is_dropped(fake: FakeYClients) -> None:
    connector(fake).handle(event("call.ringing", "P2", received_at=NOW - 600), MemoryRefs())
    assert fake.popups == [] and fake.recorded() == []


def test_popups_and_history_can_be_switched_off(fake: FakeYClients) -> None:
    quiet = connector(fake, popup=False, log_calls=False)
    assert quiet.event_types == frozenset()
    assert not quiet.wants(event("call.ringing", "Q1")) and not quiet.wants(ended("Q1"))


# ---------------------------------------------------------------------------------------------- history


def test_one_row_per_call_with_status_duration_user_and_the_recording_link(fake: FakeYClients) -> None:
    yc, refs = connector(fake), MemoryRefs()
    yc.handle(ended("H1"), refs)
    yc.handle(ended("H1"), refs)  # redelivered: nothing more
    yc.handle(ended("H2", answered=False, responsible="202"), refs)
    yc.handle(ended("H3", direction="outgoing", extension="202", responsible="202"), refs)
    internal = ended("H4", direction="internal", customer_number=None, extensions=("201", "202"))
    yc.handle(internal, refs)
    rows = {row["call_id"]: row for row in fake.history}
    assert len(fake.history) == 4
    assert rows["H1"] == {
        "command": "history",
        "type": "incoming",
        "crm_token": CRM,
        "phone": "79161234567",
        "call_id": "H1",
        "status": "success",
        "duration": 42,
        "date": "2026-12-08T08:59:00+00:00",
        "diversion": "74951234567",
        "user": "201",
        "link": f"{PUBLIC}/recordings/REC1?t=x",
    }
    assert (rows["H2"]["status"], rows["H2"]["duration"], rows["H2"]["user"]) == ("missed", 0, "202")
    assert "link" not in rows["H2"]
    assert (rows["H3"]["type"], rows["H3"]["user"]) == ("outgoing", "202")
    assert (rows["H4"]["type"], rows["H4"]["phone"], rows["H4"]["user"]) == ("internal", "202", "201")


def test_a_call_without_a_public_url_is_logged_without_a_link(fake: FakeYClients) -> None:
    yc = YClientsConnector(settings(fake), clock=lambda: NOW)
    yc.bind(context())
    yc.handle(ended("L1"), MemoryRefs())
    assert [("link" in row) for row in fake.history] == [False]


def test_a_429_is_retryable_and_the_retry_makes_one_row(fake: FakeYClients) -> None:
    yc, refs = connector(fake), MemoryRefs()
    yc.ensure_enabled()
    fake.throttle(0.5)
    with pytest.raises(YClientsRateLimited) as caught:
        yc.handle(ended("R1"), refs)
    assert isinstance(caught.value, RetryableDeliveryError) and caught.value.retry_after == 2.0
    assert refs.get("R1", "history") == "refused"
    yc.handle(ended("R1"), refs)
    assert len(fake.rows("R1")) == 1 and fake.violations == 0


def test_a_5xx_is_checked_against_the_call_list_before_the_row_is_sent_again(fake: FakeYClients) -> None:
    yc, refs = connector(fake), MemoryRefs()
    yc.ensure_enabled()
    fake.script(502)
    with pytest.raises(RetryableDeliveryError, match="502"):
        yc.handle(ended("F1"), refs)
    assert refs.get("F1", "history") == "sending"
    yc.handle(ended("F1"), refs)
    assert len(fake.rows("F1")) == 1 and len(fake.recorded("/api/v1/voip/integration/calls")) == 1


def test_a_lost_answer_is_checked_against_yclients_call_list_before_sending_again(fake: FakeYClients) -> None:
    yc, refs = connector(fake, timeout=0.3), MemoryRefs()
    yc.ensure_enabled()
    fake.answer_late(1.0)  # YClients takes the row; its answer comes after the client gave up
    with pytest.raises(RetryableDeliveryError, match="timeout"):
        yc.handle(ended("T1"), refs)
    assert refs.get("T1", "history") == "sending" and len(fake.rows("T1")) == 1
    yc.handle(ended("T1"), refs)
    assert len(fake.rows("T1")) == 1 and refs.get("T1", "history") == "sent"
    calls = fake.recorded("/api/v1/voip/integration/calls")
    assert len(calls) == 1 and calls[0].query["phone"] == "79161234567"
    assert calls[0].query["salon_id"] == str(COMPANY)


def test_events_are_ignored_after_disable_as_yclients_documents(fake: FakeYClients) -> None:
    yc, refs = connector(fake), MemoryRefs()
    yc.handle(event("call.ringing", "D1"), refs)
    yc.disable()
    yc.handle(event("call.ringing", "D2"), refs)  # this instance re-enables: the setup state says disabled
    assert fake.setups == ["enable", "disable", "enable"]


# ---------------------------------------------------------------------------------------------- caller card


def seed_client(fake: FakeYClients) -> int:
    anna = fake.add_client("Анна Соколова", "+7 916 123-45-67")
    fake.add_client("Другой клиент", "+7 916 123-45-00")
    fake.add_record(anna, "2026-10-02T11:00:00+03:00", "Стрижка", (12, "Мария"))
    fake.add_record(anna, "2026-11-03T11:00:00+03:00", "Окрашивание", (12, "Мария"))
    fake.add_record(anna, "2026-11-25T18:30:00+03:00", "Маникюр", (14, "Ольга"))
    fake.add_record(anna, "2026-12-01T10:00:00+03:00", "Стрижка", (14, "Ольга"), attendance=-1)
    fake.add_record(anna, "2026-12-15T12:00:00+03:00", "Стрижка", (12, "Мария"), attendance=2)
    return anna


def test_the_caller_card_has_the_client_their_visits_and_the_usual_staff_as_an_extension(
    fake: FakeYClients,
) -> None:
    anna = seed_client(fake)
    yc = connector(fake)
    card = yc.lookup("8 (916) 123-45-67")
    assert card is not None and card.name == "Анна Соколова" and card.source == "yclients"
    assert card.responsible is not None
    assert (card.responsible.extension, card.responsible.name, card.responsible.crm_user_id) == (
        "201",
        "Мария",
        "12",
    )
    assert card.details == {
        "client_id": anna,
        "last_visit": "2026-11-25 18:30, Маникюр, Ольга",
        "last_visit_at": "2026-11-25T18:30+03:00",
        "last_visit_service": "Маникюр",
        "last_visit_staff": "Ольга",
        "last_visit_staff_id": "14",
        "last_visit_branch_id": str(COMPANY),
        "next_visit": "2026-12-15 12:00, Стрижка, Мария",
        "next_visit_at": "2026-12-15T12:00+03:00",
        "next_visit_service": "Стрижка",
        "next_visit_staff": "Мария",
        "next_visit_staff_id": "12",
        "next_visit_branch_id": str(COMPANY),
        "usual_staff_id": "12",
        "usual_staff": "Мария",
        "usual_extension": "201",
        "usual_branch_id": str(COMPANY),
    }
    search = fake.recorded("/api/v1/company/12345/clients/search")
    assert [s.body for s in search] == [
        {
            "page": 1,
            "page_size": 50,
            "fields": ["id", "name", "phone"],
            "filters": [{"type": "quick_search", "state": {"value": "79161234567"}}],
        }
    ]
    records = fake.recorded("/api/v1/records/12345")
    assert records[0].query == {"client_id": str(anna), "start_date": "2025-12-08", "end_date": "2027-12-08"}
    # Cached: the routing's question costs nothing more.
    responsible = yc.responsible_for("+79161234567")
    assert responsible is not None and responsible.extension == "201"
    assert len(fake.recorded()) == 2


def test_unknown_callers_and_a_connector_without_user_token_give_no_card(fake: FakeYClients) -> None:
    seed_client(fake)
    assert connector(fake).lookup("+79035550101") is None
    before = len(fake.recorded(outcome=None))
    assert connector(fake, user_token=None).lookup("+79161234567") is None
    assert len(fake.recorded(outcome=None)) == before  # nothing asked


def test_check_explains_the_setup_in_plain_words(fake: FakeYClients) -> None:
    fake.staff = [{"id": 12, "name": "Мария"}, {"id": 14, "name": "Ольга", "fired": True}]
    fake.per_second = 50  # three connectors, three buckets: this test is not about the limit
    text = connector(fake).check()
    assert "telephony integration is on" in text and "caller cards are on" in text
    assert "2 extension(s) mapped" in text
    assert "point at staff the branch does not have (or who left): 202." in text
    no_user = connector(fake, user_token=None).check()
    assert "No user_token" in no_user
    fake.partner_token = "another-partner-token-000000000000"
    with capture_logs() as lines, pytest.raises(RetryableDeliveryError, match="refused a token"):
        connector(fake).check()
    assert not any(PARTNER in line for line in lines)


def test_concurrent_deliveries_send_setup_once(fake: FakeYClients) -> None:
    yc, refs = connector(fake), MemoryRefs()
    threads = [
        threading.Thread(target=yc.handle, args=(event("call.ringing", f"C{i}"), refs)) for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert fake.setups == ["enable"] and len(fake.popups) == 4
    yc.check()  # the check asks YClients again, whatever the state says
    assert fake.setups == ["enable", "enable"]


def test_a_lost_answer_without_a_way_to_check_is_sent_again_with_a_warning(fake: FakeYClients) -> None:
    yc, refs = connector(fake, timeout=0.3, user_token=None), MemoryRefs()
    yc.ensure_enabled()
    fake.answer_late(1.0)
    with pytest.raises(RetryableDeliveryError):
        yc.handle(ended("T2"), refs)
    with capture_logs() as lines:
        yc.handle(ended("T2"), refs)
    assert len(fake.rows("T2")) == 2  # at least once: YClients' own dedup by call_id is undocumented
    assert any("no user token to check" in line for line in lines)
    assert fake.recorded("/api/v1/voip/integration/calls", outcome=None) == []


# ---------------------------------------------------------------------------------------------- staff import


def test_staff_are_imported_by_name_and_the_settings_table_wins(fake: FakeYClients) -> None:
    fake.staff = [
        {"id": 12, "name": "Мария Иванова", "specialization": "стилист", "fired": False},
        {"id": 14, "name": "Ольга Петрова", "fired": False},
        {"id": 15, "name": "Анна Смирнова", "fired": False},
        {"id": 16, "name": "анна смирнова", "fired": False},  # two staff, one name: left out
        {"id": 17, "name": "Пётр Уволенный", "fired": True},
    ]
    people = [
        PbxUser(extension="201", name="Иванова Мария"),
        PbxUser(extension="203", name="ОЛЬГА ПЕТРОВА"),
        PbxUser(extension="204", name="Анна Смирнова"),
        PbxUser(extension="205", name="Петр Уволенный"),
        PbxUser(extension="206", name=None),
    ]
    state = MemoryState()
    yc = connector(fake, state, staff={"202": "14"})
    asked: list[bool] = []
    result = yc.import_employees(lambda: asked.append(True) or people)
    assert asked == [True]
    assert result.mapped == {"201": "12", "203": "14"}
    assert (result.unmatched, result.ambiguous, result.no_name) == (["205"], ["Анна Смирнова"], ["206"])
    assert "2 extension(s) matched to YClients staff by name" in result.report()
    assert fake.recorded("/api/v1/staff/12345")[0].query == {}
    # The settings' 202 -> 14 stays; imported 201 and 203 join it; the reverse lookup prefers the settings.
    assert yc.mapped_users() == {"201": "12", "203": "14", "202": "14"}
    assert yc.employees.extension_for("14") == "202"
    assert "3 extension(s) mapped to YClients staff (1 in the settings, 2 imported by name)" in yc.check()
    # Another process sharing the state sees the imported map.
    assert connector(fake, state).employees.extension_for("12") == "201"


def test_records_with_only_a_staff_id_are_named_from_the_staff_list_once(fake: FakeYClients) -> None:
    seed_client(fake)
    for record in fake.records:
        del record["staff"]  # records that name staff by id only
    fake.staff = [{"id": 12, "name": "Мария"}, {"id": 14, "name": "Ольга"}]
    yc = connector(fake, lookup_cache_seconds=0)
    for _ in range(2):
        card = yc.lookup("+79161234567")
        assert card is not None and card.details["last_visit"] == "2026-11-25 18:30, Маникюр, Ольга"
        assert card.responsible is not None and card.responsible.name == "Мария"
    assert len(fake.recorded("/api/v1/staff/12345")) == 1  # the names are kept for an hour

    fake.staff = []  # nobody to name them by: the card comes without the names, not without the visits
    card = connector(fake).lookup("+79161234567")
    assert card is not None and card.details["last_visit"] == "2026-11-25 18:30, Маникюр"
    assert card.details["last_visit_staff"] is None and card.details["usual_staff_id"] == "12"


# ---------------------------------------------------------------------------------------------- the fake


def test_the_fake_enforces_its_per_second_and_per_minute_limits_and_counts_violations(
    fake: FakeYClients,
) -> None:
    headers = {"Accept": "application/vnd.yclients.v2+json", "Authorization": f"Bearer {PARTNER}"}
    body = {"command": "setup", "type": "enable", "crm_token": CRM}
    with requests.Session() as session:
        answers = [session.post(fake.url + VOIP, json=body, headers=headers, timeout=5) for _ in range(6)]
        assert [a.status_code for a in answers[:5]] == [202] * 5
        assert answers[5].status_code == 429 and answers[5].json()["success"] is False
        assert fake.violations == 1

        # The minute's budget, scaled down so the test stays quick (200 in the real fake): 12 in all.
        fake.per_second, fake.per_minute = 1000, 12
        more = [session.post(fake.url + VOIP, json=body, headers=headers, timeout=5) for _ in range(7)]
    assert [a.status_code for a in more] == [202] * 6 + [429]
    assert fake.violations == 2 and fake.max_in(60.0) == 13
