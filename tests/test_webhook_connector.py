"""The webhook connector: config, the shared HTTP layer, and end to end against a real loopback receiver."""

from __future__ import annotations

import email.utils
import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import click
import pytest
import requests
import responses
import sqlalchemy as sa
from click.testing import CliRunner
from pydantic import ValidationError

from bridge.connector_api import CALL_EVENT_TYPES, PermanentDeliveryError, RetryableDeliveryError
from bridge.connector_api.http import make_session, parse_retry_after, redact, safe_host, send
from bridge.outbox.cli import deliveries
from bridge.outbox.dispatcher import Dispatcher
from bridge.outbox.enqueue import enqueue
from bridge.outbox.queries import counts, list_deliveries
from bridge.outbox.retry import RetryPolicy
from bridge.registry import build_connectors
from connectors.webhook import WebhookConfig, WebhookConnector, build_payload, encode_body, sign, verify

try:
    from outbox_fixtures import db_engine, make_event  # noqa: F401
except ImportError:  # tests/ became a package
    from tests.outbox_fixtures import db_engine, make_event  # noqa: F401

SECRET = "whsec-0123456789abcdef"
SECRET_PATH = "/hooks/Zx9secretpathtoken"


# ---------------------------------------------------------------------------------------------- receiver


@dataclass
class Hit:
    at: float  # time.monotonic() when the request arrived
    key: str
    status: int
    entry_id: str | None = None
    type: str | None = None


@dataclass
class Receiver:
    """A webhook receiver as the docs tell people to write one: verify, deduplicate, then process.

    `script` holds the answers for the next requests (status, headers), whatever they carry;
    `fail_after_processing` names keys whose first delivery is processed but answered 503 (a receiver that
    crashed before acknowledging), so the redelivery must be caught by the dedupe layer.
    """

    secret: str = SECRET
    default_status: int = 204
    delay: float = 0.0
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    fail_after_processing: set[str] = field(default_factory=set)
    hits: list[Hit] = field(default_factory=list)
    processed: list[dict[str, Any]] = field(default_factory=list)
    processed_count: Counter = field(default_factory=Counter)
    duplicates: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def answer(self, headers: Any, body: bytes) -> tuple[int, dict[str, str]]:
        now = time.monotonic()
        key = headers.get("Idempotency-Key", "")
        with self.lock:
            status, extra = self._answer(headers, body, key)
            payload = json.loads(body) if status < 300 or status == 503 else {}
            self.hits.append(Hit(now, key, status, payload.get("entry_id"), payload.get("type")))
        return status, extra

    def _answer(self, headers: Any, body: bytes, key: str) -> tuple[int, dict[str, str]]:
        timestamp = headers.get("X-Callbridge-Timestamp", "")
        expected = (
            "sha256="
            + hmac.new(self.secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
        )
        if not hmac.compare_digest(expected, headers.get("X-Callbridge-Signature", "")):
            return 401, {}
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
            return 401, {}
        if headers.get("Content-Type") != "application/json":
            return 415, {}
        if self.script:
            return self.script.pop(0)
        if self.default_status >= 300:
            return self.default_status, {}
        if self.processed_count[key]:
            self.duplicates[key] += 1
            return 200, {}
        self.processed_count[key] += 1
        self.processed.append(json.loads(body))
        if key in self.fail_after_processing:
            self.fail_after_processing.discard(key)
            return 503, {}
        return self.default_status, {}

    def keys_in_order(self, entry_id: str) -> list[str]:
        return [p["id"] for p in self.processed if p["entry_id"] == entry_id]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if state.delay:
                time.sleep(state.delay)
            status, extra = state.answer(self.headers, body)
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that timed out and hung up

    server = Server(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}{SECRET_PATH}?token=qs-secret"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def _hook(url: str, **settings: Any) -> WebhookConnector:
    return build_connectors({"webhook": {"url": url, "secret": SECRET, **settings}})["webhook"]


def _wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _cli(engine: sa.Engine) -> click.Group:
    @click.group()
    @click.pass_context
    def root(ctx: click.Context) -> None:
        ctx.obj = SimpleNamespace(engine=engine)

    root.add_command(deliveries)
    return root


class _Running:
    """`Dispatcher.run_forever` in a thread, for a `with` block."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=dispatcher.run_forever, args=(self.stop,), kwargs={"idle_sleep": 0.01}
        )

    def __enter__(self) -> Dispatcher:
        self.thread.start()
        return self.dispatcher

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(20)
        self.dispatcher.close()
        assert not self.thread.is_alive()


FAST_POLICY = RetryPolicy(base=0.05, cap=0.2, min_delay=0.01, max_attempts=12)


# ---------------------------------------------------------------------------------------------- config


def test_config_defaults_and_secret_never_printed():
    config = WebhookConfig(url="https://example.com/hook", secret=SECRET)
    assert (config.timeout, config.rate_per_second, config.event_types) == (10.0, 20.0, None)
    for text in (repr(config), str(config), config.model_dump_json(), repr(_hook("https://example.com/h"))):
        assert SECRET not in text


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"url": "example.com/hook"}, "url: Input should be a valid URL"),
        ({"url": "ftp://example.com/hook"}, "url: URL scheme should be 'http' or 'https'"),
        ({"secret": "short"}, "secret: should be at least 16 characters long"),
        ({"event_types": ["call.rang"]}, "event_types: unknown event type 'call.rang'"),
        ({"event_types": []}, "event_types: should name at least one event type"),
        ({"timeout": 0}, "timeout: Input should be greater than 0"),
        ({"rate_per_second": -1}, "rate_per_second: Input should be greater than 0"),
    ],
)
def test_config_errors_are_specific(settings, problem):
    with pytest.raises(Exception) as info:
        build_connectors({"webhook": {"url": "https://example.com/hook", "secret": SECRET, **settings}})
    assert f"connectors.webhook.{problem}" in str(info.value)
    assert SECRET not in str(info.value) and "short" not in str(info.value).split(": ", 1)[0]


def test_event_types_from_an_environment_variable_string():
    assert WebhookConfig(
        url="https://e.x/h", secret=SECRET, event_types="call.ended, call.missed"
    ).event_types == [
        "call.ended",
        "call.missed",
    ]
    assert WebhookConfig(url="https://e.x/h", secret=SECRET, event_types='["call.missed"]').event_types == [
        "call.missed"
    ]
    with pytest.raises(ValidationError):
        WebhookConfig(url="https://e.x/h", secret=SECRET, event_types="call.nope")


def test_instance_carries_the_per_config_event_filter_and_rate_limit():
    every = _hook("https://e.x/h")
    missed = _hook("https://e.x/h", event_types=["call.missed"], rate_per_second=2.5)
    assert all(every.wants(make_event(type_=t)) for t in CALL_EVENT_TYPES)
    assert missed.wants(make_event(type_="call.missed")) and not missed.wants(make_event(type_="call.ended"))
    assert (every.rate_limit.rate, every.rate_limit.burst) == (20.0, 1)
    assert (missed.rate_limit.rate, missed.rate_limit.burst) == (2.5, 1)
    assert WebhookConnector.rate_limit is None and WebhookConnector.event_types is None  # class untouched


# ---------------------------------------------------------------------------------------------- signing


def test_signature_is_hmac_sha256_over_timestamp_dot_body():
    body = b'{"id":"webhook:E1:call.ended"}'
    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign(SECRET, 1700000000, body) == f"sha256={expected}"
    assert verify(SECRET, "1700000000", body, f"sha256={expected}", now=1700000100)
    assert not verify(SECRET, "1700000000", body, f"sha256={expected}", now=1700000301)  # replay window
    assert not verify(SECRET, "1700000000", body + b" ", f"sha256={expected}", now=1700000000)
    assert not verify("another-secret-1234", "1700000000", body, f"sha256={expected}", now=1700000000)
    assert not verify(SECRET, "soon", body, f"sha256={expected}", now=1700000000)
    assert not verify(SECRET, "1700000000", body, "sha256=ünïcode", now=1700000000)


def test_payload_shape():
    event = make_event("E1", "call.answered", key="call.answered:leg-2", extension="101", call_id="leg-2")
    payload = build_payload("webhook", event)
    assert payload == {
        "id": "webhook:E1:call.answered:leg-2",
        "type": "call.answered",
        "entry_id": "E1",
        "occurred_at": event.occurred_at,
        "data": event.to_dict(),
    }
    assert json.loads(encode_body(payload)) == payload
    assert b" " not in encode_body({"a": [1, 2], "b": "x"})


# ---------------------------------------------------------------------------------------------- HTTP layer


URL = "https://crm.example.com/rest/1/t0kenInPath/crm.add?auth=qs-token"
IN_30_SECONDS = "<an HTTP-date 30 s from now>"


@pytest.mark.parametrize(
    ("answer", "outcome", "retry_after", "words"),
    [
        ({"status": 200}, None, None, None),
        ({"status": 201}, None, None, None),
        ({"status": 500}, RetryableDeliveryError, None, "HTTP 500 Internal Server Error"),
        ({"status": 502}, RetryableDeliveryError, None, "HTTP 502"),
        ({"status": 503, "headers": {"Retry-After": "7"}}, RetryableDeliveryError, 7.0, "Retry-After 7 s"),
        (
            {"status": 429, "headers": {"Retry-After": IN_30_SECONDS}},
            RetryableDeliveryError,
            30.0,
            "HTTP 429",
        ),
        ({"status": 429, "headers": {"Retry-After": "soon"}}, RetryableDeliveryError, None, "HTTP 429"),
        ({"status": 408}, RetryableDeliveryError, None, "HTTP 408"),
        ({"status": 400}, PermanentDeliveryError, None, "HTTP 400 Bad Request"),
        ({"status": 401}, PermanentDeliveryError, None, "HTTP 401 Unauthorized"),
        ({"status": 404}, PermanentDeliveryError, None, "HTTP 404"),
        ({"status": 422}, PermanentDeliveryError, None, "HTTP 422"),
        ({"body": requests.ConnectionError("Connection refused")}, RetryableDeliveryError, None, "refused"),
        ({"body": requests.ConnectTimeout("timed out")}, RetryableDeliveryError, None, "connect timeout"),
        (
            {"body": requests.ReadTimeout(f"read timed out {URL}")},
            RetryableDeliveryError,
            None,
            "read timeout",
        ),
        ({"body": requests.exceptions.SSLError("bad cert")}, RetryableDeliveryError, None, "TLS"),
        (
            {"body": requests.exceptions.ChunkedEncodingError("x")},
            RetryableDeliveryError,
            None,
            "request failed",
        ),
    ],
)
@responses.activate
def test_send_classifies_vendor_answers(answer, outcome, retry_after, words):
    if answer.get("headers", {}).get("Retry-After") == IN_30_SECONDS:
        answer = {**answer, "headers": {"Retry-After": email.utils.formatdate(time.time() + 30, usegmt=True)}}
    responses.add(responses.POST, URL, **answer)
    session = make_session()
    if outcome is None:
        assert send(session, "post", URL, json={"x": 1}).status_code == answer["status"]
        return
    with pytest.raises(outcome) as info:
        send(session, "post", URL, json={"x": 1})
    message = str(info.value)
    assert message.startswith("POST https://crm.example.com: ")
    assert words in message
    for secret in ("t0kenInPath", "qs-token", "/rest/"):
        assert secret not in message
    if retry_after is None:
        assert getattr(info.value, "retry_after", None) is None
    else:
        assert info.value.retry_after == pytest.approx(retry_after, abs=2)
    if "status" in answer:
        assert info.value.status == answer["status"] and info.value.response is not None


def test_send_rejects_a_bad_url_permanently():
    with pytest.raises(PermanentDeliveryError, match="URL scheme"):
        send(make_session(), "GET", "example.com/x")


def test_make_session_sets_user_agent_and_no_transport_retries():
    session = make_session(user_agent="callbridge-test/1", pool=3)
    assert session.headers["User-Agent"] == "callbridge-test/1"
    adapter = session.get_adapter("https://example.com")
    assert adapter.max_retries.total == 0


def test_parse_retry_after():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412490.0) == 0.0
    for bad in (None, "", "-5", "soon", "Wed, 99 Foo 2015"):
        assert parse_retry_after(bad) is None


def test_redact_and_safe_host():
    assert safe_host("https://user:pw@crm.example.com:8443/path?q=1") == "https://crm.example.com:8443"
    assert safe_host("nonsense") == "<invalid url>"
    text = redact(
        "GET https://u:p@x.bitrix24.ru/rest/1/abc/ failed: Authorization: Bearer eyJhbGciOi.J9x "
        "api_key=AKIA123 token: tk_live_1 id 4f9a8c7d6e5b4a39281706f5e4d3c2b1a0 ok"
    )
    assert text.startswith("GET https://x.bitrix24.ru/*** failed:")
    assert redact(text) == text  # idempotent
    for secret in (
        "u:p",
        "/rest/1/",
        "eyJhbGciOi",
        "AKIA123",
        "tk_live_1",
        "4f9a8c7d6e5b4a39281706f5e4d3c2b1a0",
    ):
        assert secret not in text
    assert text.endswith(" ok")
    assert len(redact("x" * 1000, 50)) == 50


# ------------------------------------------------------------------------------------------ handle / check


def test_handle_posts_the_signed_event(receiver):
    hook = _hook(receiver.url)
    event = make_event("E1", "call.ended", duration=42, extensions=("101", "102"))
    hook.handle(event, refs=None)  # type: ignore[arg-type]
    assert receiver.hits[-1].status == 204
    assert receiver.processed == [build_payload("webhook", event)]
    assert receiver.processed[0]["data"]["extensions"] == ["101", "102"]
    assert receiver.processed_count["webhook:E1:call.ended"] == 1


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (503, RetryableDeliveryError),
        (429, RetryableDeliveryError),
        (408, RetryableDeliveryError),
        (400, PermanentDeliveryError),
        (410, PermanentDeliveryError),
        (302, PermanentDeliveryError),
    ],
)
def test_handle_classifies_receiver_answers(receiver, status, outcome):
    receiver.default_status = status
    with pytest.raises(outcome) as info:
        _hook(receiver.url).handle(make_event(), refs=None)  # type: ignore[arg-type]
    assert f"HTTP {status}" in str(info.value)
    assert "secretpathtoken" not in str(info.value) and "qs-secret" not in str(info.value)


def test_wrong_secret_is_a_permanent_error(receiver):
    receiver.secret = "the-receivers-other-secret"
    with pytest.raises(PermanentDeliveryError, match="HTTP 401"):
        _hook(receiver.url).handle(make_event(), refs=None)  # type: ignore[arg-type]


def test_slow_receiver_is_a_retryable_timeout(receiver):
    receiver.delay = 1.0
    with pytest.raises(RetryableDeliveryError, match="read timeout"):
        _hook(receiver.url, timeout=0.2).handle(make_event(), refs=None)  # type: ignore[arg-type]


def test_check_pings_and_reports_in_plain_words(receiver):
    status = _hook(receiver.url).check()
    assert status.startswith(
        f"The receiver at {receiver.url.split('/hooks')[0]} accepted a signed ping (HTTP 204"
    )
    ping = receiver.processed[-1]
    assert (
        ping["type"] == "ping" and ping["entry_id"] == "ping" and ping["id"].startswith("webhook:ping:ping:")
    )


def test_check_explains_failures(receiver):
    receiver.secret = "the-receivers-other-secret"
    with pytest.raises(PermanentDeliveryError, match="check that it uses the same secret"):
        _hook(receiver.url).check()
    receiver.secret, receiver.default_status = SECRET, 404
    with pytest.raises(PermanentDeliveryError, match="answered 404 Not Found: check the path"):
        _hook(receiver.url).check()
    receiver.default_status = 503
    with pytest.raises(RetryableDeliveryError, match="reachable but failing .HTTP 503"):
        _hook(receiver.url).check()
    with pytest.raises(
        RetryableDeliveryError, match=r"Could not reach http://127.0.0.1:9: connection failed"
    ):
        _hook("http://127.0.0.1:9/hook").check()


# ---------------------------------------------------------------------------------------------- end to end


def _events(calls: int, steps: list[str]) -> list:
    return [
        make_event(f"call-{c}", step, key=f"{step}:{n}") for c in range(calls) for n, step in enumerate(steps)
    ]


STEPS = ["call.ringing", "call.answered", "call.transferred", "call.ended", "call.recording_ready"]


def test_end_to_end_every_event_arrives_once_in_order_within_the_rate(db_engine, receiver):
    rate = 20.0
    hook = _hook(receiver.url, rate_per_second=rate)
    receiver.script = [(503, {})] * 3 + [(429, {"Retry-After": "1"})]
    flaky_key = "webhook:call-2:call.answered:1"
    receiver.fail_after_processing = {flaky_key}
    events = _events(4, STEPS)
    with db_engine.begin() as conn:
        assert enqueue(conn, events, [hook], now=time.time()) == 20
    with _Running(Dispatcher(db_engine, {"webhook": hook}, policy=FAST_POLICY)):
        assert _wait_for(lambda: counts(db_engine)["done"] == 20), counts(db_engine)

    # Everything arrived, each key processed exactly once, in order per call.
    expected = {f"webhook:{e.entry_id}:{e.key}" for e in events}
    assert set(receiver.processed_count) == expected
    assert set(receiver.processed_count.values()) == {1}
    assert receiver.duplicates == Counter({flaky_key: 1})  # redelivered after the lost ack, deduplicated
    for c in range(4):
        assert receiver.keys_in_order(f"call-{c}") == [
            f"webhook:call-{c}:{s}:{n}" for n, s in enumerate(STEPS)
        ]

    # Retry-After respected: the key that got 429 came back no sooner than a second later, and the
    # connector as a whole paused (at most a request already in flight slipped into that second).
    hits = sorted(receiver.hits, key=lambda h: h.at)
    limited = next(h for h in hits if h.status == 429)
    again = next(h for h in hits if h.key == limited.key and h.at > limited.at)
    assert again.at - limited.at >= 1.0 - 0.02
    assert sum(1 for h in hits if limited.at < h.at < limited.at + 0.95) <= 1

    # The rate was never exceeded (burst 1; one request of slack for network jitter).
    times = [h.at for h in hits]
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            assert (j - i) <= 1 + rate * (times[j] - times[i]) + 1, (i, j, times[j] - times[i])
    rows = list_deliveries(db_engine, limit=100)
    assert all(r.status == "done" and r.delivered_at for r in rows)
    assert sorted(r.attempts for r in rows)[-5:] != [1] * 5  # some rows needed retries


def test_end_to_end_dead_after_the_budget_then_replayed_from_the_cli(db_engine, receiver):
    receiver.default_status = 500
    hook = _hook(receiver.url, rate_per_second=200)
    policy = RetryPolicy(base=0.02, cap=0.05, min_delay=0.01, max_attempts=3)
    events = _events(2, ["call.ringing", "call.ended"])
    with db_engine.begin() as conn:
        enqueue(conn, events, [hook], now=time.time())
    with _Running(Dispatcher(db_engine, {"webhook": hook}, policy=policy)) as dispatcher:
        assert _wait_for(lambda: counts(db_engine)["dead"] == 4), counts(db_engine)
        dead = list_deliveries(db_engine, status="dead")
        assert {r.attempts for r in dead} == {3}
        for row in dead:
            assert row.last_error.startswith("gave up after 3 attempts: POST http://127.0.0.1:")
            assert "HTTP 500" in row.last_error
            assert "secretpathtoken" not in row.last_error and "qs-secret" not in row.last_error
        assert Counter(h.key for h in receiver.hits) == Counter(
            {f"webhook:{e.entry_id}:{e.key}": 3 for e in events}
        )

        receiver.default_status = 204
        result = CliRunner().invoke(
            _cli(db_engine), ["deliveries", "retry", "--all-dead", "--connector", "webhook"]
        )
        assert result.exit_code == 0, result.output
        assert "Requeued 4 dead deliveries" in result.output
        dispatcher.wake()
        assert _wait_for(lambda: counts(db_engine)["done"] == 4), counts(db_engine)
    assert set(receiver.processed_count.values()) == {1} and len(receiver.processed_count) == 4
    for c in range(2):
        assert receiver.keys_in_order(f"call-{c}") == [
            f"webhook:call-{c}:call.ringing:0",
            f"webhook:call-{c}:call.ended:1",
        ]


def test_end_to_end_rejected_signature_is_dead_at_once(db_engine, receiver):
    receiver.secret = "the-receivers-other-secret"
    hook = _hook(receiver.url)
    with db_engine.begin() as conn:
        enqueue(conn, [make_event("E1", "call.missed")], [hook], now=time.time())
    with _Running(Dispatcher(db_engine, {"webhook": hook}, policy=FAST_POLICY)):
        assert _wait_for(lambda: counts(db_engine)["dead"] == 1)
    (row,) = list_deliveries(db_engine)
    assert row.attempts == 1
    assert row.last_error.endswith(": HTTP 401 Unauthorized")
    assert SECRET not in row.last_error
