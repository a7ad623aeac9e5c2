"""Bad input at the read API (through `callbridge run`, on SQLite and PostgreSQL): tampered cursors, NUL
and unpaired surrogates, absurd limits and times each get a 400 with the reason, never a 500 or a logged
traceback; the `extension` and `number` filters take `_` and `%` literally."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import requests
from flask import Flask, request

from bridge.http_errors import ApiError, install_error_handlers
from tests.api_stack import AUTH, ApiStack, api_stack
from tests.conftest import BACKENDS

stack = pytest.fixture(scope="module", params=BACKENDS)(api_stack)


@pytest.fixture(scope="module")
def seeded(stack: ApiStack) -> Iterator[ApiStack]:
    """Two incoming calls answered at extension 101: customers 79151234567 and 79161234567."""
    stack.play("incoming_answered", seed=1, customer="79151234567", extensions=("101",))
    stack.play("incoming_answered", seed=2, customer="79161234567", extensions=("101",))
    yield stack
    assert stack.tracebacks() == []  # no bad input reached an unexpected-error handler


def b64(raw: str | bytes) -> str:
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def assert_400(response: requests.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["status"] == 400
    for word in words:
        assert word in body["error"], body


def entry_ids(response: requests.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {item["entry_id"] for item in response.json()["items"]}


def test_a_cursor_this_api_returned_pages_on(seeded: ApiStack) -> None:
    first = seeded.get("/api/calls", {"limit": "1"}).json()
    assert first["next_cursor"]
    second = seeded.get("/api/calls", {"limit": "1", "cursor": first["next_cursor"]}).json()
    assert {first["items"][0]["entry_id"], second["items"][0]["entry_id"]} == entry_ids(
        seeded.get("/api/calls")
    )


@pytest.mark.parametrize(
    ("cursor", "words"),
    [
        ("!!not-a-cursor!!", "base64url"),
        ("A" * 5000, "too long"),
        (b64("[" * 5000 + "]" * 5000), "too long"),  # too deep to decode: refused by its length
        ("A" * 1500, "base64url"),
        (b64("[" * 600 + "]" * 600), "base64url"),
        (b64("[" * 150 + "]" * 150), "position"),  # nested, short
        (b64("[" + "9" * 400 + ',"x"]'), "out of range"),  # an integer no float holds
        (b64("[" + "9" * 250 + ',"x"]'), "out of range"),
        (b64('[-1,"x"]'), "out of range"),
        (b64('[1e999,"x"]'), "out of range"),
        (b64('[NaN,"x"]'), "out of range"),
        (b64('[true,"x"]'), "not a number"),
        (b64('["1764000000","x"]'), "not a number"),
        (b64('[1764000000,"a\\u0000b"]'), "call id"),  # NUL inside the cursor's entry id
        (b64('[1764000000,"a\\ud800b"]'), "call id"),  # an unpaired surrogate
        (b64('[1764000000,"' + "x" * 200 + '"]'), "call id"),
        (b64("[1764000000,7]"), "call id"),
        (b64('{"started_at":1,"entry_id":"x"}'), "position"),
        (b64("[1764000000]"), "position"),
        (b64(b"\xff\xfe\x00garbage"), "decode"),
        (b64("not json at all"), "decode"),
        ("", None),  # empty: the first page
    ],
    ids=[
        "garbage",
        "huge",
        "deep-nesting-long",
        "long",
        "deep-nesting-over-400",
        "deep-nesting-short",
        "huge-int",
        "big-int",
        "negative",
        "infinity",
        "nan",
        "bool-time",
        "string-time",
        "nul-entry",
        "surrogate-entry",
        "long-entry",
        "int-entry",
        "object",
        "one-item",
        "not-utf8",
        "not-json",
        "empty",
    ],
)
def test_tampered_cursor_gets_400_with_the_reason(seeded: ApiStack, cursor: str, words: str | None) -> None:
    response = seeded.get("/api/calls", {"cursor": cursor})
    if words is None:
        assert response.status_code == 200, response.text
    else:
        assert_400(response, "'cursor'", words)


@pytest.mark.parametrize("name", ["cursor", "status", "direction", "extension", "number", "since", "limit"])
def test_nul_in_any_query_parameter_gets_400(seeded: ApiStack, name: str) -> None:
    assert_400(seeded.get("/api/calls", {name: "10\x001"}), f"'{name}'", "NUL")


def test_nul_in_a_parameter_name_or_path_gets_400(seeded: ApiStack) -> None:
    assert_400(seeded.get("/api/calls?x%00y=1"), "NUL")
    assert_400(seeded.get("/api/calls/abc%00def"), "'entry_id'", "NUL")
    assert_400(seeded.get("/api/calls/originate/abc%00def"), "'command_id'", "NUL")


@pytest.mark.parametrize("encoded", ["%ED%A0%80", "%ED%B0%80", "%F4%90%80%80", "%C0%80", "%FF"])
def test_undecodable_utf8_never_reaches_the_store(seeded: ApiStack, encoded: str) -> None:
    """Surrogates and overlong or invalid UTF-8 (werkzeug decodes them as U+FFFD): a 4xx, never a 500."""
    for path in (
        f"/api/calls?extension={encoded}",
        f"/api/calls?number=123{encoded}",
        f"/api/calls?cursor={encoded}",
        f"/api/calls?since={encoded}",
        f"/api/calls/{encoded}",
        f"/api/calls/originate/{encoded}",
    ):
        response = seeded.get(path)
        assert 400 <= response.status_code < 500, (path, response.text)
        assert "error" in response.json()


def test_long_parameter_gets_400(seeded: ApiStack) -> None:
    assert_400(seeded.get("/api/calls", {"extension": "1" * 5000}), "too long")


@pytest.mark.parametrize(
    "limit", ["0", "-1", "201", "99999999999999999999999", "1e3", "1_0", " 5", "５", "١٢", "", "0x10"]
)
def test_absurd_limit_gets_400(seeded: ApiStack, limit: str) -> None:
    assert_400(seeded.get("/api/calls", {"limit": limit}), "'limit' must be a whole number from 1 to 200")


@pytest.mark.parametrize(
    ("since", "words"),
    [
        ("1e999", "Unix seconds or an ISO 8601"),
        ("nan", "Unix seconds or an ISO 8601"),
        ("-5", "Unix seconds or an ISO 8601"),
        ("9" * 400, "Unix seconds or an ISO 8601"),
        ("999999999999", "out of range"),
        ("0001-01-01T00:00:00+14:00", "out of range"),
        ("2026-11-25T10:00:00", "time zone"),
    ],
)
def test_absurd_time_gets_400(seeded: ApiStack, since: str, words: str) -> None:
    assert_400(seeded.get("/api/calls", {"since": since}), "'since'", words)


def test_extension_filter_matches_literally(seeded: ApiStack) -> None:
    both = entry_ids(seeded.get("/api/calls", {"extension": "101"}))
    assert len(both) == 2
    assert entry_ids(seeded.get("/api/calls", {"extension": "1_1"})) == set()  # `_` is no wildcard
    assert entry_ids(seeded.get("/api/calls", {"extension": "10"})) == set()  # nor a prefix
    assert_400(seeded.get("/api/calls", {"extension": "10%"}), "'extension'")


def test_number_filter_matches_the_end_literally(seeded: ApiStack) -> None:
    everyone = entry_ids(seeded.get("/api/calls"))
    assert entry_ids(seeded.get("/api/calls", {"number": "4567"})) == everyone
    one = entry_ids(seeded.get("/api/calls", {"number": "+7 (915) 123-45-67"}))
    assert len(one) == 1
    assert entry_ids(seeded.get("/api/calls", {"number": "7915"})) == set()  # the end, not the start
    for wildcard in ("7_", "791_", "%4567", "7915%", "79_5123456_"):
        assert_400(seeded.get("/api/calls", {"number": wildcard}), "'number'", "no wildcards")


def test_werkzeug_errors_are_json(seeded: ApiStack) -> None:
    url = seeded.url
    not_allowed = requests.delete(f"{url}/api/calls", headers=AUTH, timeout=10)
    assert not_allowed.status_code == 405 and not_allowed.json()["status"] == 405
    assert "GET" in not_allowed.headers["Allow"]
    unknown = requests.get(f"{url}/api/no-such-thing", headers=AUTH, timeout=10)
    assert unknown.status_code == 404 and unknown.json() == {"error": "no such endpoint", "status": 404}
    too_large = requests.post(
        f"{url}/api/calls/originate",
        data=b'{"number": "' + b"1" * 200_000 + b'"}',
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=10,
    )
    assert too_large.status_code == 413 and too_large.json()["status"] == 413
    broken = requests.post(
        f"{url}/api/calls/originate",
        data=b'{"number": ',
        headers={**AUTH, "Content-Type": "application/json"},
        timeout=10,
    )
    assert broken.status_code == 400 and "send JSON" in broken.json()["error"]


def test_unexpected_errors_are_500_and_logged_and_werkzeug_errors_keep_their_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = Flask("errors")
    install_error_handlers(app)

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("bug")

    @app.post("/json")
    def body() -> str:
        return str(request.get_json())

    @app.get("/refused")
    def refused() -> str:
        raise ApiError(422, "no")

    client = app.test_client()
    crashed = client.get("/boom")
    assert crashed.status_code == 500 and crashed.json["status"] == 500
    assert "RuntimeError" in caplog.text
    caplog.clear()
    bad_json = client.post("/json", data="{", content_type="application/json")
    assert bad_json.status_code == 400 and "not well-formed" in bad_json.json["error"]
    assert client.get("/refused").json == {"error": "no", "status": 422}
    assert client.delete("/refused").headers["Allow"]
    assert caplog.text == ""  # bad input is answered, never logged as a crash
