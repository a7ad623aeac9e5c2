"""The Bitrix24 REST client and the shared OAuth tokens, with the HTTP layer faked by `responses`."""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses

from bridge.connector_api import PermanentDeliveryError, RetryableDeliveryError
from bridge.connector_api.http import make_session
from bridge.connector_api.testing import MemoryState
from connectors.bitrix24.client import (
    AppCredentials,
    Bitrix24Client,
    Command,
    WebhookCredentials,
    build_query,
    ref,
)
from connectors.bitrix24.errors import (
    BitrixPermanent,
    BitrixRetryable,
    MethodBlocked,
    NotAuthorised,
    QueryLimitExceeded,
    TokenExpired,
)
from connectors.bitrix24.oauth import TOKENS_KEY, OAuthTokens, TokenRecord
from tests.fakes.bitrix24 import parse_php_query

PORTAL = "https://acme.bitrix24.ru"
REST = PORTAL + "/rest/"
HOOK = PORTAL + "/rest/1/s3cr3tw3bh00k/"
OAUTH = "https://oauth.bitrix.info/oauth/token/"
TIME = {"start": 1, "finish": 2, "operating_reset_at": 1_800_000_000, "operating": 0.1}


class Clock:
    """A manual monotonic+wall clock; sleeping advances it."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.lock = threading.Lock()
        self.slept: list[float] = []

    def __call__(self) -> float:
        with self.lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.slept.append(seconds)
            self.now += seconds


def tokens(state: MemoryState, *, clock: Any = time.time, **kw: Any) -> OAuthTokens:
    return OAuthTokens(
        lambda: state,
        client_id=kw.pop("client_id", "local.app"),
        client_secret=kw.pop("client_secret", "app-secret"),
        token_url=OAUTH,
        session=make_session(),
        clock=clock,
        sleep=kw.pop("sleep", time.sleep),
        **kw,
    )


def installed(state: MemoryState, access: str = "A1", refresh: str = "R1", expires_at: float = 1e12) -> None:
    state.compare_and_set(TOKENS_KEY, TokenRecord(access, refresh, expires_at).to_json(), None)


def app_client(
    state: MemoryState, *, clock: Clock | None = None, burst: int = 50, **kw: Any
) -> Bitrix24Client:
    clock = clock or Clock()
    creds = AppCredentials(REST, tokens(state, clock=clock, sleep=clock.sleep), kw.pop("webhook", None))
    return Bitrix24Client(
        PORTAL, creds, session=make_session(), clock=clock, wall=clock, sleep=clock.sleep, burst=burst, **kw
    )


def ok(result: Any) -> dict[str, Any]:
    return {"result": result, "time": TIME}


def err(code: str, description: str) -> dict[str, Any]:
    return {"error": code, "error_description": description}


def body(call: Any) -> dict[str, Any]:
    return json.loads(call.request.body)


# ------------------------------------------------------------------ encoding


def test_batch_commands_are_encoded_like_php_http_build_query() -> None:
    params = {
        "USER_ID": [1, 7],
        "FILTER": {"UF_PHONE_INNER": "101", "ACTIVE": True},
        "PHONE_NUMBER": "+79161234567",
        "CALL_ID": ref("register", "CALL_ID"),
        "NAME": "a&b=c",
        "SKIPPED": None,
        "SHOW": False,
    }
    query = build_query(params, prefix="u3_")
    assert "%2B79161234567" in query  # a "+" must not arrive as a space
    assert parse_php_query(query) == {
        "USER_ID": ["1", "7"],
        "FILTER": {"UF_PHONE_INNER": "101", "ACTIVE": "1"},
        "PHONE_NUMBER": "+79161234567",
        "CALL_ID": "$result[u3_register][CALL_ID]",
        "NAME": "a&b=c",
        "SHOW": "0",
    }


# ------------------------------------------------------------------ plain calls


@responses.activate
def test_a_call_posts_json_with_the_access_token_and_returns_the_result() -> None:
    state = MemoryState()
    installed(state)
    responses.post(REST + "telephony.externalCall.show", json=ok(True))
    client = app_client(state)
    assert client.call("telephony.externalCall.show", {"CALL_ID": "externalCall.x", "USER_ID": [7]}) is True
    sent = body(responses.calls[0])
    assert sent == {"CALL_ID": "externalCall.x", "USER_ID": [7], "auth": "A1"}
    assert responses.calls[0].request.headers["Content-Type"] == "application/json"


@responses.activate
def test_a_webhook_call_goes_to_the_webhook_url_without_a_token() -> None:
    responses.post(HOOK + "user.get", json=ok([{"ID": "1"}]))
    client = Bitrix24Client(PORTAL, WebhookCredentials(HOOK), session=make_session())
    assert client.call("user.get", {"FILTER": {"ACTIVE": True}}) == [{"ID": "1"}]
    assert "auth" not in body(responses.calls[0])


@responses.activate
def test_before_the_install_the_webhook_serves_the_methods_that_accept_it() -> None:
    state = MemoryState()  # no tokens yet
    responses.post(HOOK + "telephony.externalCall.searchCrmEntities", json=ok([]))
    client = app_client(state, webhook=HOOK)
    assert client.call("telephony.externalCall.searchCrmEntities", {"PHONE_NUMBER": "+7916"}) == []
    with pytest.raises(NotAuthorised, match="not installed"):
        client.call("telephony.externalCall.register", {"PHONE_NUMBER": "+7916"})
    assert len(responses.calls) == 1


# ------------------------------------------------------------------ errors, table-driven


@pytest.mark.parametrize(
    ("status", "answer", "kind", "words"),
    [
        (400, err("ERROR_CORE", "Unknown TYPE"), BitrixPermanent, "ERROR_CORE: Unknown TYPE"),
        (400, err("ERROR_CORE", "User is not found or is not active"), BitrixPermanent, "not active"),
        (503, err("QUERY_LIMIT_EXCEEDED", "Too many requests"), QueryLimitExceeded, "leaky bucket"),
        (429, err("OPERATION_TIME_LIMIT", "Method is blocked"), MethodBlocked, "run-time budget"),
        (401, err("invalid_token", "The access token provided is invalid."), NotAuthorised, "reinstall"),
        (401, err("WRONG_AUTH_TYPE", "denied"), NotAuthorised, "local application"),
        (401, err("insufficient_scope", "higher privileges"), NotAuthorised, "permission"),
        (403, err("ACCESS_DENIED", "REST is available only on commercial plans"), NotAuthorised, "plan"),
        (404, err("ERROR_METHOD_NOT_FOUND", "Method not found!"), BitrixPermanent, "no such method"),
        (
            500,
            err("INTERNAL_SERVER_ERROR", "Internal server error"),
            BitrixRetryable,
            "INTERNAL_SERVER_ERROR",
        ),
        (502, "<html>Bad gateway</html>", BitrixRetryable, "HTTP 502"),
        (200, err("ERROR_CORE", "an error with a 200"), BitrixPermanent, "an error with a 200"),
    ],
)
@responses.activate
def test_vendor_errors_become_retryable_or_permanent_with_plain_words(
    status: int, answer: Any, kind: type, words: str
) -> None:
    state = MemoryState()
    installed(state, access="secret-access-token-0123456789abcdef")
    if isinstance(answer, str):
        responses.post(REST + "telephony.externalCall.finish", body=answer, status=status)
    else:
        responses.post(REST + "telephony.externalCall.finish", json=answer, status=status)
    client = app_client(state)
    with pytest.raises(kind) as caught:
        client.call("telephony.externalCall.finish", {"CALL_ID": "c"})
    text = str(caught.value)
    assert words in text
    assert "secret-access-token" not in text and "/rest/" not in text
    retryable = isinstance(caught.value, RetryableDeliveryError)
    assert retryable != isinstance(caught.value, PermanentDeliveryError)


@responses.activate
def test_query_limit_exceeded_holds_every_request_and_backs_off_longer_each_time() -> None:
    state = MemoryState()
    installed(state)
    clock = Clock()
    url = REST + "user.get"
    responses.post(url, json=err("QUERY_LIMIT_EXCEEDED", "Too many requests"), status=503)
    responses.post(url, json=err("QUERY_LIMIT_EXCEEDED", "Too many requests"), status=503)
    responses.post(url, json=ok([]))
    client = app_client(state, clock=clock)
    with pytest.raises(QueryLimitExceeded) as first:
        client.call("user.get")
    assert first.value.retry_after == pytest.approx(0.5)
    with pytest.raises(QueryLimitExceeded) as second:
        client.call("user.get")  # waits out the 0.5 s hold first
    assert second.value.retry_after == pytest.approx(1.0)
    assert client.call("user.get") == []
    assert sum(clock.slept) >= 1.5  # nothing was sent during a hold


@responses.activate
def test_operation_time_limit_blocks_that_method_only_until_operating_reset_at() -> None:
    state = MemoryState()
    installed(state)
    clock = Clock()
    clock.now = 1_800_000_000 - 120  # the last answer said this method's budget frees up in 120 s
    responses.post(REST + "telephony.externalCall.finish", json=ok({"ID": 1}))
    responses.post(
        REST + "telephony.externalCall.finish", json=err("OPERATION_TIME_LIMIT", "blocked"), status=429
    )
    responses.post(REST + "telephony.externalCall.show", json=ok(True))
    responses.post(REST + "telephony.externalCall.finish", json=ok({"ID": 2}))
    client = app_client(state, clock=clock)
    client.call("telephony.externalCall.finish", {"CALL_ID": "a"})
    with pytest.raises(MethodBlocked) as caught:
        client.call("telephony.externalCall.finish", {"CALL_ID": "b"})
    assert caught.value.retry_after is None  # the dispatcher must not pause the whole connector
    with pytest.raises(MethodBlocked, match="blocked for another"):
        client.call("telephony.externalCall.finish", {"CALL_ID": "b"})  # refused locally, nothing sent
    assert client.call("telephony.externalCall.show", {"CALL_ID": "a"}) is True  # other methods go on
    assert len(responses.calls) == 3
    clock.now += 121
    assert client.call("telephony.externalCall.finish", {"CALL_ID": "b"}) == {"ID": 2}


@responses.activate
def test_expired_token_is_refreshed_once_and_the_request_sent_again() -> None:
    state = MemoryState()
    installed(state, access="OLD", refresh="R1")
    responses.post(
        REST + "user.get", json=err("expired_token", "The access token provided has expired."), status=401
    )
    responses.post(REST + "user.get", json=ok([{"ID": "1"}]))
    responses.post(
        OAUTH, json={"access_token": "NEW", "refresh_token": "R2", "expires_in": 3600, "member_id": "m"}
    )
    client = app_client(state)
    assert client.call("user.get") == [{"ID": "1"}]
    assert [body(c)["auth"] for c in responses.calls if c.request.url.startswith(REST)] == ["OLD", "NEW"]
    form = parse_qs(responses.calls[1].request.body)
    assert form == {
        "grant_type": ["refresh_token"],
        "client_id": ["local.app"],
        "client_secret": ["app-secret"],
        "refresh_token": ["R1"],
    }
    record = TokenRecord.from_json(state.get(TOKENS_KEY)[0])
    assert (record.access_token, record.refresh_token, record.generation) == ("NEW", "R2", 2)


@responses.activate
def test_a_token_that_expires_again_right_after_the_refresh_is_an_error_not_a_loop() -> None:
    state = MemoryState()
    installed(state)
    expired = err("expired_token", "The access token provided has expired.")
    responses.post(REST + "user.get", json=expired, status=401)
    responses.post(REST + "user.get", json=expired, status=401)
    responses.post(OAUTH, json={"access_token": "NEW", "refresh_token": "R2", "expires_in": 3600})
    with pytest.raises(TokenExpired):
        app_client(state).call("user.get")
    assert len(responses.calls) == 3


@responses.activate
def test_a_refused_refresh_token_says_reinstall_and_keeps_the_stored_pair() -> None:
    state = MemoryState()
    installed(state, access="OLD", refresh="R1", expires_at=1)  # known to be expired
    responses.post(OAUTH, json=err("invalid_grant", "Invalid authorization tokens"), status=400)
    with pytest.raises(NotAuthorised, match="reinstall the local application") as caught:
        app_client(state).call("user.get")
    assert "R1" not in str(caught.value)
    record = TokenRecord.from_json(state.get(TOKENS_KEY)[0])
    assert record.refresh_token == "R1" and record.refreshing_until == 0  # the lease was given back


def test_without_client_id_the_refresh_says_what_to_configure() -> None:
    state = MemoryState()
    installed(state, expires_at=1)
    with pytest.raises(NotAuthorised, match="client_id/client_secret"):
        tokens(state, client_id=None, client_secret=None).access_token()


# ------------------------------------------------------------------ batch and coalescing


@responses.activate
def test_a_unit_of_commands_is_one_batch_with_references_and_per_command_errors() -> None:
    state = MemoryState()
    installed(state)
    responses.post(
        REST + "batch",
        json=ok(
            {
                "result": {"u0_register": {"CALL_ID": "externalCall.1"}, "u0_finish": {"ID": 5}},
                "result_error": {"u0_task": err("ERROR_CORE", "Task title not specified<br>")},
                "result_total": [],
                "result_next": [],
                "result_time": {"u0_finish": TIME},
            }
        ),
    )
    client = app_client(state)
    result = client.batch(
        {
            "register": Command("telephony.externalCall.register", {"PHONE_NUMBER": "+79161234567"}),
            "finish": Command("telephony.externalCall.finish", {"CALL_ID": ref("register", "CALL_ID")}),
            "task": Command("tasks.task.add", {"fields": {"TITLE": ""}}),
        }
    )
    assert result.results == {"register": {"CALL_ID": "externalCall.1"}, "finish": {"ID": 5}}
    assert isinstance(result.errors["task"], BitrixPermanent)
    assert "Task title not specified" in str(result.errors["task"])
    sent = body(responses.calls[0])
    assert sent["halt"] == 0 and sent["auth"] == "A1"
    method, _, query = sent["cmd"]["u0_finish"].partition("?")
    assert method == "telephony.externalCall.finish"
    assert parse_php_query(query) == {"CALL_ID": "$result[u0_register][CALL_ID]"}


@responses.activate
def test_concurrent_callers_share_one_batch_request_when_the_bucket_is_empty() -> None:
    state = MemoryState()
    installed(state)
    seen: list[dict[str, Any]] = []

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        data = json.loads(request.body)
        seen.append(data)
        if "cmd" in data:
            results = {key: {"echo": key} for key in data["cmd"]}
            return 200, {}, json.dumps(ok({"result": results, "result_error": []}))
        return 200, {}, json.dumps(ok({"echo": "single"}))

    responses.add_callback(responses.POST, REST + "user.get", callback=answer)
    responses.add_callback(responses.POST, REST + "batch", callback=answer)
    # burst 3 -> one token after the safety margin; real clock: the next token comes 0.5 s later.
    client = Bitrix24Client(
        PORTAL, AppCredentials(REST, tokens(state)), session=make_session(), burst=3, rate=2.0
    )
    assert client.call("user.get") == {"echo": "single"}
    results: dict[int, Any] = {}
    threads = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, client.call("user.get", {"start": i})))
        for i in range(6)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(results) == 6
    assert len(seen) <= 3  # 1 single + the six callers in one or two batches
    assert sum(len(s.get("cmd", {})) for s in seen[1:]) == 6
    assert all(r["echo"].startswith("u") for r in results.values())


@responses.activate
def test_a_whole_request_failure_reaches_every_caller_in_the_batch() -> None:
    state = MemoryState()
    installed(state)
    responses.post(REST + "batch", json=err("INTERNAL_SERVER_ERROR", "Internal server error"), status=500)
    client = app_client(state)
    with pytest.raises(BitrixRetryable):
        client.batch({"a": Command("user.get"), "b": Command("user.get")})


# ------------------------------------------------------------------ tokens shared by threads


def test_threads_that_see_the_same_expired_token_refresh_it_once() -> None:
    state = MemoryState()
    installed(state, access="OLD", refresh="R1")
    posts: list[str] = []
    gate = threading.Event()

    class Tokens(OAuthTokens):
        def _post_refresh(self, refresh_token: str) -> dict[str, Any]:
            posts.append(refresh_token)
            gate.wait(1)  # hold the lease while the others pile up
            return {"access_token": "NEW", "refresh_token": "R2", "expires_in": 3600}

    shared = [
        Tokens(lambda: state, client_id="c", client_secret="s", token_url=OAUTH, session=make_session())
        for _ in range(3)
    ]  # three "processes": separate objects, one store
    got: list[str] = []
    threads = [threading.Thread(target=lambda t=t: got.append(t.refresh("OLD"))) for t in shared * 3]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    gate.set()
    for thread in threads:
        thread.join(5)
    assert posts == ["R1"]
    assert got == ["NEW"] * 9
    assert TokenRecord.from_json(state.get(TOKENS_KEY)[0]).refresh_token == "R2"


def test_a_newer_install_is_never_overwritten_by_an_older_refresh() -> None:
    state = MemoryState()
    installed(state, access="OLD", refresh="R1")

    class Tokens(OAuthTokens):
        def _post_refresh(self, refresh_token: str) -> dict[str, Any]:
            # While we talk to the OAuth server the application is reinstalled.
            self.install(TokenRecord("INSTALLED", "R9", 1e12))
            return {"access_token": "REFRESHED", "refresh_token": "R2", "expires_in": 3600}

    got = Tokens(lambda: state, client_id="c", client_secret="s", token_url=OAUTH, session=make_session())
    assert got.refresh("OLD") == "INSTALLED"
    assert TokenRecord.from_json(state.get(TOKENS_KEY)[0]).refresh_token == "R9"


@responses.activate
def test_a_lookup_that_cannot_get_a_slot_in_time_is_dropped_unsent() -> None:
    state = MemoryState()
    installed(state)
    responses.post(REST + "telephony.externalCall.searchCrmEntities", json=ok([]))
    # burst 3 -> one token after the margin; the next one comes 0.5 s later (real clock).
    client = Bitrix24Client(PORTAL, AppCredentials(REST, tokens(state)), session=make_session(), burst=3)
    client.call("telephony.externalCall.searchCrmEntities", {"PHONE_NUMBER": "+79161234567"})
    started = time.monotonic()
    with pytest.raises(BitrixRetryable, match="within 0.1 s"):
        client.call(
            "telephony.externalCall.searchCrmEntities", {"PHONE_NUMBER": "+79990000000"}, max_wait=0.1
        )
    assert time.monotonic() - started < 0.4
    assert len(responses.calls) == 1
