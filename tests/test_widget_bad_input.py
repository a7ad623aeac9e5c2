"""Bad input at every widget endpoint, through the real `callbridge run` on SQLite and PostgreSQL: deep or
huge JSON, NUL characters and lone surrogates in any field, site key or status token, and wrong types are
each answered 4xx with a reason; nothing is stored, nothing is dialled, and no traceback reaches the log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from bridge.store.engine import make_engine
from tests.conftest import BACKENDS
from tests.test_admin_support import PASSWORD, csrf_of, panel_session
from tests.test_widget_e2e import SHOP, Bridge, bridge_on_each_backend, form_tokens
from widget.tables import widget_blocklist, widget_requests

SITE = "bad-input"
FIELDS = ("phone", "form_token", "visitor_id", "website", "page", "referrer", "lang")


def _bridge(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bridge]:
    for running in bridge_on_each_backend(request, tmp_path_factory):
        running.add_site(SITE, "--hours", "daily 00:00-24:00", "--min-fill", "1", "--limit", "ip=1000/600")
        yield running


bridge = pytest.fixture(scope="module", params=BACKENDS)(_bridge)


@pytest.fixture
def token(bridge: Bridge) -> str:
    return form_tokens(bridge, SITE, 1)[0]


@pytest.fixture(autouse=True)
def no_traceback_and_nothing_stored(bridge: Bridge) -> Iterator[None]:
    before = stored(bridge, widget_requests)
    yield
    assert stored(bridge, widget_requests) == before
    assert not [r for r in bridge.mango.received if r.path == "commands/callback_group"]
    log = bridge.daemon.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "unexpected error" not in log, log[-3000:]


def stored(bridge: Bridge, table: Any) -> int:
    engine = make_engine(bridge.daemon.env["CALLBRIDGE_DATABASE_URL"])
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


def send(
    bridge: Bridge, data: bytes, site: str | None = SITE, headers: dict[str, str] | None = None
) -> requests.Response:
    url = f"{bridge.url}/widget/callback" + (f"?site={site}" if site is not None else "")
    return requests.post(
        url,
        data=data,
        headers={"Origin": SHOP, "Content-Type": "application/json", **(headers or {})},
        timeout=15,
    )


def assert_refused(response: requests.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert words in response.json()["error"], response.json()


def valid(token: str, **fields: Any) -> dict[str, Any]:
    return {"phone": "+79165558001", "form_token": token, "visitor_id": "bad-input-0001", **fields}


def test_deep_json_is_refused(bridge: Bridge, token: str) -> None:
    deep_object = ('{"a":' * 1500 + "1" + "}" * 1500).encode()
    assert_refused(send(bridge, deep_object), 400, "nested too deeply")
    deep_field = json.dumps(valid(token, utm=None))[:-1] + ', "page": ' + "[" * 1500 + "]" * 1500 + "}"
    assert_refused(send(bridge, deep_field.encode()), 400, "nested too deeply")
    # Brackets inside strings do not count.
    assert send(bridge, json.dumps(valid(token, phone="[[[[[[[[[[[[")).encode()).status_code == 422


def test_oversized_bodies_get_413(bridge: Bridge, token: str) -> None:
    for size in (20 * 1024, 200 * 1024):
        body = json.dumps(valid(token, page="x" * size)).encode()
        assert_refused(send(bridge, body), 413, "too large")

    def chunks() -> Iterator[bytes]:
        yield b'{"page": "'
        for _ in range(40):
            yield b"x" * 1024
        yield b'"}'

    chunked = send(bridge, chunks())  # type: ignore[arg-type]
    assert chunked.status_code in (400, 411, 413), chunked.text
    assert chunked.json()["error"]


@pytest.mark.parametrize("field", [*FIELDS, "utm", "site"])
@pytest.mark.parametrize(("bad", "words"), [("\x00", "NUL character"), ("\ud800", "lone surrogate")])
def test_nul_and_lone_surrogates_in_any_field_get_400(
    bridge: Bridge, token: str, field: str, bad: str, words: str
) -> None:
    value = f"ab{bad}cd"
    if field == "utm":
        body = valid(token, utm={"utm_source": value})
    elif field == "site":
        body = valid(token, site=value)
    else:
        body = valid(token, **{field: value})
    # json.dumps writes both as \u escapes, which is how a client smuggles them in.
    response = send(bridge, json.dumps(body).encode(), site=None if field == "site" else SITE)
    assert_refused(response, 400, words)
    assert field.split(".")[0] in response.json()["error"] or field == "site"


def test_nul_in_site_keys_and_status_tokens_gets_400(bridge: Bridge, token: str) -> None:
    headers = {"Origin": SHOP}
    for key in ("bad%00input", "%00", "bad-input%00"):
        assert_refused(
            requests.get(f"{bridge.url}/widget/config?site={key}", headers=headers, timeout=10), 400, "NUL"
        )
        assert_refused(send(bridge, json.dumps(valid(token)).encode(), site=key), 400, "NUL")
        preflight = requests.options(
            f"{bridge.url}/widget/callback?site={key}",
            headers={**headers, "Access-Control-Request-Method": "POST"},
            timeout=10,
        )
        assert_refused(preflight, 400, "NUL")
    for status_token in ("abc%00def", "%00", "x" * 30 + "%00"):
        url = f"{bridge.url}/widget/status/{status_token}"
        assert_refused(requests.get(url, headers=headers, timeout=10), 400, "NUL")
        assert_refused(requests.options(url, headers=headers, timeout=10), 400, "NUL")
    # Not a token at all, or nobody's: 404 (a browser on the shop's page gets 403, no site knows it).
    for status_token in ("u" * 32, "a%0Ab", "a%20b"):
        assert requests.get(f"{bridge.url}/widget/status/{status_token}", timeout=10).status_code == 404


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"phone": 79165558001}, "'phone' must be a string"),
        ({"form_token": 5}, "'form_token' must be a string"),
        ({"visitor_id": True}, "'visitor_id' must be a string"),
        ({"website": 1}, "'website' must be a string"),
        ({"page": {}}, "'page' must be a string"),
        ({"referrer": ["https://x.example"]}, "'referrer' must be a string"),
        ({"lang": 7}, "'lang' must be a string"),
        ({"utm": [1]}, "'utm' must be an object"),
        ({"utm": "google"}, "'utm' must be an object"),
    ],
)
def test_wrong_types_get_400(bridge: Bridge, token: str, fields: dict[str, Any], words: str) -> None:
    assert_refused(send(bridge, json.dumps(valid(token, **fields)).encode()), 400, words)


def test_a_site_key_of_the_wrong_type_and_broken_bodies_get_400(bridge: Bridge, token: str) -> None:
    assert_refused(send(bridge, json.dumps(valid(token, site=123)).encode(), site=None), 400, "'site'")
    for raw, words in [
        (b"", "JSON object"),
        (b"[1, 2]", "JSON object"),
        (b'"phone"', "JSON object"),
        (b"phone=1", "not valid JSON"),
        (b'{"phone": "\xff\xfe"}', "not UTF-8"),
        (b'{"phone": "+79165558001"', "not valid JSON"),
    ]:
        assert_refused(send(bridge, raw), 400, words)


def test_nul_in_the_panel_site_key_and_block_list_is_refused(bridge: Bridge) -> None:
    bridge.daemon.create_user("badadmin", PASSWORD, "admin", lang="en")
    panel = panel_session(bridge.url, "badadmin", PASSWORD)
    for path in ("/admin/widget/bad%00input", "/admin/widget/bad%00input/delete"):
        assert panel.get(f"{bridge.url}{path}", timeout=10).status_code in (400, 404)
    before = stored(bridge, widget_blocklist)
    page = panel.get(f"{bridge.url}/admin/widget/blocked", timeout=10)
    refused = panel.post(
        f"{bridge.url}/admin/widget/blocked",
        data={
            "kind": "ip",
            "value": "203.0.113.9",
            "reason": "spam\x00bot",
            "csrf_token": csrf_of(page.text),
        },
        timeout=10,
    )
    assert refused.status_code == 400 and "NUL character" in refused.text
    assert stored(bridge, widget_blocklist) == before
