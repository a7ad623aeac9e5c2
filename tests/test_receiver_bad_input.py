"""Bad input at the Mango receiver: a clear error, nothing stored, never a 500 (through the real daemon)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bridge.pbx.mango.signing import signed_form
from bridge.store.engine import make_engine
from bridge.store.schema import raw_events
from tests.daemon import API_KEY, API_SALT, Daemon

CALL_EVENT = {
    "entry_id": "MTYxNzM5NjY0OTE=",
    "call_id": "MToxMDA4NjI3Nzo1MDI6NjQ0MjQzNTM5",
    "timestamp": 1670060542,
    "seq": 2,
    "call_state": "Connected",
    "location": "abonent",
    "from": {"number": "79607164646"},
    "to": {"extension": "222", "number": "79776307393", "line_number": "74951234567"},
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("bad-input")
    instance = Daemon(f"sqlite:///{workdir / 'cb.db'}", workdir).start()
    yield instance
    instance.stop()


def stored_count(daemon: Daemon) -> int:
    engine = make_engine(daemon.env["CALLBRIDGE_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(raw_events)).scalar_one()
    finally:
        engine.dispose()


def post(daemon: Daemon, path: str, data: object = None, **kwargs: object) -> requests.Response:
    return requests.post(f"{daemon.mango_url}/{path}", data=data, timeout=10, **kwargs)  # type: ignore[arg-type]


def assert_error(response: requests.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert words in response.json()["error"]


def test_signed_event_is_accepted_and_stored_once(daemon: Daemon) -> None:
    before = stored_count(daemon)
    form = signed_form(API_KEY, API_SALT, {**CALL_EVENT, "call_id": "accepted-once"})
    assert post(daemon, "events/call", form).status_code == 200
    assert post(daemon, "events/call", form).status_code == 200  # a resend is acknowledged, not stored again
    assert stored_count(daemon) == before + 1


@pytest.mark.parametrize(
    ("mutate", "status", "words"),
    [
        (lambda f: {**f, "sign": "0" * 64}, 403, "signature"),
        (lambda f: {**f, "vpbx_api_key": "someone-else"}, 403, "vpbx_api_key"),
        (lambda f: {k: v for k, v in f.items() if k != "sign"}, 400, "missing form field(s): sign"),
        (lambda f: {k: v for k, v in f.items() if k != "json"}, 400, "json"),
        (lambda f: signed_form(API_KEY, API_SALT, '{"entry_id": "x", '), 400, "not valid JSON"),
        (lambda f: signed_form(API_KEY, API_SALT, "[1, 2]"), 400, "JSON object"),
        (
            lambda f: signed_form(API_KEY, API_SALT, {k: v for k, v in CALL_EVENT.items() if k != "call_id"}),
            400,
            "missing field 'call_id'",
        ),
        (
            lambda f: signed_form(API_KEY, API_SALT, {**CALL_EVENT, "seq": "two"}),
            400,
            "'seq' must be an integer",
        ),
        (
            lambda f: signed_form(API_KEY, API_SALT, {**CALL_EVENT, "call_state": "Exploded"}),
            400,
            "call_state",
        ),
    ],
    ids=[
        "wrong-sign",
        "wrong-key",
        "no-sign",
        "no-json",
        "broken-json",
        "not-object",
        "missing-field",
        "bad-seq",
        "bad-state",
    ],
)
def test_bad_notification_is_refused_and_nothing_stored(
    daemon: Daemon, mutate, status: int, words: str
) -> None:
    before = stored_count(daemon)
    form = signed_form(API_KEY, API_SALT, {**CALL_EVENT, "call_id": "never-stored"})
    assert_error(post(daemon, "events/call", mutate(form)), status, words)
    assert stored_count(daemon) == before


def test_wrong_content_type_gets_415(daemon: Daemon) -> None:
    before = stored_count(daemon)
    response = post(daemon, "events/call", json=signed_form(API_KEY, API_SALT, CALL_EVENT))
    assert_error(response, 415, "expected a form")
    assert stored_count(daemon) == before


def test_huge_body_gets_413(daemon: Daemon) -> None:
    before = stored_count(daemon)
    payload = {**CALL_EVENT, "padding": "x" * (70 * 1024)}
    assert_error(post(daemon, "events/call", signed_form(API_KEY, API_SALT, payload)), 413, "too large")
    assert stored_count(daemon) == before


def test_chunked_body_over_the_cap_gets_413(daemon: Daemon) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"vpbx_api_key=x&json="
        for _ in range(100):
            yield b"a" * 1024

    response = requests.post(
        f"{daemon.mango_url}/events/call",
        data=chunks(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert_error(response, 413, "too large")


def test_unknown_path_gets_404(daemon: Daemon) -> None:
    response = post(daemon, "events/call_state_changed", signed_form(API_KEY, API_SALT, CALL_EVENT))
    assert_error(response, 404, "unknown Mango notification path")


def test_ping_answers_200_and_stores_nothing(daemon: Daemon) -> None:
    before = stored_count(daemon)
    assert post(daemon, "ping", signed_form(API_KEY, API_SALT, {})).status_code == 200
    assert requests.get(daemon.mango_url, timeout=5).json()["success"] is True
    assert stored_count(daemon) == before


def test_every_documented_notification_path_is_accepted(daemon: Daemon) -> None:
    samples = {
        "events/summary": {
            "entry_id": "e1",
            "call_direction": 1,
            "from": {"number": "79161234567"},
            "to": {"extension": "101"},
            "line_number": "74951234567",
            "create_time": 1,
            "forward_time": 1,
            "talk_time": 2,
            "end_time": 3,
            "entry_result": 1,
            "disconnect_reason": 1110,
        },
        "events/recording": {
            "entry_id": "e1",
            "call_id": "c1",
            "recording_id": "r1",
            "recording_state": "Completed",
            "seq": 3,
            "timestamp": 3,
            "extension": "101",
            "completion_code": 1000,
            "recipient": "Cloud",
        },
        "events/record/added": {
            "entry_id": "e1",
            "product_id": 1,
            "user_id": -1,
            "timestamp": 4,
            "recording_id": "r1",
        },
        "events/dtmf": {
            "entry_id": "e1",
            "call_id": "c1",
            "seq": 1,
            "timestamp": 1,
            "dtmf": "12",
            "location": "ivr.2",
        },
        "events/sms": {"command_id": "cmd-1", "timestamp": 5, "reason": 1000},
        "result/callback": {"command_id": "cmd-2", "result": 1000},
        "result/callback_group": {"command_id": "cmd-3", "result": 1000},
        "result/call/hangup": {"command_id": "cmd-4", "result": 4101},
        "result/route": {"command_id": "cmd-5", "result": 1000},
        "result/transfer": {"command_id": "cmd-6", "result": 1000},
        "result/recording/start": {"command_id": "cmd-7", "result": 1000},
        "result/sms": {"command_id": "cmd-8", "result": 1000},
        "result/stat": {"key": "k1", "request_id": "r1"},
    }
    before = stored_count(daemon)
    for path, payload in samples.items():
        response = post(daemon, path, signed_form(API_KEY, API_SALT, payload))
        assert response.status_code == 200, (path, response.text)
    assert stored_count(daemon) == before + len(samples)


def test_vendor_quirks_are_accepted(daemon: Daemon) -> None:
    quirky = {
        **CALL_EVENT,
        "call_id": "quirky-leg",
        "seq": "1",
        "timestamp": "1670060542",
        "locaton": "abonent",
        "callback_initiator": "MissGroup\u0421allCallback",
        "from": {"number": "79607164646", "line_number": "74950000000"},
        "unknown_field": {"kept": True},
    }
    quirky.pop("location")
    response = post(daemon, "events/call", signed_form(API_KEY, API_SALT, quirky))
    assert response.status_code == 200, response.text


fuzz_forms = st.dictionaries(
    st.sampled_from(["vpbx_api_key", "sign", "json", "extra", "json[]"]),
    st.one_of(
        st.text(max_size=200),
        st.just(API_KEY),
        st.just(json.dumps(CALL_EVENT)),
        st.builds(lambda d: json.dumps(d), st.dictionaries(st.text(max_size=10), st.integers())),
    ),
    max_size=5,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(form=fuzz_forms, path=st.sampled_from(["events/call", "events/summary", "result/callback", "ping"]))
def test_fuzzed_forms_never_500_and_store_nothing(daemon: Daemon, form: dict[str, str], path: str) -> None:
    before = stored_count(daemon)
    response = post(daemon, path, form)
    assert response.status_code in (400, 403, 404, 411, 413, 415), response.text
    assert "error" in response.json()
    assert stored_count(daemon) == before


def test_allow_list_refuses_other_sources(tmp_path: Path) -> None:
    daemon = Daemon(
        f"sqlite:///{tmp_path / 'cb.db'}", tmp_path, env={"CALLBRIDGE_MANGO_ALLOWED_IPS": "mango"}
    ).start()
    try:
        response = post(daemon, "events/call", signed_form(API_KEY, API_SALT, CALL_EVENT))
        assert_error(response, 403, "source address not allowed")
    finally:
        daemon.stop()
    assert stored_count(daemon) == 0
