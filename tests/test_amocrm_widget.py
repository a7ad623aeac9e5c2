"""The amoCRM widget's parts without the daemon: one-time token checks, the hooks' CORS preflight (in the
hooks app the daemon builds for the connector), the click's and the live panel session's answers, and
the package (also from the command line), read back."""

from __future__ import annotations

import io
import json
import struct
import time
import zipfile
from pathlib import Path

import jwt
import pytest
from click.testing import CliRunner

from bridge.cli import cli
from bridge.connector_api.testing import MemoryState, context
from bridge.connector_hooks import hooks_app
from connectors.amocrm import AmoCrmConnector
from connectors.amocrm.widget_package import LOGOS, build_package
from connectors.amocrm.widget_token import WidgetTokenError, WidgetTokens
from tests.amocrm_tokens import one_time_token

ACCOUNT = "https://example.amocrm.ru"
SECRET = "integration-secret-" + "q" * 40
PUBLIC = "https://calls.example.com"
CALL = "/connectors/amocrm/widget/call"


def tokens() -> WidgetTokens:
    return WidgetTokens(SECRET, ACCOUNT)


def test_a_token_made_as_amocrm_makes_it_names_the_user_and_the_account() -> None:
    user = tokens().verify(one_time_token(SECRET, ACCOUNT, 1001, account_id=777))
    assert (user.user_id, user.account_id, user.issuer) == ("1001", "777", ACCOUNT)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: one_time_token("wrong-" + SECRET, ACCOUNT, 1), "bad signature"),
        (lambda: one_time_token(SECRET, ACCOUNT, 1, issued_at=time.time() - 300), "expired"),
        (lambda: one_time_token(SECRET, ACCOUNT, 1, nbf=int(time.time()) + 300), "not valid yet"),
        (lambda: one_time_token(SECRET, "https://other.amocrm.ru", 1), "another account"),
        (lambda: one_time_token(SECRET, "https://example.amocrm.ru:8443", 1), "another account"),
        (lambda: one_time_token(SECRET, ACCOUNT, 1, user_id=None), "'user_id'"),
        (lambda: one_time_token(SECRET, ACCOUNT, 1, jti=None), "'jti'"),
        (lambda: one_time_token(SECRET, ACCOUNT, 1, user_id="admin"), "user_id"),
        (lambda: jwt.encode({"iss": ACCOUNT, "user_id": 1}, None, algorithm="none"), "malformed"),
        (lambda: jwt.encode({"iss": ACCOUNT}, SECRET * 2, algorithm="HS512"), "malformed"),
        (lambda: "not.a.jwt", "malformed"),
        (lambda: "", "missing"),
    ],
)
def test_a_token_that_cannot_be_trusted_is_refused_with_the_reason(make, reason: str) -> None:
    with pytest.raises(WidgetTokenError) as info:
        tokens().verify(make())
    assert reason in str(info.value)


def test_a_token_is_accepted_once() -> None:
    checker, token = tokens(), one_time_token(SECRET, ACCOUNT, 5)
    checker.verify(token)
    with pytest.raises(WidgetTokenError, match="already used"):
        checker.verify(token)
    assert SECRET not in repr(checker)


def test_a_token_used_in_one_worker_is_refused_in_another_and_forgotten_once_expired() -> None:
    shared, now = MemoryState(), [time.time()]
    first, second = (WidgetTokens(SECRET, ACCOUNT, state=lambda: shared, clock=lambda: now[0]) for _ in "ab")
    token = one_time_token(SECRET, ACCOUNT, 5)
    first.verify(token)
    with pytest.raises(WidgetTokenError, match="already used"):
        second.verify(token)
    now[0] += 3600  # long after every token seen so far expired: the next use forgets them
    first.verify(one_time_token(SECRET, ACCOUNT, 6))
    entry = shared.get("widget_used_tokens")
    assert entry is not None and len(json.loads(entry[0])) == 1


def widget_app(dials: list[tuple[str, str]], hub: list[tuple[str, float]] | None = None, **settings: object):
    amo = AmoCrmConnector(
        {"account_url": ACCOUNT, "long_lived_token": "llt", "client_secret": SECRET, **settings}
    )

    def hub_token(extension: str, ttl: float) -> str:
        assert hub is not None
        hub.append((extension, ttl))
        return f"hub-{extension}"

    amo.bind(
        context(
            public_url=PUBLIC,
            originate=lambda ext, number: dials.append((ext, number)) or "cmd-1",
            hub_token=hub_token if hub is not None else None,
        )
    )
    app = hooks_app("amocrm", amo, {"MAX_CONTENT_LENGTH": 1 << 20})
    assert app is not None
    return app.test_client()


def test_the_preflight_lets_the_account_in_and_nobody_else() -> None:
    web = widget_app([])
    asked = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-auth-token"}
    ours = web.options(CALL, headers={"Origin": ACCOUNT, **asked})
    assert ours.status_code == 204 and ours.headers["Access-Control-Allow-Origin"] == ACCOUNT
    assert "X-Auth-Token" in ours.headers["Access-Control-Allow-Headers"]
    assert "POST" in ours.headers["Access-Control-Allow-Methods"]
    theirs = web.options(CALL, headers={"Origin": "https://evil.example", **asked})
    assert theirs.status_code == 403 and "Access-Control-Allow-Origin" not in theirs.headers


def test_a_click_dials_the_mapped_extension_and_an_unmapped_user_is_told_why() -> None:
    dials: list[tuple[str, str]] = []
    web = widget_app(dials, users={"101": "1001"})
    ok = web.post(
        CALL,
        json={"phone": "8 916 123-45-67"},
        headers={"X-Auth-Token": one_time_token(SECRET, ACCOUNT, 1001)},
    )
    assert ok.status_code == 200 and ok.json == {
        "status": "calling",
        "extension": "101",
        "command_id": "cmd-1",
    }
    unmapped = web.post(
        CALL, json={"phone": "+79161234567"}, headers={"X-Auth-Token": one_time_token(SECRET, ACCOUNT, 9)}
    )
    assert unmapped.status_code == 409 and unmapped.json["error"] == "unmapped"
    bad = web.post(
        CALL, json={"phone": "call me"}, headers={"X-Auth-Token": one_time_token(SECRET, ACCOUNT, 1001)}
    )
    assert bad.status_code == 400 and bad.json["error"] == "bad_phone"
    assert dials == [("101", "+79161234567")]


def test_a_session_gives_the_mapped_user_a_hub_token_and_nobody_else() -> None:
    issued: list[tuple[str, float]] = []
    web = widget_app([], issued, users={"101": "1001"})
    session = "/connectors/amocrm/widget/session"
    ok = web.get(session, headers={"X-Auth-Token": one_time_token(SECRET, ACCOUNT, 1001), "Origin": ACCOUNT})
    assert ok.status_code == 200 and ok.json == {"token": "hub-101", "extension": "101", "expires_in": 3600.0}
    assert ok.headers["Access-Control-Allow-Origin"] == ACCOUNT
    unmapped = web.get(session, headers={"X-Auth-Token": one_time_token(SECRET, ACCOUNT, 9)})
    assert unmapped.status_code == 409 and unmapped.json["error"] == "unmapped"
    forged = web.get(session, headers={"X-Auth-Token": one_time_token("x" + SECRET, ACCOUNT, 1001)})
    assert forged.status_code == 401 and "token" not in forged.json
    assert issued == [("101", 3600.0)]
    asked = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "x-auth-token"}
    preflight = web.options(session, headers={"Origin": ACCOUNT, **asked})
    assert preflight.status_code == 204 and "GET" in preflight.headers["Access-Control-Allow-Methods"]
    no_hub = widget_app([], users={"101": "1001"})
    refused = no_hub.get(session, headers={"X-Auth-Token": one_time_token(SECRET, ACCOUNT, 1001)})
    assert refused.status_code == 503


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_package_from_the_command_line_reads_back(tmp_path: Path) -> None:
    out = tmp_path / "widget.zip"
    env = {"CALLBRIDGE_HTTP_PUBLIC_URL": "https://calls.example.com/", "CALLBRIDGE_CONFIG": ""}
    done = CliRunner().invoke(cli, ["connectors", "amocrm-widget", "--out", str(out)], env=env)
    assert done.exit_code == 0, done.output
    assert "wrote" in done.output and "upload it in amoCRM" in done.output
    missing = CliRunner().invoke(
        cli, ["connectors", "amocrm-widget", "--out", str(out)], env={"CALLBRIDGE_CONFIG": ""}
    )
    assert missing.exit_code == 1 and "set http.public_url" in missing.output
    archive = zipfile.ZipFile(out)
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["widget"]["locale"] == ["ru", "en"]
    assert manifest["settings"]["callbridge_url"]["type"] == "text"
    for lang in ("ru", "en"):
        texts = json.loads(archive.read(f"i18n/{lang}.json"))
        assert set(texts["messages"]) >= {"calling", "unmapped", "unauthorized"}
        assert texts["settings"]["callbridge_url"] and texts["widget"]["name"]
    script = archive.read("script.js").decode()
    assert 'var PACKAGED_URL = "https://calls.example.com";' in script and "add_action('phone'" in script
    assert {name: _png_size(archive.read(name)) for name in LOGOS} == LOGOS
    assert build_package(PUBLIC) == build_package(PUBLIC)  # the same inputs give the same bytes


@pytest.mark.parametrize("address", ["ftp://calls.example.com", "calls.example.com", "https://x/?a='b'"])
def test_the_package_refuses_an_address_the_widget_cannot_call(address: str) -> None:
    with pytest.raises(ValueError, match="should look like"):
        build_package(address)


def test_the_package_zip_is_a_valid_archive() -> None:
    assert zipfile.ZipFile(io.BytesIO(build_package(PUBLIC))).testzip() is None


def test_the_live_panel_may_be_framed_by_the_account_only_and_speaks_its_language() -> None:
    web = widget_app([])
    ru = web.get("/connectors/amocrm/widget/panel")
    assert ru.status_code == 200 and "Войти" in ru.text and "/operator/static/live.js" in ru.text
    assert ru.headers["Content-Security-Policy"].endswith(f"frame-ancestors 'self' {ACCOUNT}")
    assert ru.headers["Cache-Control"] == "no-store"
    en = web.get("/connectors/amocrm/widget/panel?lang=en")
    assert "Sign in" in en.text and web.get("/connectors/amocrm/static/panel.js").status_code == 200
