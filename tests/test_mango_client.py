"""MangoClient against Mango's documented wire format, faked with `responses`."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses

from bridge.pbx.mango.client import (
    CHECK_OK,
    RATE_LIMITS,
    CommandAccepted,
    IncomingLine,
    MangoClient,
    MangoGroup,
    MangoRateLimiter,
    MangoUser,
    MangoUserNumber,
)
from bridge.pbx.mango.errors import (
    MangoAccessBlocked,
    MangoBadKey,
    MangoBadRequest,
    MangoBadSign,
    MangoBillingError,
    MangoCallEnded,
    MangoCallNotFound,
    MangoCannotDo,
    MangoError,
    MangoRateLimited,
    MangoServerError,
    MangoStatsKeyNotFound,
    MangoStatsTimeout,
    MangoTransportError,
)
from bridge.pbx.mango.stats import DEFAULT_FIELDS

BASE = "https://app.mango-office.ru/vpbx/"
KEY = "vpbx-key-4f2a9c1e7b"
SALT = "salt-8d3e6b0a5c91f7"
NOW = 1_700_000_000.0
RATE_LIMIT_BODY = {"name": "Service Unavailable", "message": "Rate limit exceeded.", "code": 0, "status": 429}


class FakeClock:
    """A monotonic clock that only moves when the code under test sleeps."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds


class RecordingSession(requests.Session):
    """A real session that remembers the keyword arguments of each post."""

    def __init__(self) -> None:
        super().__init__()
        self.post_kwargs: list[dict[str, Any]] = []

    def post(self, url: Any, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:
        self.post_kwargs.append(kwargs)
        return super().post(url, data=data, json=json, **kwargs)


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(clock: FakeClock) -> MangoClient:
    return MangoClient(KEY, SALT, BASE, clock=clock, sleep=clock.sleep, now=lambda: NOW)


def form_of(call: Any) -> dict[str, str]:
    parsed = parse_qs(call.request.body, keep_blank_values=True, strict_parsing=True)
    assert all(len(values) == 1 for values in parsed.values())
    return {name: values[0] for name, values in parsed.items()}


def sent_json(call: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(form_of(call)["json"])
    return payload


def expected_sign(json_text: str, key: str = KEY, salt: str = SALT) -> str:
    return hashlib.sha256((key + json_text + salt).encode()).hexdigest()


def ok(mock: responses.RequestsMock, path: str, body: Any = None, status: int = 200) -> None:
    mock.add(responses.POST, BASE + path, json={"result": 1000} if body is None else body, status=status)


# ------------------------------------------------------------------------------- form and signature


def test_every_request_is_the_signed_three_field_form(
    mock: responses.RequestsMock, client: MangoClient
) -> None:
    ok(mock, "commands/callback")
    client.callback("101", "79161234567", command_id="c-1")

    call = mock.calls[0]
    assert call.request.method == "POST"
    assert call.request.url == BASE + "commands/callback"
    assert call.request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = form_of(call)
    assert set(form) == {"vpbx_api_key", "sign", "json"}
    assert form["vpbx_api_key"] == KEY
    assert form["sign"] == expected_sign(form["json"])
    assert form["json"] == '{"command_id":"c-1","from":{"extension":"101"},"to_number":"79161234567"}'


def test_golden_signature_vector(mock: responses.RequestsMock) -> None:
    ok(mock, "incominglines", {"result": 1000, "lines": []})
    MangoClient("k", "s", BASE).incoming_lines()
    form = form_of(mock.calls[0])
    assert form["json"] == "{}"
    assert form["sign"] == "191a30303627fdf2dc8675859ee3d01537c4b5743eb9c58d3fe577a645be4471"


def test_non_ascii_payload_is_signed_over_the_exact_utf8_json_sent(
    mock: responses.RequestsMock, client: MangoClient
) -> None:
    ok(mock, "commands/sms")
    client.sms("Здравствуйте, ваш заказ готов", "101", "79161234567", command_id="s-1")
    form = form_of(mock.calls[0])
    assert "Здравствуйте" in form["json"]  # UTF-8 kept as is, not \\u-escaped
    assert form["sign"] == expected_sign(form["json"])


def test_timeout_tls_and_no_redirects_on_every_request(
    mock: responses.RequestsMock, clock: FakeClock
) -> None:
    session = RecordingSession()
    client = MangoClient(KEY, SALT, BASE, timeout=7, session=session, clock=clock, sleep=clock.sleep)
    ok(mock, "incominglines", {"result": 1000, "lines": []})
    ok(mock, "commands/call/hangup")
    client.incoming_lines()
    client.hangup("call-1")
    assert [kw["timeout"] for kw in session.post_kwargs] == [7, 7]
    assert all(kw["verify"] is True and kw["allow_redirects"] is False for kw in session.post_kwargs)


def test_base_url_without_trailing_slash_is_normalised(mock: responses.RequestsMock) -> None:
    ok(mock, "incominglines", {"result": 1000, "lines": []})
    MangoClient(KEY, SALT, "https://app.mango-office.ru/vpbx").incoming_lines()
    assert mock.calls[0].request.url == BASE + "incominglines"


# ----------------------------------------------------------------------------------------- commands

COMMANDS: list[tuple[str, Callable[[MangoClient], CommandAccepted], str, dict[str, Any]]] = [
    (
        "callback minimal",
        lambda c: c.callback("101", "79161234567", command_id="id1"),
        "commands/callback",
        {"command_id": "id1", "from": {"extension": "101"}, "to_number": "79161234567"},
    ),
    (
        "callback full",
        lambda c: c.callback(
            101,
            79161234567,
            line_number="74951234567",
            from_number="sip:ivan@vpbx1.mangosip.ru",
            sip_headers={"Call-Info/answer-after": "0"},
            command_id="id2",
        ),
        "commands/callback",
        {
            "command_id": "id2",
            "from": {"extension": "101", "number": "sip:ivan@vpbx1.mangosip.ru"},
            "to_number": "79161234567",
            "line_number": "74951234567",
            "sip_headers": {"Call-Info/answer-after": "0"},
        },
    ),
    (
        "callback_group",
        lambda c: c.callback_group("500", "79161234567", "74951234567", command_id="id3"),
        "commands/callback_group",
        {"command_id": "id3", "from": "500", "to": "79161234567", "line_number": "74951234567"},
    ),
    (
        "hangup",
        lambda c: c.hangup("MToxMDA4NjI3Nzo1MDI6NjQ0MjQzNTM5", command_id="id4"),
        "commands/call/hangup",
        {"command_id": "id4", "call_id": "MToxMDA4NjI3Nzo1MDI6NjQ0MjQzNTM5"},
    ),
    (
        "route",
        lambda c: c.route("leg-1", "101", command_id="id5"),
        "commands/route",
        {"command_id": "id5", "call_id": "leg-1", "to_number": "101"},
    ),
    (
        "route with display name",
        lambda c: c.route("leg-1", "101", sip_headers={"From/display-name": "VIP"}, command_id="id6"),
        "commands/route",
        {
            "command_id": "id6",
            "call_id": "leg-1",
            "to_number": "101",
            "sip_headers": {"From/display-name": "VIP"},
        },
    ),
    (
        "transfer blind",
        lambda c: c.transfer("leg-2", "102", initiator="101", command_id="id7"),
        "commands/transfer",
        {"command_id": "id7", "call_id": "leg-2", "method": "blind", "to_number": "102", "initiator": "101"},
    ),
    (
        "transfer hold",
        lambda c: c.transfer("leg-2", "102", "hold", initiator=101, command_id="id8"),
        "commands/transfer",
        {"command_id": "id8", "call_id": "leg-2", "method": "hold", "to_number": "102", "initiator": "101"},
    ),
    (
        "recording_start",
        lambda c: c.recording_start("leg-3", "101", command_id="id9"),
        "commands/recording/start",
        {"command_id": "id9", "call_id": "leg-3", "call_party_number": "101"},
    ),
    (
        "sms",
        lambda c: c.sms("Your order is ready", "101", "79161234567", command_id="id10"),
        "commands/sms",
        {
            "command_id": "id10",
            "text": "Your order is ready",
            "from_extension": "101",
            "to_number": "79161234567",
        },
    ),
    (
        "sms with sender",
        lambda c: c.sms("Hi", 101, "79161234567", sms_sender="SHOP", command_id="id11"),
        "commands/sms",
        {
            "command_id": "id11",
            "text": "Hi",
            "from_extension": "101",
            "to_number": "79161234567",
            "sms_sender": "SHOP",
        },
    ),
]


@pytest.mark.parametrize(("name", "send", "path", "payload"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_command_json_shape(
    mock: responses.RequestsMock,
    client: MangoClient,
    name: str,
    send: Callable[[MangoClient], CommandAccepted],
    path: str,
    payload: dict[str, Any],
) -> None:
    ok(mock, path)
    accepted = send(client)
    assert accepted == CommandAccepted(command_id=payload["command_id"], result=1000)
    (call,) = mock.calls
    assert call.request.url == BASE + path
    form = form_of(call)
    assert json.loads(form["json"]) == payload
    assert form["json"] == json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    assert form["sign"] == expected_sign(form["json"])


def test_command_id_is_generated_when_not_given(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(mock, "commands/call/hangup")
    ok(mock, "commands/call/hangup")
    first = client.hangup("leg-1")
    second = client.hangup("leg-1")
    assert len(first.command_id) == 32 and int(first.command_id, 16) >= 0
    assert first.command_id != second.command_id
    assert sent_json(mock.calls[0])["command_id"] == first.command_id


def test_bad_arguments_fail_before_anything_is_sent(
    mock: responses.RequestsMock, client: MangoClient
) -> None:
    with pytest.raises(ValueError, match="128 bytes"):
        client.hangup("leg-1", command_id="x" * 129)
    with pytest.raises(ValueError, match="'blind' or 'hold'"):
        client.transfer("leg-1", "102", "consultative", initiator="101")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="268"):
        client.sms("Я" * 269, "101", "79161234567")
    with pytest.raises(ValueError, match="612"):
        client.sms("a" * 613, "101", "79161234567")
    with pytest.raises(ValueError, match="empty"):
        client.callback(" ", "79161234567")
    assert len(mock.calls) == 0


# ------------------------------------------------------------------------------------------ errors

ERRORS = [
    (3102, MangoBadSign),
    (3105, MangoBadKey),
    (3100, MangoBadRequest),
    (3103, MangoBadRequest),
    (2240, MangoBillingError),
    (2219, MangoBillingError),
    (4001, MangoCannotDo),
    (4101, MangoCallNotFound),
    (4290, MangoRateLimited),
    (5001, MangoServerError),
    (1110, MangoCallEnded),
]


@pytest.mark.parametrize(("code", "cls"), ERRORS)
def test_result_code_raises_its_specific_exception(
    mock: responses.RequestsMock, client: MangoClient, code: int, cls: type[MangoError]
) -> None:
    ok(mock, "commands/call/hangup", {"result": code})
    with pytest.raises(cls) as info:
        client.hangup("leg-1")
    assert type(info.value) is cls
    assert info.value.code == code
    assert info.value.path == "commands/call/hangup"


def test_error_result_with_an_http_error_status_and_a_string_code(
    mock: responses.RequestsMock, client: MangoClient
) -> None:
    ok(mock, "commands/route", {"result": "3102"}, status=400)
    with pytest.raises(MangoBadSign) as info:
        client.route("leg-1", "101")
    assert info.value.http_status == 400


def test_success_with_remarks_1001_is_accepted(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(mock, "commands/call/hangup", {"result": 1001})
    assert client.hangup("leg-1", command_id="h").result == 1001


def test_http_401_means_access_blocked_after_bad_requests(
    mock: responses.RequestsMock, client: MangoClient
) -> None:
    mock.add(responses.POST, BASE + "incominglines", body="Unauthorized", status=401)
    with pytest.raises(MangoAccessBlocked) as info:
        client.incoming_lines()
    assert info.value.retry_after == 120
    assert "2 minutes" in str(info.value)


def test_http_5xx_without_json_is_a_server_error(mock: responses.RequestsMock, client: MangoClient) -> None:
    mock.add(responses.POST, BASE + "incominglines", body="<html>Bad Gateway</html>", status=502)
    with pytest.raises(MangoServerError) as info:
        client.incoming_lines()
    assert info.value.http_status == 502 and info.value.code is None


def test_non_json_reply_is_a_transport_error(mock: responses.RequestsMock, client: MangoClient) -> None:
    mock.add(responses.POST, BASE + "incominglines", body="<html>maintenance</html>", status=200)
    with pytest.raises(MangoTransportError, match="not a JSON object"):
        client.incoming_lines()


def test_result_4290_in_json_also_stalls_the_group(
    mock: responses.RequestsMock, client: MangoClient, clock: FakeClock
) -> None:
    ok(mock, "commands/callback", {"result": 4290})
    ok(mock, "commands/callback")
    with pytest.raises(MangoRateLimited):
        client.callback("101", "79161234567")
    before = clock.t
    client.callback("101", "79161234567")
    assert clock.t - before >= 1.0


def test_http_403_points_at_the_ip_whitelist(mock: responses.RequestsMock, client: MangoClient) -> None:
    mock.add(responses.POST, BASE + "incominglines", body="Forbidden", status=403)
    with pytest.raises(MangoBadRequest, match="whitelists IP addresses") as info:
        client.incoming_lines()
    assert info.value.http_status == 403 and not info.value.retryable


def test_unexpected_404_points_at_the_base_url(mock: responses.RequestsMock, client: MangoClient) -> None:
    mock.add(responses.POST, BASE + "incominglines", body="Not Found", status=404)
    with pytest.raises(MangoTransportError, match="check base_url"):
        client.incoming_lines()


@pytest.mark.parametrize(
    ("exc", "delivered"),
    [
        (requests.ConnectTimeout("connect timed out"), False),
        (requests.ReadTimeout("read timed out"), True),
        (requests.ConnectionError("connection refused"), True),
        (requests.exceptions.SSLError("handshake failure"), False),
    ],
)
def test_network_failures_are_transport_errors(
    mock: responses.RequestsMock, client: MangoClient, exc: Exception, delivered: bool
) -> None:
    mock.add(responses.POST, BASE + "commands/callback", body=exc)
    with pytest.raises(MangoTransportError) as info:
        client.callback("101", "79161234567")
    assert info.value.maybe_delivered is delivered
    assert info.value.retryable
    assert "commands/callback" in str(info.value)


def test_command_reply_without_result_is_rejected(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(mock, "commands/callback", {"status": "ok"})
    with pytest.raises(MangoTransportError, match="no 'result'"):
        client.callback("101", "79161234567")


# ------------------------------------------------------------------------------------------ secrets


def test_secrets_never_appear_in_exceptions_reprs_or_logs(
    mock: responses.RequestsMock, client: MangoClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bridge.pbx.mango")
    failures: list[MangoError] = []
    signs: list[str] = []

    def echo_secrets(request: Any) -> tuple[int, dict[str, str], str]:
        form = dict(parse_qs(request.body))
        signs.append(form["sign"][0])
        return (
            200,
            {"Content-Type": "text/html"},
            f"<pre>{request.body} salt={SALT} sign={form['sign'][0]}</pre>",
        )

    mock.add_callback(responses.POST, BASE + "incominglines", callback=echo_secrets)
    ok(mock, "commands/callback", {"result": 3102})
    mock.add(responses.POST, BASE + "commands/call/hangup", body=requests.ConnectionError(f"boom {BASE}"))
    mock.add(responses.POST, BASE + "commands/route", json=RATE_LIMIT_BODY, status=429)
    for action in (
        client.incoming_lines,
        lambda: client.callback("101", "79161234567"),
        lambda: client.hangup("leg-1"),
        lambda: client.route("leg-1", "101"),
    ):
        with pytest.raises(MangoError) as info:
            action()
        failures.append(info.value)

    for call in mock.calls:
        signs.append(form_of(call)["sign"])
    texts = [str(e) for e in failures] + [repr(e) for e in failures] + [repr(client)]
    texts += [record.getMessage() for record in caplog.records]
    assert caplog.records, "requests are logged"
    for text in texts:
        assert SALT not in text
        for sign in signs:
            assert sign not in text
    assert KEY not in repr(client)


# --------------------------------------------------------------------------------------- rate limits


def test_http_429_raises_rate_limited_with_retry_after_and_stalls_the_group(
    mock: responses.RequestsMock, client: MangoClient, clock: FakeClock
) -> None:
    mock.add(
        responses.POST,
        BASE + "commands/callback",
        json=RATE_LIMIT_BODY,
        status=429,
        headers={"Retry-After": "3"},
    )
    ok(mock, "commands/callback")
    with pytest.raises(MangoRateLimited) as info:
        client.callback("101", "79161234567")
    assert info.value.retry_after == 3.0
    assert info.value.http_status == 429 and info.value.local is False
    assert "retry after 3 s" in str(info.value)

    before = clock.t
    client.callback("101", "79161234567")
    assert clock.t - before >= 3.0  # the bucket was penalised for Retry-After
    assert len(mock.calls) == 2


def test_http_429_without_retry_after_still_penalises(
    mock: responses.RequestsMock, client: MangoClient, clock: FakeClock
) -> None:
    mock.add(responses.POST, BASE + "commands/route", json=RATE_LIMIT_BODY, status=429)
    ok(mock, "commands/route")
    with pytest.raises(MangoRateLimited) as info:
        client.route("leg-1", "101")
    assert info.value.retry_after is None
    before = clock.t
    client.route("leg-1", "101")
    assert clock.t - before >= 2.0


def test_retry_after_as_an_http_date(mock: responses.RequestsMock, client: MangoClient) -> None:
    mock.add(
        responses.POST,
        BASE + "incominglines",
        json=RATE_LIMIT_BODY,
        status=429,
        headers={"Retry-After": "Tue, 14 Nov 2023 22:13:30 GMT"},  # NOW + 10 s
    )
    with pytest.raises(MangoRateLimited) as info:
        client.incoming_lines()
    assert info.value.retry_after == pytest.approx(10.0)


def sent_at(mock: responses.RequestsMock, clock: FakeClock, path: str, body: Any, times: list[float]) -> None:
    def reply(request: Any) -> tuple[int, dict[str, str], str]:
        times.append(clock.t)
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    mock.add_callback(responses.POST, BASE + path, callback=reply)


def max_in_window(times: list[float], window: float) -> int:
    return max(sum(1 for t in times if start <= t < start + window) for start in times)


def test_callback_group_never_exceeds_4_per_second(
    mock: responses.RequestsMock, client: MangoClient, clock: FakeClock
) -> None:
    times: list[float] = []
    for path in ("commands/callback", "commands/call/hangup", "commands/recording/start"):
        sent_at(mock, clock, path, {"result": 1000}, times)
    for i in range(8):
        client.callback("101", "79161234567")
        client.hangup(f"leg-{i}")
        client.recording_start(f"leg-{i}", "101")
    assert len(times) == 24
    assert max_in_window(times, 1.0) <= 4
    assert min(b - a for a, b in zip(times, times[1:], strict=False)) >= 0.25 - 1e-9


@pytest.mark.parametrize(
    ("path", "send", "body"),
    [
        ("commands/route", lambda c: c.route("leg-1", "101"), {"result": 1000}),
        ("commands/transfer", lambda c: c.transfer("leg-1", "102", initiator="101"), {"result": 1000}),
        ("config/users/request", lambda c: c.users(), {"users": []}),
        (
            "stats/request",
            lambda c: c.stats_request(int(NOW) - 3600, int(NOW)),
            {"key": "k"},
        ),
    ],
)
def test_one_per_two_seconds_groups(
    mock: responses.RequestsMock,
    client: MangoClient,
    clock: FakeClock,
    path: str,
    send: Callable[[MangoClient], Any],
    body: Any,
) -> None:
    times: list[float] = []
    sent_at(mock, clock, path, body, times)
    for _ in range(4):
        send(client)
    assert max_in_window(times, 2.0) == 1
    assert times[-1] - times[0] >= 6.0 - 1e-9


def test_all_requests_together_never_exceed_10_per_second(
    mock: responses.RequestsMock, client: MangoClient, clock: FakeClock
) -> None:
    times: list[float] = []
    sent_at(mock, clock, "incominglines", {"result": 1000, "lines": []}, times)
    sent_at(mock, clock, "commands/sms", {"result": 1000}, times)
    sent_at(mock, clock, "commands/callback", {"result": 1000}, times)
    for i in range(30):
        if i % 3 == 0:
            client.callback("101", "79161234567")
        elif i % 3 == 1:
            client.sms("hi", "101", "79161234567")
        else:
            client.incoming_lines()
    assert len(times) == 30
    assert max_in_window(times, 1.0) <= 10


def test_a_request_that_would_wait_past_max_wait_is_not_sent(
    mock: responses.RequestsMock, clock: FakeClock
) -> None:
    client = MangoClient(KEY, SALT, BASE, max_wait=1.0, clock=clock, sleep=clock.sleep)
    ok(mock, "commands/route")
    client.route("leg-1", "101")
    with pytest.raises(MangoRateLimited) as info:
        client.route("leg-2", "102")
    assert info.value.local is True
    assert info.value.retry_after == 2.0
    assert "not sent" in str(info.value)
    assert len(mock.calls) == 1


def test_clients_sharing_a_limiter_share_the_budget(mock: responses.RequestsMock, clock: FakeClock) -> None:
    limiter = MangoRateLimiter(clock=clock, sleep=clock.sleep)
    first = MangoClient(KEY, SALT, BASE, rate_limiter=limiter, clock=clock, sleep=clock.sleep)
    second = MangoClient(KEY, SALT, BASE, rate_limiter=limiter, clock=clock, sleep=clock.sleep)
    times: list[float] = []
    sent_at(mock, clock, "commands/route", {"result": 1000}, times)
    first.route("leg-1", "101")
    second.route("leg-2", "102")
    assert times[1] - times[0] >= 2.0


def test_rate_limit_table_matches_the_documented_limits() -> None:
    assert dict(RATE_LIMITS) == {
        "general": 10.0,
        "callback": 4.0,
        "recording": 10.0,
        "users": 0.5,
        "transfer": 0.5,
        "route": 0.5,
        "stats_request": 0.5,
    }
    group = MangoRateLimiter.group_for
    assert group("commands/callback") == group("commands/call/hangup") == group("commands/recording/start")
    assert group("commands/callback") == "callback"
    assert group("queries/recording/post") == "recording"
    assert group("stats/result") == group("incominglines") == group("commands/sms") == "general"


# ------------------------------------------------------------------------------------------ queries

USERS_REPLY_STRINGS = {
    "users": [
        {
            "general": {
                "name": "Ivan",
                "email": "john@mango-office.com",
                "department": "IT",
                "position": "lead developer",
            },
            "telephony": {
                "extension": "1234",
                "outgoingline": "749512345678",
                "numbers": [
                    {
                        "number": "74952223311",
                        "order": "1",
                        "protocol": "tel",
                        "wait_sec": "5",
                        "status": "on",
                    },
                    {
                        "number": "sip:ivan@apidomain.mangosip.ru",
                        "protocol": "sip",
                        "order": "0",
                        "wait_sec": "12",
                        "status": "on",
                    },
                ],
            },
        }
    ]
}

USERS_REPLY_EXT_FIELDS = {
    "users": [
        {
            "general": {
                "name": "Cekovic",
                "email": "",
                "department": "",
                "position": "Добавлено описание",
                "user_id": 300049012,
                "access_role_id": 10451,
                "mobile": None,
                "login": "300022532/Cekovic",
                "use_status": 1,
                "use_cc_numbers": 0,
                "sips": [{"number": "Agent_1309_2@mangosip.ru"}, {"number": "userc@tst.mangosip.ru"}],
            },
            "telephony": {
                "extension": 12,
                "outgoingline": "74994567918",
                "numbers": [
                    {
                        "number": "sip:userc@tst.mangosip.ru",
                        "protocol": "sip",
                        "order": 0,
                        "wait_sec": 120,
                        "status": "on",
                    },
                    {"number": 74951212121, "protocol": "tel", "order": 1, "wait_sec": 120, "status": "off"},
                ],
                "dial_alg": 1,
                "line_id": 300049196,
                "trunk_number_id": None,
            },
            "groups": [10048964],
        }
    ]
}


def test_users_with_numbers_as_strings(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(mock, "config/users/request", USERS_REPLY_STRINGS)
    (user,) = client.users(extension="1234")
    assert sent_json(mock.calls[0]) == {"extension": "1234"}
    assert user == MangoUser(
        extension="1234",
        name="Ivan",
        email="john@mango-office.com",
        department="IT",
        position="lead developer",
        outgoing_line="749512345678",
        numbers=(
            MangoUserNumber("sip:ivan@apidomain.mangosip.ru", "sip", 0, 12, "on"),
            MangoUserNumber("74952223311", "tel", 1, 5, "on"),
        ),
    )


def test_users_with_ext_fields_and_numbers_as_ints(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(mock, "config/users/request", USERS_REPLY_EXT_FIELDS)
    (user,) = client.users(ext_fields=["general.user_id", "general.sips", "groups"])
    assert sent_json(mock.calls[0]) == {"ext_fields": ["general.user_id", "general.sips", "groups"]}
    assert user.extension == "12"
    assert user.user_id == "300049012"
    assert user.email is None and user.mobile is None
    assert user.login == "300022532/Cekovic"
    assert user.line_id == "300049196" and user.dial_alg == 1
    assert user.sips == ("Agent_1309_2@mangosip.ru", "userc@tst.mangosip.ru")
    assert user.groups == ("10048964",)
    assert [n.number for n in user.numbers] == ["sip:userc@tst.mangosip.ru", "74951212121"]
    assert [n.active for n in user.numbers] == [True, False]


def test_users_reply_without_users_is_rejected(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(mock, "config/users/request", {"result": 1000})
    with pytest.raises(MangoTransportError, match="no 'users'"):
        client.users()


def test_groups_with_their_operators_in_order(mock: responses.RequestsMock, client: MangoClient) -> None:
    # The reply shape of POST /vpbx/groups (API v1.9 §3.7.2): ids as ints, operators only with show_users=1.
    ok(
        mock,
        "groups",
        {
            "result": 1000,
            "groups": [
                {
                    "id": 10048964,
                    "name": "Sales",
                    "description": "",
                    "extension": "200",
                    "dial_alg_group": 1,
                    "dial_alg_users": 2,
                    "operators": [
                        {"id": 300049013, "name": "Boris", "extension": 13, "priority": 0, "order": 2},
                        {"id": 300049012, "name": "Anna", "extension": "12", "priority": 0, "order": 1},
                        {"id": 300049014, "name": "No phone", "extension": None, "order": 3},
                    ],
                },
                {"id": 10048965, "name": "Support", "extension": None},
            ],
        },
    )
    sales, support = client.groups()
    assert sent_json(mock.calls[0]) == {"show_users": 1}
    assert sales == MangoGroup(group_id="10048964", name="Sales", extension="200", operators=("12", "13"))
    assert support == MangoGroup(group_id="10048965", name="Support")


def test_one_group_and_a_reply_without_groups(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(mock, "groups", {"result": 1000})
    with pytest.raises(MangoTransportError, match="no 'groups'"):
        client.groups(group_id=10048964)
    assert sent_json(mock.calls[0]) == {"show_users": 1, "group_id": "10048964"}


def test_incoming_lines(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(
        mock,
        "incominglines",
        {
            "result": 1000,
            "lines": [
                {
                    "line_id": 300015801,
                    "number": "sip:main_uri_my@mangosip.ru",
                    "name": "майн",
                    "comment": "сип линия",
                    "region": "sip",
                    "schema_id": 11000849,
                    "schema_name": "Мое название схемы",
                },
                {
                    "line_id": 300024487,
                    "number": "78124072916",
                    "name": None,
                    "comment": None,
                    "region": "2",
                    "schema_id": 10000008,
                    "schema_name": "По умолчанию",
                },
            ],
        },
    )
    lines = client.incoming_lines()
    assert sent_json(mock.calls[0]) == {}
    assert lines == [
        IncomingLine(
            "300015801",
            "sip:main_uri_my@mangosip.ru",
            "майн",
            "сип линия",
            "sip",
            "11000849",
            "Мое название схемы",
        ),
        IncomingLine("300024487", "78124072916", None, None, "2", "10000008", "По умолчанию"),
    ]


def test_check_reports_success(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(mock, "incominglines", {"result": 1000, "lines": []})
    assert client.check() == CHECK_OK == "Connection to the server established successfully"


@pytest.mark.parametrize(
    ("reply", "cls"),
    [
        ({"json": {"result": 3105}}, MangoBadKey),
        ({"json": {"result": 3102}}, MangoBadSign),
        ({"body": requests.ConnectionError("refused")}, MangoTransportError),
    ],
)
def test_check_raises_the_specific_error(
    mock: responses.RequestsMock, client: MangoClient, reply: dict[str, Any], cls: type[MangoError]
) -> None:
    mock.add(responses.POST, BASE + "incominglines", **reply)
    with pytest.raises(cls):
        client.check()


# --------------------------------------------------------------------------------------- recordings


def test_recording_link_returns_the_302_location_without_following_it(
    mock: responses.RequestsMock, client: MangoClient
) -> None:
    for token in ("tok1", "tok2"):
        mock.add(
            responses.POST,
            BASE + "queries/recording/post",
            status=302,
            headers={"Location": f"https://files.mango-office.ru/{token}"},
        )
    first = client.recording_link("MToxMDAwNjA4NTo1MDA5NDExMDIyOjE=", "download")
    second = client.recording_link("MToxMDAwNjA4NTo1MDA5NDExMDIyOjE=", "download")
    assert first == "https://files.mango-office.ru/tok1"
    assert second == "https://files.mango-office.ru/tok2"  # single-use links are never cached
    assert len(mock.calls) == 2  # no GET to files.mango-office.ru
    assert sent_json(mock.calls[0]) == {
        "recording_id": "MToxMDAwNjA4NTo1MDA5NDExMDIyOjE=",
        "action": "download",
    }


def test_recording_link_for_a_missing_recording(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(mock, "queries/recording/post", {"result": 3320})
    with pytest.raises(MangoBadRequest, match="recording not found"):
        client.recording_link("nope")


def test_recording_link_needs_a_redirect(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(mock, "queries/recording/post", {"result": 1000})
    with pytest.raises(MangoTransportError, match="instead of a redirect"):
        client.recording_link("rec")
    with pytest.raises(ValueError):
        client.recording_link("rec", "stream")  # type: ignore[arg-type]


def test_recording_get_link_is_signed_per_the_link_formula(
    mock: responses.RequestsMock, client: MangoClient
) -> None:
    link = client.recording_get_link("MToxMDAw/NjA4NTo1+MDA5=", "play", expires_in=600)
    expiry = int(NOW) + 600
    sign = hashlib.sha256(f"{KEY}{expiry}MToxMDAw/NjA4NTo1+MDA5={SALT}".encode()).hexdigest()
    assert link == f"{BASE}queries/recording/link/MToxMDAw%2FNjA4NTo1+MDA5=/play/{KEY}/{expiry}/{sign}"
    assert len(mock.calls) == 0
    with pytest.raises(ValueError):
        client.recording_get_link("rec", "play", expires_in=0)


# -------------------------------------------------------------------------------------------- stats

CSV_TWO_LEGS = (
    "[];1670060527;1670060530;0;;79607164646;;74951234567;1100;74951234567;ivr;MTYxNzM5NjY0OTE=\r\n"
    "[MToxMDA4];1670060530;1670060661;1670060542;;79607164646;101;sip:ivan@v.mangosip.ru;1110;"
    "74951234567;abonent;MTYxNzM5NjY0OTE=\r\n"
)


def test_stats_request_payload(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(mock, "stats/request", {"key": "B+DvIt8hPJReV8v4MYspQQA=="})
    key = client.stats_request(
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 1, 31, 23, 59, 59, tzinfo=UTC),
        call_party={"extension": 789},
        request_id="request222320",
    )
    assert key == "B+DvIt8hPJReV8v4MYspQQA=="
    assert mock.calls[0].request.url == BASE + "stats/request"
    assert sent_json(mock.calls[0]) == {
        "date_from": "1704067200",
        "date_to": "1706745599",
        "fields": "records, start, finish, answer, from_extension, from_number, to_extension, to_number, "
        "disconnect_reason, line_number, location, entry_id",
        "call_party": {"extension": "789"},
        "request_id": "request222320",
    }


def test_stats_request_with_from_and_to_filters(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(mock, "stats/request", {"key": "k1"})
    client.stats_request(
        1000, 2000, fields=["start", "entry_id"], from_={"number": "79161234567"}, to={"extension": "101"}
    )
    payload = sent_json(mock.calls[0])
    assert payload["from"] == {"number": "79161234567"}
    assert payload["to"] == {"extension": "101"}
    assert payload["fields"] == "start, entry_id"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"date_from": 1704067200, "date_to": 1704067200 + 32 * 86400}, "longer than one month"),
        ({"date_from": 2000, "date_to": 1000}, "before date_from"),
        (
            {
                "date_from": 1000,
                "date_to": 2000,
                "call_party": {"number": "7916"},
                "from_": {"extension": "1"},
            },
            "call_party cannot be combined with from_/to",
        ),
        ({"date_from": 1000, "date_to": 2000, "fields": ["start", "duration"]}, "unknown stats field"),
        ({"date_from": datetime(2024, 1, 1), "date_to": 2000}, "naive datetime"),
        ({"date_from": 1000, "date_to": 2000, "to": {"ext": "1"}}, "extension"),
    ],
)
def test_stats_request_validation(
    mock: responses.RequestsMock, client: MangoClient, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        client.stats_request(**kwargs)
    assert len(mock.calls) == 0


def test_one_calendar_month_is_the_longest_range(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(mock, "stats/request", {"key": "k"})
    msk_jan_31 = 1706648400  # 2024-01-31 00:00 UTC+3
    msk_feb_29 = 1709154000  # 2024-02-29 00:00 UTC+3 (leap year: 31 Jan + 1 month)
    client.stats_request(msk_jan_31, msk_feb_29)
    with pytest.raises(ValueError, match="longer than one month"):
        client.stats_request(msk_jan_31, msk_feb_29 + 1)


def test_stats_result_not_ready_is_none(mock: responses.RequestsMock, client: MangoClient) -> None:
    mock.add(responses.POST, BASE + "stats/result", status=204)
    assert client.stats_result("k") is None
    assert sent_json(mock.calls[0]) == {"key": "k"}


def test_stats_result_unknown_key(mock: responses.RequestsMock, client: MangoClient) -> None:
    mock.add(responses.POST, BASE + "stats/result", status=404)
    with pytest.raises(MangoStatsKeyNotFound, match="expired or unknown"):
        client.stats_result("old")


def test_stats_result_parses_the_csv_with_the_requested_fields(
    mock: responses.RequestsMock, client: MangoClient
) -> None:
    ok(mock, "stats/request", {"key": "k2"})
    mock.add(responses.POST, BASE + "stats/result", body="1670060527;MTYx\n1670060530;MTYx\n", status=200)
    key = client.stats_request(1000, 2000, fields=["start", "entry_id"])
    result = client.stats_result(key)
    assert result is not None
    assert result.key == "k2" and result.fields == ("start", "entry_id")
    assert [(r.start, r.entry_id) for r in result.rows] == [(1670060527, "MTYx"), (1670060530, "MTYx")]


def test_stats_result_multi_leg_csv_with_default_fields(
    mock: responses.RequestsMock, client: MangoClient
) -> None:
    mock.add(responses.POST, BASE + "stats/result", body=CSV_TWO_LEGS, status=200, content_type="text/csv")
    result = client.stats_result("unknown-to-this-client")
    assert result is not None
    assert result.fields == DEFAULT_FIELDS
    ivr, answered = result.rows
    assert ivr.location == "ivr" and not ivr.answered
    assert answered.to_extension == "101" and answered.records == ("MToxMDA4",) and answered.answered
    assert list(result.by_entry()) == ["MTYxNzM5NjY0OTE="]


def test_stats_result_error_json_raises(mock: responses.RequestsMock, client: MangoClient) -> None:
    ok(mock, "stats/result", {"result": 3102})
    with pytest.raises(MangoBadSign):
        client.stats_result("k")


def test_stats_result_malformed_csv_names_the_line(mock: responses.RequestsMock, client: MangoClient) -> None:
    mock.add(responses.POST, BASE + "stats/result", body=CSV_TWO_LEGS + "[];1;2\n", status=200)
    with pytest.raises(ValueError, match="line 3"):
        client.stats_result("k")


def test_stats_wait_polls_no_faster_than_every_5_seconds(
    mock: responses.RequestsMock, client: MangoClient, clock: FakeClock
) -> None:
    times: list[float] = []

    def reply(request: Any) -> tuple[int, dict[str, str], str]:
        times.append(clock.t)
        if len(times) < 3:
            return 204, {}, ""
        return 200, {"Content-Type": "text/csv"}, CSV_TWO_LEGS

    mock.add_callback(responses.POST, BASE + "stats/result", callback=reply)
    result = client.stats_wait("k", poll_every=1.0)
    assert len(result.rows) == 2
    assert len(times) == 3
    assert all(b - a >= 5.0 for a, b in zip(times, times[1:], strict=False))


def test_stats_wait_times_out(mock: responses.RequestsMock, client: MangoClient, clock: FakeClock) -> None:
    mock.add(responses.POST, BASE + "stats/result", status=204)
    with pytest.raises(MangoStatsTimeout):
        client.stats_wait("k", timeout=12)
    assert len(mock.calls) == 3  # t=0, 5, 10
    assert clock.t - 1000.0 <= 12


# ----------------------------------------------------------------------------------------- lifecycle


def test_client_owns_and_closes_its_session(mock: responses.RequestsMock) -> None:
    ok(mock, "incominglines", {"result": 1000, "lines": []})
    with MangoClient(KEY, SALT) as client:
        assert client.incoming_lines() == []
    assert "salt" not in repr(client).lower()


def test_missing_credentials_are_refused() -> None:
    with pytest.raises(ValueError, match="API key and the API salt"):
        MangoClient(KEY, "")
