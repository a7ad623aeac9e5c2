"""The Dataverse Web API client with `responses`: headers, Dataverse's words in errors, the 429 pause, a 401
that drops the token and retries once; the settings; what is sent for a call (pure functions)."""

from __future__ import annotations

import pytest
import responses
from pydantic import ValidationError

from bridge.connector_api import CallEvent, PermanentDeliveryError
from connectors.dynamics import (
    DataverseAuthError,
    DataverseClient,
    DataversePermanentError,
    DataverseRateLimited,
    DataverseRetryableError,
    DynamicsConfig,
)
from connectors.dynamics.records import best_match, phone_filter, phonecall_body, record_id

URL = "https://contoso.crm4.dynamics.com"
API = f"{URL}/api/data/v9.2"


class Tokens:
    """Stands in for msal: hands out t1, then t2 after t1 was refused."""

    def __init__(self) -> None:
        self.current, self.dropped = "t1", []

    def token(self) -> str:
        return self.current

    def refused(self, token: str) -> None:
        self.dropped.append(token)
        self.current = f"t{len(self.dropped) + 1}"


class Clock:
    def __init__(self) -> None:
        self.now, self.slept = 0.0, 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


def client(tokens: Tokens | None = None, clock: Clock | None = None) -> DataverseClient:
    clock = clock or Clock()
    return DataverseClient(URL, tokens or Tokens(), rate=10, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]


@responses.activate
def test_requests_carry_the_token_and_odata_headers() -> None:
    responses.get(f"{API}/WhoAmI", json={"UserId": "u"})
    assert client().get("/WhoAmI") == {"UserId": "u"}
    sent = responses.calls[0].request.headers
    assert sent["Authorization"] == "Bearer t1"
    assert (sent["OData-Version"], sent["OData-MaxVersion"], sent["Accept"]) == (
        "4.0",
        "4.0",
        "application/json",
    )


@responses.activate
def test_a_refused_token_is_dropped_and_the_request_sent_once_more() -> None:
    tokens = Tokens()
    responses.post(f"{API}/tasks", status=401)
    responses.post(f"{API}/tasks", status=204)
    client(tokens).request("POST", "/tasks", body={"subject": "x"})
    assert tokens.dropped == ["t1"]
    assert [c.request.headers["Authorization"] for c in responses.calls] == ["Bearer t1", "Bearer t2"]


@responses.activate
def test_a_second_401_is_an_auth_error_retried_slowly() -> None:
    responses.get(f"{API}/WhoAmI", status=401)
    with pytest.raises(DataverseAuthError, match="application user") as caught:
        client().get("/WhoAmI")
    assert caught.value.retry_after == 60 and len(responses.calls) == 2


@responses.activate
def test_429_pauses_every_request_for_retry_after() -> None:
    clock = Clock()
    dv = client(clock=clock)
    body = {"error": {"code": "0x80072322", "message": "Number of requests exceeded the limit"}}
    responses.get(f"{API}/contacts", status=429, json=body, headers={"Retry-After": "7"})
    responses.get(f"{API}/contacts", json={"value": []})
    with pytest.raises(DataverseRateLimited, match=r"HTTP 429 0x80072322: Number of requests") as caught:
        dv.get("/contacts")
    assert caught.value.retry_after == 7
    dv.get("/contacts")
    assert clock.slept >= 7


@responses.activate
def test_errors_carry_dataverse_code_and_message() -> None:
    body = {"error": {"code": "0x80060888", "message": "The property 'foo' does not exist"}}
    responses.post(f"{API}/phonecalls", status=400, json=body)
    responses.post(f"{API}/leads", status=503)
    dv = client()
    with pytest.raises(
        DataversePermanentError, match=r"POST /phonecalls: HTTP 400 0x80060888: The property"
    ) as c:
        dv.request("POST", "/phonecalls", body={})
    assert isinstance(c.value, PermanentDeliveryError) and c.value.code == "0x80060888"
    with pytest.raises(DataverseRetryableError, match="HTTP 503"):
        dv.request("POST", "/leads", body={})


def test_settings_are_checked_and_name_the_key() -> None:
    base = {
        "url": "contoso.crm4.dynamics.com/",
        "tenant_id": "contoso.onmicrosoft.com",
        "client_id": "66666666-7777-8888-9999-000000000000",
        "client_secret": "s",
    }
    config = DynamicsConfig.model_validate(base)
    assert config.url == URL and config.scope == f"{URL}/.default" and config.microsoft_authority
    assert "s" not in repr(config.client_secret)
    for bad in (
        {"url": "http://contoso.crm4.dynamics.com"},
        {"client_id": "not-a-guid"},
        {"users": {"101": "7"}},
        {"unknown_caller": "account"},
        {"requests_per_second": 50},
    ):
        with pytest.raises(ValidationError) as caught:
            DynamicsConfig.model_validate({**base, **bad})
        assert next(iter(bad)) in str(caught.value)
    other = DynamicsConfig.model_validate({**base, "authority_host": "https://login.microsoftonline.us"})
    assert not other.microsoft_authority


def test_phones_are_found_by_their_tail_and_compared_in_full() -> None:
    text = phone_filter("+79161234567", "RU")
    assert (
        text is not None and "contains(telephone1,'4567')" in text and "contains(mobilephone,'45-67')" in text
    )
    rows = [
        {"contactid": "a", "telephone1": "+7 (925) 123-45-67"},
        {"contactid": "b", "mobilephone": "8 916 123 45 67"},
    ]
    assert best_match(rows, "+79161234567", "RU") == rows[1]
    assert phone_filter("12", "RU") is None


def test_a_missed_call_without_a_known_caller_has_only_the_employee_as_party() -> None:
    event = CallEvent(
        type="call.ended",
        entry_id="M1",
        key="call.ended",
        occurred_at=100.0,
        direction="incoming",
        started_at=40.0,
        ended_at=100.0,
        talk_seconds=0,
    )
    body = phonecall_body(event, number="+79161234567", party=None, user="u-1", link="https://x/rec")
    assert body["activityid"] == record_id("M1", "phonecall")
    assert body["subject"] == "Missed call from +79161234567" and body["actualdurationminutes"] == 0
    assert body["description"].splitlines() == [
        "Talk time: 0 min 0 s (0 s).",
        "Recording: https://x/rec",
        "Mango Office call M1",
    ]
    assert body["phonecall_activity_parties"] == [
        {"partyid_systemuser@odata.bind": "/systemusers(u-1)", "participationtypemask": 2}
    ]
