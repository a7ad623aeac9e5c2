"""The YClients client, the request bodies and the visits logic, with the HTTP layer faked by `responses`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import requests
import responses

from bridge.connector_api import CallEvent, PermanentDeliveryError, RetryableDeliveryError
from connectors.yclients import telephony, visits
from connectors.yclients.client import (
    ACCEPT,
    YClientsAuthError,
    YClientsClient,
    YClientsPermanentError,
    YClientsRateLimited,
    YClientsRetryableError,
)
from connectors.yclients.config import YClientsConfig

BASE = "https://api.yclients.com"
VOIP = f"{BASE}/api/v1/voip/integration"
PARTNER = "partner-0123456789abcdef0123456789abcdef"
USER = "user-fedcba9876543210fedcba9876543210"
ACCEPTED = {"success": True, "data": None, "meta": {"message": "Accepted"}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def client(clock: FakeClock | None = None, user: str | None = USER, rate: float = 3.0) -> YClientsClient:
    clock = clock or FakeClock()
    return YClientsClient(BASE, PARTNER, user, rate=rate, clock=clock, sleep=clock.sleep)


@responses.activate
def test_a_telephony_post_sends_the_partner_token_and_the_v2_accept_and_takes_202() -> None:
    responses.post(VOIP, status=202, json=ACCEPTED)
    assert client().post("/api/v1/voip/integration", {"command": "setup"}) is None
    sent = responses.calls[0].request
    assert sent.headers["Accept"] == ACCEPT
    assert sent.headers["Authorization"] == f"Bearer {PARTNER}"
    assert json.loads(sent.body) == {"command": "setup"}


@responses.activate
def test_user_requests_carry_both_tokens_and_return_data() -> None:
    url = f"{BASE}/api/v1/records/12345"
    responses.get(url, json={"success": True, "data": [{"id": 1}], "meta": {"count": 1}})
    assert client().get("/api/v1/records/12345", {"client_id": 5}, user=True) == [{"id": 1}]
    assert responses.calls[0].request.headers["Authorization"] == f"Bearer {PARTNER}, User {USER}"


def test_a_user_request_without_a_user_token_is_refused_before_sending() -> None:
    with pytest.raises(YClientsPermanentError, match="needs a user token"):
        client(user=None).get("/api/v1/records/1", user=True)


@responses.activate
def test_errors_carry_yclients_words_and_are_classified() -> None:
    responses.post(
        VOIP,
        status=422,
        json={
            "success": False,
            "data": None,
            "meta": {"message": "Validation error", "errors": [{"phone": "bad"}]},
        },
    )
    with pytest.raises(YClientsPermanentError) as caught:
        client().post("/api/v1/voip/integration", {})
    assert "HTTP 422 (Validation error; phone: bad)" in str(caught.value)
    assert caught.value.message == "Validation error" and caught.value.errors == [{"phone": "bad"}]

    responses.replace(
        responses.POST, VOIP, status=403, json={"success": False, "meta": {"message": "Invalid crm_token"}}
    )
    with pytest.raises(PermanentDeliveryError, match="Invalid crm_token"):
        client().post("/api/v1/voip/integration", {})

    responses.replace(responses.POST, VOIP, status=401, json={"success": False, "meta": {"message": "Auth"}})
    with pytest.raises(YClientsAuthError) as auth:
        client().post("/api/v1/voip/integration", {})
    assert auth.value.retry_after == 60

    responses.replace(responses.POST, VOIP, status=404, json={"errors": {"message": "Not found"}, "meta": []})
    with pytest.raises(YClientsPermanentError, match=r"HTTP 404 \(Not found\)"):
        client().post("/api/v1/voip/integration", {})

    responses.replace(responses.POST, VOIP, status=503, body="")
    with pytest.raises(YClientsRetryableError):
        client().post("/api/v1/voip/integration", {})

    responses.replace(responses.POST, VOIP, status=200, json={"success": False, "meta": {"message": "No"}})
    with pytest.raises(YClientsPermanentError, match="success=false"):
        client().post("/api/v1/voip/integration", {})

    responses.replace(responses.POST, VOIP, status=302, headers={"Location": "https://elsewhere.example"})
    with pytest.raises(YClientsPermanentError, match="redirect"):
        client().post("/api/v1/voip/integration", {})

    responses.replace(responses.POST, VOIP, body=requests.ConnectionError("Connection refused"))
    with pytest.raises(RetryableDeliveryError, match="connection refused"):
        client().post("/api/v1/voip/integration", {})


@responses.activate
def test_a_429_pauses_every_request_of_the_client_for_retry_after() -> None:
    clock = FakeClock()
    api = client(clock)
    responses.post(VOIP, status=429, headers={"Retry-After": "7"}, json={"success": False, "meta": {}})
    with pytest.raises(YClientsRateLimited) as caught:
        api.post("/api/v1/voip/integration", {})
    assert caught.value.retry_after == 7
    responses.replace(responses.POST, VOIP, status=202, json=ACCEPTED)
    start = clock.now
    api.post("/api/v1/voip/integration", {})
    assert clock.now - start >= 7  # the bucket was emptied for the pause

    responses.replace(responses.POST, VOIP, status=429, json={"success": False, "meta": {}})
    with pytest.raises(YClientsRateLimited) as default:
        api.post("/api/v1/voip/integration", {})
    assert default.value.retry_after == 2.0


@responses.activate
def test_requests_are_spaced_at_the_configured_rate() -> None:
    clock = FakeClock()
    api = client(clock, rate=3.0)
    responses.post(VOIP, status=202, json=ACCEPTED)
    start = clock.now
    for _ in range(7):
        api.post("/api/v1/voip/integration", {})
    assert clock.now - start == pytest.approx(2.0, abs=0.01)  # the first at once, then 3 a second


def test_a_lookup_gives_up_when_no_slot_frees_in_time() -> None:
    clock = FakeClock()
    api = client(clock, rate=0.1)
    api.bucket.acquire()
    with pytest.raises(YClientsRateLimited, match="not sent"):
        api.get("/api/v1/records/1", user=True, max_wait=1.0)


def test_secrets_stay_out_of_repr_and_settings_text() -> None:
    config = YClientsConfig(
        partner_token=PARTNER, crm_token="crm-secret-token", company_id=1, user_token=USER
    )
    shown = repr(client()) + repr(config) + str(config)
    assert PARTNER not in shown and USER not in shown and "crm-secret-token" not in shown


def test_settings_validation_names_the_problem() -> None:
    base = {"partner_token": "p", "crm_token": "c", "company_id": 1}
    assert YClientsConfig(**base, staff='{"201": 12}').staff == {"201": "12"}
    for bad in (
        {"api_url": "http://api.yclients.com"},
        {"api_url": "https://api.yclients.com/api/v1"},
        {"staff": {"201": "anna"}},
        {"requests_per_second": 4},
        {"company_id": 0},
        {"crm_token": "  "},
    ):
        with pytest.raises(ValueError):
            YClientsConfig(**{**base, **bad})
    assert YClientsConfig(**base, api_url="http://127.0.0.1:8080").api_url == "http://127.0.0.1:8080"


# ------------------------------------------------------------------------------------------ bodies


def ended(**fields: object) -> CallEvent:
    values: dict = {
        "type": "call.ended",
        "entry_id": "E1",
        "key": "call.ended",
        "occurred_at": 1_765_000_100.0,
        "direction": "incoming",
        "customer_number": "79161234567",
        "line_number": "74951234567",
        "extension": "201",
        "started_at": 1_765_000_000.0,
        "answered_at": 1_765_000_010.0,
        "talk_seconds": 75,
        "recording_ids": ("R1",),
        "extra": {"responsible": "201", "missed": False},
    }
    values.update(fields)
    return CallEvent(**values)


def test_a_history_row_has_every_field_yclients_documents() -> None:
    event = ended()
    link = telephony.recording_link(event, lambda rid: f"https://calls.example.com/recordings/{rid}?t=1")
    body = telephony.history_body(event, "crm", phone="79161234567", user="201", link=link)
    assert body == {
        "command": "history",
        "type": "incoming",
        "crm_token": "crm",
        "phone": "79161234567",
        "call_id": "E1",
        "status": "success",
        "duration": 75,
        "date": datetime.fromtimestamp(1_765_000_000, UTC).isoformat(timespec="seconds"),
        "diversion": "74951234567",
        "user": "201",
        "link": "https://calls.example.com/recordings/R1?t=1",
    }


def test_a_missed_call_is_missed_with_no_duration_no_link_and_names_the_responsible() -> None:
    event = ended(answered_at=None, extension=None, extra={"responsible": "202", "missed": True})
    assert telephony.recording_link(event, lambda rid: "https://x/" + rid) is None
    assert telephony.who_took_it(event) == "202"
    body = telephony.history_body(event, "crm", phone="79161234567", user="202", link=None)
    assert (body["status"], body["duration"], "link" in body) == ("missed", 0, False)


def test_a_transferred_call_names_the_last_one_it_went_to() -> None:
    assert telephony.who_took_it(ended(extra={"responsible": "205", "missed": False})) == "205"
    assert telephony.who_took_it(ended(extra={})) == "201"


def test_an_internal_call_names_the_other_extension_as_the_phone() -> None:
    event = ended(direction="internal", customer_number=None, extensions=("201", "202"))
    assert telephony.other_party(event, "201") == "202"
    assert telephony.other_party(ended(), "201") is None


def test_a_popup_names_the_line_and_the_ringing_extension() -> None:
    body = telephony.event_body("crm", phone="79161234567", diversion="74951234567", user="201")
    assert body == {
        "command": "event",
        "type": "incoming",
        "crm_token": "crm",
        "phone": "79161234567",
        "diversion": "74951234567",
        "user": "201",
    }
    assert "diversion" not in telephony.event_body("crm", phone="7", diversion=None, user=None)


# ------------------------------------------------------------------------------------------ visits


def record(when: str, staff: int, attendance: int = 1, company: int = 12345, **extra: object) -> dict:
    return {
        "datetime": when,
        "staff_id": staff,
        "staff": {"id": staff, "name": f"Staff {staff}"},
        "services": [{"title": f"Service at {when[:10]}"}],
        "company_id": company,
        "attendance": attendance,
        **extra,
    }


def test_habits_find_the_last_and_next_visits_and_the_usual_staff_and_branch() -> None:
    now = datetime(2026, 12, 8, 12, 0, tzinfo=UTC)
    found = visits.habits(
        [
            record("2026-10-01T10:00:00+03:00", 12),
            record("2026-11-01T10:00:00+03:00", 12),
            record("2026-11-20T10:00:00+03:00", 14),
            record("2026-12-01T10:00:00+03:00", 14, attendance=-1),  # did not come: not a visit
            record("2026-12-02T10:00:00+03:00", 15, deleted=True),
            record("2026-12-20T15:30:00+03:00", 14, attendance=0),
            record("2026-12-10T09:00:00+03:00", 12, attendance=2),
        ],
        now,
    )
    assert found.last is not None and found.last.at.isoformat() == "2026-11-20T10:00:00+03:00"
    assert found.last.summary() == "2026-11-20 10:00, Service at 2026-11-20, Staff 14"
    assert found.next is not None and found.next.staff_id == "12"
    assert (found.usual_staff_id, found.usual_staff_name, found.usual_branch_id) == (
        "12",
        "Staff 12",
        "12345",
    )


def test_a_tie_goes_to_the_staff_seen_last_and_no_records_give_nothing() -> None:
    now = datetime(2026, 12, 8, tzinfo=UTC)
    tie = visits.habits([record("2026-10-01 10:00:00", 12), record("2026-11-01 10:00:00", 14)], now)
    assert tie.usual_staff_id == "14"
    empty = visits.habits(None, now)
    assert empty == visits.Habits(None, None, None, None, None)


def test_the_client_is_the_one_whose_number_is_the_callers() -> None:
    found = [{"id": 1, "phone": "+7 916 123-45-60"}, {"id": 2, "phone": "8 (916) 123-45-67"}]
    assert visits.best_client(found, "+79161234567", "RU") == found[1]
    assert visits.best_client({"unexpected": True}, "+79161234567", "RU") is None
