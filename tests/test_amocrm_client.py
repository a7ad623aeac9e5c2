"""The amoCRM client and OAuth token rotation, with the HTTP layer faked by `responses`."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses

from bridge.connector_api import PermanentDeliveryError, RetryableDeliveryError
from bridge.connector_api.ratelimit import TokenBucket
from bridge.connector_api.testing import MemoryState
from connectors.amocrm.client import (
    AmoAuthError,
    AmoClient,
    AmoPermanentError,
    AmoRateLimited,
    AmoRetryableError,
    RequestWindow,
    StaticToken,
)
from connectors.amocrm.oauth import STATE_KEY, Grant, OAuthTokens, TokenRecord, fingerprint

BASE = "https://acme.amocrm.ru"
TOKEN = "eyJ0eXAiOiJKV1Qi.secret-long-lived-token-0123456789abcdef"
VALIDATION = {
    "title": "Bad Request",
    "type": "https://httpstatus.es/400",
    "status": 400,
    "detail": "Request validation failed",
    "validation-errors": [
        {
            "request_id": "0",
            "errors": [
                {"code": "NotSupportedChoice", "path": "custom_fields_values.0.field_id", "detail": "bad"}
            ],
        }
    ],
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def client(clock: FakeClock | None = None, auth: Any = None, rate: float = 7.0) -> AmoClient:
    clock = clock or FakeClock()
    return AmoClient(BASE, auth or StaticToken(TOKEN), rate=rate, clock=clock, sleep=clock.sleep)


# ---------------------------------------------------------------------------------------------- answers


@responses.activate
def test_get_sends_the_bearer_token_and_decodes_json():
    responses.get(f"{BASE}/api/v4/account", json={"id": 1, "name": "Acme"})
    assert client().get("/api/v4/account") == {"id": 1, "name": "Acme"}
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == f"Bearer {TOKEN}"
    assert sent.headers["Accept"] == "application/json"
    assert sent.headers["User-Agent"].startswith("callbridge-amocrm/")


@responses.activate
def test_204_no_content_means_an_empty_list():
    responses.get(f"{BASE}/api/v4/contacts", status=204)
    assert client().get("/api/v4/contacts", {"query": "79161234567"}) is None
    assert responses.calls[0].request.url.endswith("/api/v4/contacts?query=79161234567")


@responses.activate
def test_post_sends_json():
    responses.post(f"{BASE}/api/v4/tasks", json={"_embedded": {"tasks": [{"id": 5}]}})
    client().post("/api/v4/tasks", [{"text": "x", "complete_till": 1}])
    sent = responses.calls[0].request
    assert sent.headers["Content-Type"] == "application/json"
    assert json.loads(sent.body) == [{"text": "x", "complete_till": 1}]


@responses.activate
def test_problem_json_validation_errors_are_surfaced_with_their_details():
    responses.post(
        f"{BASE}/api/v4/calls", json=VALIDATION, status=400, content_type="application/problem+json"
    )
    with pytest.raises(AmoPermanentError) as info:
        client().post("/api/v4/calls", [{}])
    err = info.value
    assert isinstance(err, PermanentDeliveryError)
    assert err.status == 400 and err.title == "Bad Request" and err.detail == "Request validation failed"
    assert err.validation_errors == VALIDATION["validation-errors"]
    assert str(err) == (
        "amoCRM POST /api/v4/calls: HTTP 400 Bad Request: Request validation failed; "
        "item 0: custom_fields_values.0.field_id: NotSupportedChoice (bad)"
    )
    assert TOKEN not in str(err)


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retry_after"),
    [
        (429, {}, AmoRateLimited, 1.0),
        (429, {"Retry-After": "3"}, AmoRateLimited, 3.0),
        (500, {}, AmoRetryableError, None),
        (503, {"Retry-After": "7"}, AmoRetryableError, 7.0),
        (403, {}, AmoPermanentError, None),
        (404, {}, AmoPermanentError, None),
    ],
)
@responses.activate
def test_statuses_are_classified(status, headers, kind, retry_after):
    body = {"title": "T", "type": f"https://httpstatus.es/{status}", "status": status, "detail": "D"}
    responses.get(f"{BASE}/api/v4/account", json=body, status=status, headers=headers)
    with pytest.raises(kind) as info:
        client().get("/api/v4/account")
    assert info.value.status == status
    assert f"HTTP {status} T: D" in str(info.value)
    if retry_after is not None:
        assert isinstance(info.value, RetryableDeliveryError)
        assert info.value.retry_after == retry_after


@responses.activate
def test_429_empties_the_bucket_so_no_thread_sends_until_the_pause_is_over():
    clock = FakeClock()
    amo = client(clock)
    responses.get(f"{BASE}/api/v4/account", status=429, json={"title": "Too Many Requests", "status": 429})
    responses.get(f"{BASE}/api/v4/account", json={"id": 1})
    with pytest.raises(AmoRateLimited):
        amo.get("/api/v4/account")
    before = clock.now
    amo.get("/api/v4/account")
    assert clock.now - before >= 1.0  # waited out amoCRM's second


@responses.activate
def test_network_errors_are_retryable_and_name_no_secret():
    responses.get(f"{BASE}/api/v4/account", body=requests.ConnectionError("Connection refused"))
    with pytest.raises(AmoRetryableError) as info:
        client().get("/api/v4/account")
    assert "connection refused" in str(info.value)
    assert TOKEN not in str(info.value)


@responses.activate
def test_redirects_are_not_followed():
    responses.get(f"{BASE}/api/v4/account", status=301, headers={"Location": "https://elsewhere.example/"})
    with pytest.raises(AmoPermanentError, match="redirect: check account_url"):
        client().get("/api/v4/account")
    assert len(responses.calls) == 1


@responses.activate
def test_401_with_a_long_lived_token_waits_for_the_admin():
    responses.get(f"{BASE}/api/v4/account", status=401, json={"title": "Unauthorized", "status": 401})
    with pytest.raises(AmoAuthError) as info:
        client().get("/api/v4/account")
    assert info.value.status == 401 and info.value.retry_after == 60.0
    assert "expired or revoked" in str(info.value)
    assert len(responses.calls) == 1


@responses.activate
def test_requests_are_spaced_by_the_rate_limit():
    clock = FakeClock()
    amo = client(clock, rate=7.0)
    responses.get(f"{BASE}/api/v4/account", json={})
    for _ in range(14):
        amo.get("/api/v4/account")
    assert amo.requests_sent == 14
    assert clock.now - 1_000.0 == pytest.approx(13 / 7, abs=0.02)


def test_a_late_answer_holds_its_window_permit_until_a_second_after_it():
    clock = FakeClock()
    window = RequestWindow(2, clock=clock, sleep=clock.sleep)
    assert window.acquire() and window.acquire()
    clock.now += 0.3
    window.release()  # the first answered at +0.3 s
    clock.now += 0.6
    window.release()  # the second (say, delayed on the way) answered at +0.9 s
    assert window.acquire(timeout=0.1) is False  # +1.0: both permits are still counted
    assert window.acquire() and clock.now == pytest.approx(1_001.3)  # one second after the first answer
    assert window.acquire() and clock.now == pytest.approx(1_001.9)


def test_fractional_rates_round_the_window_down():
    assert AmoClient(BASE, StaticToken(TOKEN), rate=3.5).window.limit == 3
    assert AmoClient(BASE, StaticToken(TOKEN), rate=0.5).window.limit == 1


def test_one_bucket_can_be_shared():
    bucket = TokenBucket(7, 1)
    a = AmoClient(BASE, StaticToken(TOKEN), bucket=bucket)
    b = AmoClient(BASE, StaticToken(TOKEN), bucket=bucket)
    assert a.bucket is b.bucket


# ---------------------------------------------------------------------------------------------- OAuth


def oauth(
    state: MemoryState, clock: FakeClock, seed: Grant | None = None, amo: AmoClient | None = None
) -> OAuthTokens:
    amo = amo or AmoClient(BASE, None, rate=100, clock=clock, sleep=clock.sleep)
    tokens = OAuthTokens(
        client_id="cid",
        client_secret="csecret",
        post_token=amo.post_token,
        state=lambda: state,
        redirect_uri=lambda: "https://calls.example.com/connectors/amocrm/oauth/callback",
        seed=seed,
        clock=clock,
        sleep=clock.sleep,
    )
    amo.auth = tokens
    return tokens


def token_answer(n: int) -> dict[str, Any]:
    return {"token_type": "Bearer", "expires_in": 86400, "access_token": f"at{n}", "refresh_token": f"rt{n}"}


def stored(state: MemoryState) -> TokenRecord:
    return TokenRecord.from_json(state.data[STATE_KEY][0])


@responses.activate
def test_a_configured_code_is_exchanged_once_and_remembered():
    state, clock = MemoryState(), FakeClock()
    responses.post(f"{BASE}/oauth2/access_token", json=token_answer(1))
    seed = Grant(
        "authorization_code", "code-1", fingerprint("code", "code-1"), "configured authorization code"
    )
    tokens = oauth(state, clock, seed)
    assert tokens.token() == "at1"
    assert tokens.token() == "at1"
    # a restart with the same config does not try the (single-use) code again
    assert oauth(state, clock, seed).token() == "at1"
    assert len(responses.calls) == 1
    sent = json.loads(responses.calls[0].request.body)
    assert sent == {
        "client_id": "cid",
        "client_secret": "csecret",
        "grant_type": "authorization_code",
        "code": "code-1",
        "redirect_uri": "https://calls.example.com/connectors/amocrm/oauth/callback",
    }
    record = stored(state)
    assert (record.access_token, record.refresh_token, record.generation) == ("at1", "rt1", 1)
    assert record.lease_owner is None and "code-1" not in state.data[STATE_KEY][0]


@responses.activate
def test_a_401_refreshes_once_with_the_rotated_refresh_token_and_retries():
    state, clock = MemoryState(), FakeClock()
    state.compare_and_set(STATE_KEY, TokenRecord("at1", "rt1", clock.now + 86400).to_json(), None)
    amo = AmoClient(BASE, None, rate=100, clock=clock, sleep=clock.sleep)
    tokens = oauth(state, clock, amo=amo)
    responses.get(f"{BASE}/api/v4/account", status=401, json={"status": 401})
    responses.get(f"{BASE}/api/v4/account", json={"id": 1})
    responses.post(f"{BASE}/oauth2/access_token", json=token_answer(2))
    assert amo.get("/api/v4/account") == {"id": 1}
    paths = [
        (c.request.method, c.request.path_url, c.request.headers.get("Authorization"))
        for c in responses.calls
    ]
    assert paths == [
        ("GET", "/api/v4/account", "Bearer at1"),
        ("POST", "/oauth2/access_token", None),
        ("GET", "/api/v4/account", "Bearer at2"),
    ]
    assert json.loads(responses.calls[1].request.body)["refresh_token"] == "rt1"
    assert stored(state).refresh_token == "rt2" and tokens.refreshes == 1


@responses.activate
def test_a_token_close_to_expiry_is_refreshed_before_use():
    state, clock = MemoryState(), FakeClock()
    state.compare_and_set(STATE_KEY, TokenRecord("at1", "rt1", clock.now + 30).to_json(), None)
    responses.post(f"{BASE}/oauth2/access_token", json=token_answer(2))
    assert oauth(state, clock).token() == "at2"


@responses.activate
def test_a_refused_refresh_token_asks_for_re_authorisation_with_amocrm_s_hint():
    state, clock = MemoryState(), FakeClock()
    state.compare_and_set(STATE_KEY, TokenRecord("at1", "rt1", clock.now).to_json(), None)
    responses.post(
        f"{BASE}/oauth2/access_token",
        status=400,
        json={
            "hint": "Token has been revoked",
            "title": "Некорректный запрос",
            "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
            "status": 400,
            "detail": "В запросе отсутствует ряд параметров или параметры невалидны",
        },
    )
    tokens = oauth(state, clock)
    with pytest.raises(AmoAuthError) as info:
        tokens.token()
    assert "Token has been revoked" in str(info.value) and "oauth/start" in str(info.value)
    assert info.value.retry_after == 300.0
    record = stored(state)
    assert record.access_token is None and record.refresh_token is None and record.lease_owner is None
    with pytest.raises(AmoAuthError):  # no second attempt with a dead token
        tokens.token()
    assert len(responses.calls) == 1


@responses.activate
def test_a_transient_failure_releases_the_claim_and_keeps_the_refresh_token():
    state, clock = MemoryState(), FakeClock()
    state.compare_and_set(STATE_KEY, TokenRecord("at1", "rt1", clock.now).to_json(), None)
    responses.post(f"{BASE}/oauth2/access_token", status=503, json={"status": 503})
    responses.post(f"{BASE}/oauth2/access_token", json=token_answer(2))
    tokens = oauth(state, clock)
    with pytest.raises(AmoRetryableError):
        tokens.token()
    assert stored(state).lease_owner is None and stored(state).refresh_token == "rt1"
    assert tokens.token() == "at2"


@responses.activate
def test_a_lease_held_by_another_process_is_waited_for_not_doubled():
    state, clock = MemoryState(), FakeClock()
    leased = TokenRecord("at1", "rt1", clock.now - 1, lease_owner="other", lease_until=clock.now + 5)
    state.compare_and_set(STATE_KEY, leased.to_json(), None)
    tokens = oauth(state, clock)
    original_sleep = clock.sleep

    def other_process_finishes(seconds: float) -> None:
        original_sleep(seconds)
        if clock.now > 1_002.0 and stored(state).lease_owner == "other":
            current = state.get(STATE_KEY)
            assert current is not None
            state.compare_and_set(
                STATE_KEY, TokenRecord("at9", "rt9", clock.now + 86400).to_json(), current[1]
            )

    tokens.sleep = other_process_finishes
    assert tokens.after_unauthorized("at1") == "at9"
    assert len(responses.calls) == 0


def test_without_tokens_the_message_says_how_to_authorise():
    tokens = oauth(MemoryState(), FakeClock())
    with pytest.raises(AmoAuthError, match="not authorised .*no tokens yet"):
        tokens.token()


@responses.activate
def test_a_request_that_waited_for_its_slot_goes_out_with_the_token_that_replaced_its_own():
    state, clock = MemoryState(), FakeClock()
    state.compare_and_set(STATE_KEY, TokenRecord("at1", "rt1", clock.now + 86400).to_json(), None)
    amo = AmoClient(BASE, None, rate=100, clock=clock, sleep=clock.sleep)
    tokens = oauth(state, clock, amo=amo)
    responses.post(f"{BASE}/oauth2/access_token", json=token_answer(2))
    responses.get(f"{BASE}/api/v4/account", json={"id": 1})
    assert tokens.after_unauthorized("at1") == "at2"  # another thread's 401 refreshed it
    assert amo._send("GET", "/api/v4/account", "at1") == {"id": 1}  # read "at1" before the refresh
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer at2"
    assert tokens.fresher("at1") == "at2" and tokens.fresher("other") == "other"


@responses.activate
def test_a_stale_code_left_in_the_config_never_throws_away_working_tokens():
    state, clock = MemoryState(), FakeClock()
    state.compare_and_set(STATE_KEY, TokenRecord("at1", "rt1", clock.now + 86400).to_json(), None)
    responses.post(
        f"{BASE}/oauth2/access_token",
        status=400,
        json={"hint": "Authorization code has expired", "status": 400, "detail": "invalid"},
    )
    seed = Grant("authorization_code", "old", fingerprint("code", "old"), "configured authorization code")
    assert oauth(state, clock, seed).token() == "at1"
    assert oauth(state, clock, seed).token() == "at1"  # tried once, remembered as used
    assert len(responses.calls) == 1
    record = stored(state)
    assert (record.access_token, record.refresh_token, record.error) == ("at1", "rt1", None)
    assert fingerprint("code", "old") in record.seeds_used


@responses.activate
def test_several_429s_at_once_pause_once_not_once_each():
    clock = FakeClock()
    amo = client(clock, rate=7.0)
    responses.get(f"{BASE}/api/v4/account", json={"id": 1})
    for _ in range(4):
        amo._pause(1.0)  # four threads answered 429 at the same moment
    before = clock.now
    amo.get("/api/v4/account")
    assert clock.now - before == pytest.approx(1.0 + 1 / 7, abs=0.01)  # one second's pause, not four
