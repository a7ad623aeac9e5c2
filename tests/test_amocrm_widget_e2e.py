"""End to end: the amoCRM widget's click-to-call and package through `callbridge run`.

One daemon per store backend serves the module, with ``[connectors.amocrm]`` pointing at the amoCRM fake
(a long-lived token plus the private integration's secret key) and Mango's API at the simulator. Tokens
are made as amoCRM makes them (HS256 under the integration's secret key). A valid click reaches the
simulator as a signed ``commands/callback`` from the user's extension; a forged, expired, replayed or
foreign-account token and an unmapped user are refused and send Mango nothing; answers allow the
account's origin only, their preflights too; the package endpoint gives a zip whose
manifest reads back. The live panel's session: a valid token gets a hub token that the WebSocket hub
accepts for the user's extension only (a ringing call's popup with the amoCRM card reaches it, another
extension's call does not), trades at ``/operator/api/session`` for the hub's address, and is never
logged; the same bad tokens are refused.
"""

from __future__ import annotations

import io
import json
import random
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator import CommandServer
from bridge.pbx.mango.simulator.poster import Poster
from tests.amocrm_tokens import one_time_token
from tests.conftest import BACKENDS, _pg_database
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes.amocrm import FakeAmoCrm
from tests.fakes.realtime_client import Client, refused_status

LLT = "llt-widget-" + "7a6b5c4d" * 6
INTEGRATION_SECRET = "amo-integration-secret-" + "k" * 40
PUBLIC = "https://calls.example.com"
SECRET = "amocrm-widget-e2e-" + "s" * 24
USERS = {"101": 1001, "102": 1002}
CALL = "/connectors/amocrm/widget/call"
SESSION = "/connectors/amocrm/widget/session"
CALLER = "Мария Сидорова"


@dataclass
class Stack:
    daemon: Daemon
    fake: FakeAmoCrm
    mango: CommandServer

    def token(self, user_id: int, **options: object) -> str:
        options.setdefault("audience", PUBLIC)
        return one_time_token(INTEGRATION_SECRET, self.fake.url, user_id, **options)  # type: ignore[arg-type]

    def click(self, token: str | None, phone: str = "+7 926 555-66-77", origin: str | None = None):
        headers = {"Origin": origin or self.fake.url}
        if token is not None:
            headers["X-Auth-Token"] = token
        return requests.post(f"{self.daemon.url}{CALL}", json={"phone": phone}, headers=headers, timeout=10)

    def session(self, token: str | None, origin: str | None = None) -> requests.Response:
        headers = {"Origin": origin or self.fake.url}
        if token is not None:
            headers["X-Auth-Token"] = token
        return requests.get(f"{self.daemon.url}{SESSION}", headers=headers, timeout=10)

    @property
    def ws_port(self) -> int:
        return int(self.daemon.env["CALLBRIDGE_WS_PORT"])

    def callbacks(self) -> int:
        return sum(1 for r in self.mango.received if r.path == "commands/callback")


@pytest.fixture(scope="module", params=BACKENDS)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("amowidget")
    if request.param == "sqlite":
        urls: Iterator[str] = iter([f"sqlite:///{workdir / 'callbridge.db'}"])
    else:
        urls = _pg_database(f"cb_test_amow_{random.randrange(1 << 40):x}")
    database_url = next(urls)
    with (
        FakeAmoCrm(long_lived_token=LLT) as fake,
        CommandServer(API_KEY, API_SALT, rate_limits=False, rng=random.Random(7), pace=0.05) as mango,
    ):
        fake.add_contact(CALLER, ["+7 916 123-45-67"], responsible_user_id=1002)
        config = workdir / "callbridge.toml"
        lines = ["[connectors.amocrm]", f'account_url = "{fake.url}"', "popup = false", ""]
        lines += ["[connectors.amocrm.users]", *[f'"{ext}" = {uid}' for ext, uid in USERS.items()]]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        env = {
            "CALLBRIDGE_CONFIG": str(config),
            "CALLBRIDGE_CONNECTORS_AMOCRM_LONG_LIVED_TOKEN": LLT,
            "CALLBRIDGE_CONNECTORS_AMOCRM_CLIENT_SECRET": INTEGRATION_SECRET,
            "CALLBRIDGE_HTTP_PUBLIC_URL": PUBLIC,
            "CALLBRIDGE_SECURITY_SECRET_KEY": SECRET,
            "CALLBRIDGE_MANGO_API_URL": mango.url,
        }
        daemon = Daemon(database_url, workdir, env=env)
        mango.bridge_url = daemon.mango_url
        daemon.start()
        try:
            yield Stack(daemon, fake, mango)
        finally:
            daemon.stop()
            for _ in urls:  # drops the PostgreSQL database
                pass


def test_a_click_dials_from_the_users_extension(stack: Stack) -> None:
    answer = stack.click(stack.token(1002), phone="8 (926) 555-66-77")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "calling" and answer.json()["extension"] == "102"
    assert answer.headers["Access-Control-Allow-Origin"] == stack.fake.url
    sent = stack.mango.wait_for("commands/callback", timeout=10)
    assert sent.signature_valid and sent.status == 200
    assert sent.json["from"]["extension"] == "102" and sent.json["to_number"] == "79265556677"
    assert sent.json["command_id"] == answer.json()["command_id"]


@pytest.mark.parametrize(
    ("case", "status", "error", "words"),
    [
        ("forged", 401, "unauthorized", "bad signature"),
        ("expired", 401, "unauthorized", "expired"),
        ("foreign", 401, "unauthorized", "another account"),
        ("no token", 401, "unauthorized", "missing"),
        ("replayed", 401, "unauthorized", "already used"),
        ("unmapped", 409, "unmapped", "has no Mango extension"),
    ],
)
def test_a_bad_click_is_refused_and_sends_nothing(
    stack: Stack, case: str, status: int, error: str, words: str
) -> None:
    token: str | None
    if case == "forged":
        token = one_time_token("another-integration-secret-" + "x" * 30, stack.fake.url, 1001)
    elif case == "expired":
        token = stack.token(1001, issued_at=time.time() - 600, lifetime=60)
    elif case == "foreign":
        token = stack.token(1001, iss="https://someone-else.amocrm.ru")
    elif case == "no token":
        token = None
    elif case == "replayed":
        token = stack.token(1001)
        assert stack.click(token, phone="+7 999 000-00-01").status_code == 200
        stack.mango.wait_for("commands/callback", where=lambda r: r.json["to_number"] == "79990000001")
    else:
        token = stack.token(4242)
    before = stack.callbacks()
    answer = stack.click(token)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error and words in answer.json()["message"]
    assert stack.callbacks() == before
    if token is not None:
        assert token not in answer.text


def test_cors_answers_name_the_account_and_nobody_else(stack: Stack) -> None:
    ours = stack.click(stack.token(4242))
    assert ours.headers["Access-Control-Allow-Origin"] == stack.fake.url and ours.headers["Vary"] == "Origin"
    theirs = stack.click(stack.token(4242), origin="https://evil.example")
    assert theirs.status_code == 409 and "Access-Control-Allow-Origin" not in theirs.headers
    # The browser's preflight reaches the connector through the daemon and is answered for the account only.
    url = f"{stack.daemon.url}/connectors/amocrm/widget/call"
    asked = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-auth-token"}
    preflight = requests.options(url, headers={"Origin": stack.fake.url, **asked}, timeout=10)
    assert preflight.status_code == 204 and preflight.headers["Access-Control-Allow-Origin"] == stack.fake.url
    assert "X-Auth-Token" in preflight.headers["Access-Control-Allow-Headers"]
    foreign = requests.options(url, headers={"Origin": "https://evil.example", **asked}, timeout=10)
    assert foreign.status_code == 403 and "Access-Control-Allow-Origin" not in foreign.headers


def test_the_package_is_a_widget_for_this_callbridge(stack: Stack) -> None:
    answer = requests.get(f"{stack.daemon.url}/connectors/amocrm/widget/package.zip", timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(answer.content))
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["widget"]["code"] and manifest["widget"]["interface_version"] == 2
    assert {"ccard-1", "lcard-1", "comcard-1", "everywhere"} <= set(manifest["locations"])
    assert json.dumps(PUBLIC) in archive.read("script.js").decode()
    assert {"i18n/ru.json", "i18n/en.json", "images/logo.png"} <= set(archive.namelist())
    assert LLT.encode() not in answer.content and INTEGRATION_SECRET.encode() not in answer.content


def test_a_session_gives_a_hub_token_for_the_users_extension_only(stack: Stack) -> None:
    one_time = stack.token(1002)
    answer = stack.session(one_time)
    assert answer.status_code == 200, answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == stack.fake.url
    body = answer.json()
    assert body["extension"] == "102" and 0 < body["expires_in"] <= 12 * 3600
    # The panel trades it for the operator page's session: the hub's address and a connection token.
    traded = requests.get(
        f"{stack.daemon.url}/operator/api/session",
        headers={"Authorization": f"Bearer {body['token']}"},
        timeout=10,
    )
    assert traded.status_code == 200, traded.text
    assert traded.json()["identity"]["extension"] == "102" and traded.json()["ws_port"] == stack.ws_port
    client = Client(stack.ws_port, body["token"])
    try:
        hello = client.wait_for("hello")
        assert hello["identity"] == {**hello["identity"], "role": "employee", "extension": "102"}
        poster = Poster(stack.daemon.mango_url, API_KEY, API_SALT)
        try:
            elsewhere = scenarios.build("incoming_answered", seed=41, extensions=("101",))
            ours = scenarios.build("incoming_answered", seed=42, extensions=("102",))
            assert not poster.play(list(elsewhere.notifications)).errors
            assert not poster.play(list(ours.notifications)).errors
        finally:
            poster.close()
        ringing = client.wait_for("call.ringing", where=lambda m: m["entry_id"] == ours.entry_id)
        assert ringing["extension"] == "102"
        card = ringing.get("card") or client.wait_for("call.card", lambda m: m["entry_id"] == ours.entry_id)
        assert (card.get("card") or card)["name"] == CALLER
        client.wait_for("call.ended", where=lambda m: m["entry_id"] == ours.entry_id)
        assert all(m["entry_id"] != elsewhere.entry_id for m in client.events()), "101's call is not 102's"
    finally:
        client.close()
    assert one_time not in stack.daemon.log_path.read_text(encoding="utf-8", errors="replace")
    assert body["token"] not in stack.daemon.log_path.read_text(encoding="utf-8", errors="replace")


@pytest.mark.parametrize(
    ("case", "status", "error", "words"),
    [
        ("forged", 401, "unauthorized", "bad signature"),
        ("expired", 401, "unauthorized", "expired"),
        ("foreign", 401, "unauthorized", "another account"),
        ("replayed", 401, "unauthorized", "already used"),
        ("unmapped", 409, "unmapped", "has no Mango extension"),
    ],
)
def test_a_bad_session_token_gets_no_hub_token(
    stack: Stack, case: str, status: int, error: str, words: str
) -> None:
    if case == "forged":
        token = one_time_token("another-integration-secret-" + "x" * 30, stack.fake.url, 1001)
    elif case == "expired":
        token = stack.token(1001, issued_at=time.time() - 600, lifetime=60)
    elif case == "foreign":
        token = stack.token(1001, iss="https://someone-else.amocrm.ru")
    elif case == "replayed":
        token = stack.token(1001)
        assert stack.session(token).status_code == 200
    else:
        token = stack.token(4242)
    answer = stack.session(token)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == error and words in answer.json()["message"]
    assert "token" not in answer.json() and token not in answer.text
    assert answer.headers["Access-Control-Allow-Origin"] == stack.fake.url
    assert (
        "Access-Control-Allow-Origin" not in stack.session(stack.token(1001), "https://evil.example").headers
    )


def test_a_hub_token_from_another_secret_is_refused_by_the_hub(stack: Stack) -> None:
    from bridge.realtime.auth import TokenSigner

    assert refused_status(stack.ws_port, TokenSigner("not-" + SECRET).issue_employee("102", 60)) == 401
