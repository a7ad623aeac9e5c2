"""Per-connector settings in the panel, over real HTTP: the form built from the config model, saving (and the
running connector picking the saved values up), the model's own messages, locked keys, secrets never
shown, the Test button against a real webhook receiver and a real SQLite shop database, permissions."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from markupsafe import escape
from sqlalchemy import Engine, select
from werkzeug.serving import make_server

from admin_module.connector_forms import field_specs
from bridge.config import Settings
from bridge.connector_api import CallEvent, DeliveryError
from bridge.connectors_runtime import LiveConnector, cached, effective_sections, load_connectors
from bridge.outbox.dispatcher import Dispatcher
from bridge.outbox.enqueue import enqueue
from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator.command_server import CommandServer
from bridge.pbx.mango.simulator.poster import Poster
from bridge.registry import available_connectors, build_connectors
from bridge.settings_store import SettingsStore, fixed_keys
from bridge.store.schema import admin_settings, outbox
from tests.daemon import SETTINGS_REFRESH, SHORT_SETTINGS_REFRESH, Daemon
from tests.fakes import shop_schema as shop
from tests.test_admin_support import (
    API_KEY,
    API_SALT,
    PASSWORD,
    LivePanel,
    _Quiet,
    csrf_of,
    live_panel,
    make_app,
    seed_users,
)

SECRET = "whsec-panel-0123456789"


# ------------------------------------------------------------------------------------------- helpers


class Browser:
    """A requests session against the live panel, logged in, that sends the page's CSRF token."""

    def __init__(self, base: str, username: str) -> None:
        self.base = base
        self.session = requests.Session()
        page = self.get("/admin/login")
        answer = self.session.post(
            base + "/admin/login",
            data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(page.text)},
            allow_redirects=False,
        )
        assert answer.status_code == 302, answer.text
        self.token = csrf_of(self.get("/admin/calls").text)  # every page carries the session's token

    def get(self, path: str) -> requests.Response:
        return self.session.get(self.base + path, allow_redirects=False, timeout=10)

    def post(self, path: str, data: dict[str, Any], *, csrf: bool = True) -> requests.Response:
        body = {**data, "csrf_token": self.token} if csrf else dict(data)
        return self.session.post(self.base + path, data=body, allow_redirects=False, timeout=30)


@dataclass
class Receiver:
    """A webhook receiver that checks the HMAC signature and records what it accepted."""

    secret: str = SECRET
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: int = 0
    url: str = ""

    def answer(self, headers: Any, body: bytes) -> int:
        signed = f"{headers.get('X-Callbridge-Timestamp', '')}.".encode() + body
        expected = "sha256=" + hmac.new(self.secret.encode(), signed, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, headers.get("X-Callbridge-Signature", "")):
            self.rejected += 1
            return 401
        self.accepted.append(json.loads(body))
        return 204


def _serve_receiver(state: Receiver, path: str) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(state.answer(self.headers, body))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver]]:
    first, second = Receiver(), Receiver()
    servers = [_serve_receiver(first, "/first"), _serve_receiver(second, "/second")]
    yield first, second
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def panel(engine: Engine) -> Iterator[LivePanel]:
    seed_users(engine)
    yield from live_panel(engine)


@pytest.fixture
def admin(panel: LivePanel) -> Browser:
    return Browser(panel.url, "admin")


def _saved(engine: Engine, name: str) -> dict[str, Any]:
    prefix = f"connectors.{name}."
    with engine.connect() as conn:
        rows = conn.execute(select(admin_settings.c.key, admin_settings.c.value)).all()
    return {key[len(prefix) :]: json.loads(value) for key, value in rows if key.startswith(prefix)}


def _event(entry_id: str) -> CallEvent:
    return CallEvent(type="call.ended", entry_id=entry_id, key="call.ended", occurred_at=time.time())


def _deliver(engine: Engine, dispatcher: Dispatcher, connectors: dict[str, Any], entry_id: str) -> None:
    with engine.begin() as conn:
        assert enqueue(conn, [_event(entry_id)], list(connectors.values()), now=time.time()) == 1
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        dispatcher.run_once()
        with engine.connect() as conn:
            status = conn.execute(select(outbox.c.status).where(outbox.c.entry_id == entry_id)).scalar_one()
        if status != "pending":
            assert status == "done"
            return
        time.sleep(0.05)
    raise AssertionError(f"{entry_id} was not delivered")


def _wait_for_call(receiver: Receiver, entry_id: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(hit["entry_id"] == entry_id for hit in receiver.accepted):
            return
        time.sleep(0.1)
    raise AssertionError(f"no webhook for {entry_id} at {receiver.url}")


def _webhook_form(url: str, secret: str = "", **extra: str) -> dict[str, str]:
    return {"enabled": "y", "url": url, "secret": secret, "timeout": "5", "rate_per_second": "50", **extra}


# --------------------------------------------------------------------------------------------- the form


@pytest.mark.parametrize("name", sorted(available_connectors()))
def test_the_form_has_every_field_of_the_model_with_its_title_and_description(
    admin: Browser, name: str
) -> None:
    page = admin.get(f"/admin/connectors/{name}")
    assert page.status_code == 200
    cls = available_connectors()[name]
    model = cls.config_model
    lang = "ru" if '<html lang="ru"' in page.text else "en"
    for spec in field_specs(model, lang, cls.manifest.settings):  # titled in the admin's language
        assert f'name="{spec.key}"' in page.text, spec.key
        assert str(escape(spec.title)) in page.text
        if spec.description:
            assert str(escape(spec.description)) in page.text
    assert 'name="enabled"' in page.text and 'id="test-connector"' in page.text


def test_the_form_titles_follow_the_users_language(admin: Browser) -> None:
    titles = available_connectors()["webhook"].manifest.settings
    assert admin.post("/admin/lang", {"lang": "ru"}).status_code == 302
    page = admin.get("/admin/connectors/webhook")
    assert str(escape(titles["secret"].ru)) in page.text and titles["secret"].en not in page.text
    assert admin.post("/admin/lang", {"lang": "en"}).status_code == 302  # the admin's language again
    page = admin.get("/admin/connectors/webhook")
    assert titles["secret"].en in page.text and str(escape(titles["secret"].ru)) not in page.text
    # Turning a connector on applies live (tests/test_connector_enabled_live.py): the page says so.
    assert "no restart is needed" in page.text and "after a restart" not in page.text


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_each_connector_page_shows_its_manifest_in_the_users_language(admin: Browser, lang: str) -> None:
    assert admin.post("/admin/lang", {"lang": lang}).status_code == 302
    try:
        listing = admin.get("/admin/connectors").text
        for name, cls in available_connectors().items():
            manifest = cls.manifest
            assert str(escape(manifest.title(lang))) in listing
            page = admin.get(f"/admin/connectors/{name}").text
            assert str(escape(manifest.title(lang))) in page.split("</h1>")[0]
            block = page.split('id="manifest"')[1].split("</dl>")[0]
            assert block.count("<li>") == len(manifest.capabilities) + len(manifest.requirements)
            assert all(str(escape(r)) in block for r in manifest.requirements)
            assert manifest.docs in block
        lookup = "карточка звонящего из CRM" if lang == "ru" else "caller cards from the CRM"
        assert lookup in admin.get("/admin/connectors/amocrm").text
    finally:
        assert admin.post("/admin/lang", {"lang": "en"}).status_code == 302  # the admin's language again


def test_the_connectors_page_links_each_connector_to_its_form(admin: Browser) -> None:
    page = admin.get("/admin/connectors")
    for name in available_connectors():
        assert f'href="/admin/connectors/{name}"' in page.text


def test_the_form_maps_types_to_inputs() -> None:
    kinds = {spec.key: spec.kind for spec in field_specs(available_connectors()["shop"].config_model)}
    assert kinds["database_url"] == "secret"
    assert kinds["mapping"] == "json"  # a ready mapping's name or a table describing a schema
    assert kinds["phone_match"] == "choice"
    assert kinds["max_orders"] == "text" and kinds["schema"] == "text"  # the alias is the section key
    webhook = {spec.key: spec for spec in field_specs(available_connectors()["webhook"].config_model)}
    assert webhook["event_types"].kind == "list" and webhook["url"].required
    assert {spec.kind for spec in field_specs(available_connectors()["bitrix24"].config_model)} >= {
        "bool",
        "secret",
        "list",
        "choice",
    }


# ------------------------------------------------------------------------------------------------- save


def test_saved_settings_apply_to_the_running_connector_and_the_secret_is_never_shown(
    engine: Engine, admin: Browser, receivers: tuple[Receiver, Receiver]
) -> None:
    first, second = receivers
    saved = admin.post("/admin/connectors/webhook", _webhook_form(first.url, SECRET))
    assert saved.status_code == 302, saved.text
    page = admin.get("/admin/connectors/webhook")
    assert "Connector settings saved" in page.text
    assert SECRET not in page.text and "saved (hidden)" in page.text
    assert f'value="{first.url}"' in page.text
    assert _saved(engine, "webhook") == {
        "enabled": True,
        "url": first.url,
        "secret": SECRET,
        "timeout": 5.0,
        "rate_per_second": 50.0,
    }

    # The daemon's connectors, as `callbridge run` builds them (panel values re-read every 0.1 s here).
    settings = Settings()
    connectors = load_connectors(settings, engine, cached(effective_sections(settings, engine), 0.1))
    assert isinstance(connectors["webhook"], LiveConnector)
    dispatcher = Dispatcher(engine, connectors)
    try:
        _deliver(engine, dispatcher, connectors, "call-1")
        assert [hit["entry_id"] for hit in first.accepted] == ["call-1"]

        # New URL and rate; the empty secret box keeps the saved secret.
        saved = admin.post("/admin/connectors/webhook", _webhook_form(second.url, rate_per_second="7"))
        assert saved.status_code == 302
        assert _saved(engine, "webhook")["secret"] == SECRET
        time.sleep(0.2)
        _deliver(engine, dispatcher, connectors, "call-2")
        assert [hit["entry_id"] for hit in second.accepted] == ["call-2"]
        assert [hit["entry_id"] for hit in first.accepted] == ["call-1"]
        assert second.rejected == 0  # signed with the kept secret
        assert connectors["webhook"].rate_limit.rate == 7.0  # type: ignore[union-attr]

        # Turned off in the panel: no new rows are queued for it.
        admin.post("/admin/connectors/webhook", {"url": second.url})
        time.sleep(0.2)
        assert _saved(engine, "webhook")["enabled"] is False
        assert not connectors["webhook"].wants(_event("call-3"))
    finally:
        dispatcher.close()


def test_an_invalid_value_gets_the_models_message_and_nothing_is_saved(
    engine: Engine, admin: Browser, receivers: tuple[Receiver, Receiver]
) -> None:
    first, _ = receivers
    short_secret = "tiny-secret"
    answer = admin.post("/admin/connectors/webhook", _webhook_form(first.url, short_secret, timeout="500"))
    assert answer.status_code == 400
    assert "nothing was saved" in answer.text
    assert 'data-field="timeout">Input should be less than or equal to 120' in answer.text
    assert 'data-field="secret">should be at least 16 characters long' in answer.text
    assert short_secret not in answer.text  # a rejected secret is not echoed either
    assert f'value="{first.url}"' in answer.text  # the other values are kept for correcting
    answer = admin.post("/admin/connectors/webhook", _webhook_form("ftp://nowhere", SECRET))
    assert answer.status_code == 400 and 'data-field="url">URL scheme should be' in answer.text
    missing = admin.post("/admin/connectors/webhook", {"enabled": "y"})
    assert missing.status_code == 400 and 'data-field="url">Field required' in missing.text
    assert _saved(engine, "webhook") == {}


def test_a_fixed_key_is_locked_and_refused(engine: Engine, tmp_path: Path) -> None:
    seed_users(engine)
    config = tmp_path / "callbridge.toml"
    config.write_text('[connectors.webhook]\nurl = "https://hooks.example.com/in"\n', encoding="utf-8")
    fixed = fixed_keys(environ={"CALLBRIDGE_CONNECTORS_WEBHOOK_TIMEOUT": "3"}, config_path=config)
    assert {"connectors.webhook.url", "connectors.webhook.timeout"} <= fixed
    simulator = CommandServer(API_KEY, API_SALT, rate_limits=False).start()
    app = make_app(engine, simulator.url, fixed=fixed)
    panel = LivePanel(app, simulator, make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet))
    try:
        browser = Browser(panel.url, "admin")
        page = browser.get("/admin/connectors/webhook")
        assert page.text.count("🔒") == 2
        assert '<input disabled id="cfg-url" name="url"' in page.text
        secret_input = re.search(r'<input type="password" name="secret"[^>]*>', page.text)
        assert secret_input and "disabled" not in secret_input.group(0)  # not fixed: editable
        refused = browser.post("/admin/connectors/webhook", {"enabled": "y", "url": "https://evil.example"})
        assert refused.status_code == 400 and "fixed by the config file or the environment" in refused.text
        assert _saved(engine, "webhook") == {}
        # The store refuses it too, whatever the form does.
        store = SettingsStore(engine, Settings(), fixed=fixed)
        with pytest.raises(ValueError, match="fixed by the config file"):
            store.save({"connectors.webhook.url": "https://evil.example"})
    finally:
        panel.stop()
        simulator.stop(timeout=1)


# ------------------------------------------------------------------------------------------ the test button


def _check_error(name: str, section: dict[str, Any]) -> str:
    """The connector's own words for a failing check, built outside the panel."""
    connector = build_connectors({name: section})[name]
    try:
        connector.check()
    except DeliveryError as exc:
        return str(exc)
    finally:
        close = getattr(connector, "close", None)
        if callable(close):
            close()
    raise AssertionError("the check was expected to fail")


def test_the_test_button_pings_the_webhook_with_unsaved_values(
    engine: Engine, admin: Browser, receivers: tuple[Receiver, Receiver]
) -> None:
    first, _ = receivers
    ok = admin.post("/admin/connectors/webhook/test", _webhook_form(first.url, SECRET))
    assert ok.status_code == 200
    host = first.url.rsplit("/", 1)[0]  # the connector names the host, never the path
    assert f"Test passed: The receiver at {host} accepted a signed ping (HTTP 204 in" in ok.text
    assert [hit["type"] for hit in first.accepted] == ["ping"]
    assert SECRET not in ok.text

    wrong = "whsec-not-the-right-one-42"
    failed = admin.post("/admin/connectors/webhook/test", _webhook_form(first.url, wrong))
    assert failed.status_code == 200
    expected = _check_error("webhook", {"url": first.url, "secret": wrong})
    assert f"Test failed: {escape(expected)}" in failed.text
    assert wrong not in failed.text
    assert _saved(engine, "webhook") == {}  # testing saves nothing


def test_the_test_button_reads_a_real_shop_database(engine: Engine, admin: Browser, tmp_path: Path) -> None:
    path = tmp_path / "shop.db"
    from sqlalchemy import create_engine

    shop_engine = create_engine(f"sqlite:///{path}")
    shop.create_woocommerce(shop_engine)
    shop_engine.dispose()
    form = {"enabled": "y", "mapping": "woocommerce", "max_orders": "5", "phone_match": "normalized"}
    ok = admin.post("/admin/connectors/shop/test", {**form, "database_url": f"sqlite:///{path}"})
    assert ok.status_code == 200
    assert "Test passed: connected to the shop database" in ok.text and "customers" in ok.text

    missing = f"sqlite:///{tmp_path / 'no-such-dir' / 'shop.db'}"
    failed = admin.post("/admin/connectors/shop/test", {**form, "database_url": missing})
    expected = _check_error("shop", {"database_url": missing, "mapping": "woocommerce"})
    assert failed.status_code == 200
    assert f"Test failed: {escape(expected)}" in failed.text

    bad_mapping = admin.post(
        "/admin/connectors/shop/test", {**form, "database_url": f"sqlite:///{path}", "mapping": "magento"}
    )
    assert bad_mapping.status_code == 400
    assert 'data-field="mapping">should be &#34;woocommerce&#34;' in bad_mapping.text
    assert _saved(engine, "shop") == {}


# ------------------------------------------------------------------------------------------------ access


def test_a_manager_gets_403_and_bad_requests_are_refused(panel: LivePanel, admin: Browser) -> None:
    manager = Browser(panel.url, "manager")
    assert manager.get("/admin/connectors/webhook").status_code == 403
    assert manager.post("/admin/connectors/webhook", {"enabled": "y"}).status_code == 403
    assert manager.post("/admin/connectors/webhook/test", {"enabled": "y"}).status_code == 403
    assert admin.get("/admin/connectors/nope").status_code == 404
    no_csrf = admin.post("/admin/connectors/webhook", {"enabled": "y"}, csrf=False)
    assert no_csrf.status_code == 400
    anonymous = requests.get(panel.url + "/admin/connectors/webhook", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302 and "/admin/login" in anonymous.headers["Location"]


def test_an_optional_secret_can_be_removed_and_a_bad_saved_section_keeps_the_last_build(
    engine: Engine, admin: Browser, receivers: tuple[Receiver, Receiver]
) -> None:
    off = {"portal": "https://example.bitrix24.ru", "client_id": "local.1", "client_secret": "app-secret-1"}
    assert admin.post("/admin/connectors/bitrix24", off).status_code == 302  # off: kept as typed
    assert _saved(engine, "bitrix24")["client_secret"] == "app-secret-1"
    page = admin.get("/admin/connectors/bitrix24")
    assert 'name="clear-client_secret"' in page.text and "app-secret-1" not in page.text
    cleared = admin.post(
        "/admin/connectors/bitrix24", {**off, "client_secret": "", "clear-client_secret": "y"}
    )
    assert cleared.status_code == 302
    assert "client_secret" not in _saved(engine, "bitrix24")
    assert _saved(engine, "bitrix24")["client_id"] == "local.1"

    first, _ = receivers
    assert admin.post("/admin/connectors/webhook", _webhook_form(first.url, SECRET)).status_code == 302
    settings = Settings()
    connectors = load_connectors(settings, engine, cached(effective_sections(settings, engine), 0.0))
    # A value written around the form (an older version, a hand edit) that the model rejects.
    SettingsStore(engine, settings, fixed=frozenset()).save({"connectors.webhook.timeout": 1000})
    live = connectors["webhook"]
    assert live.config.url.unicode_string() == first.url  # type: ignore[attr-defined]
    assert live.config.timeout == 5.0  # type: ignore[attr-defined]
    assert live.check().startswith("The receiver at")


def test_callbridge_run_delivers_to_the_url_saved_in_its_panel_without_a_restart(
    database_url: str, engine: Engine, tmp_path: Path, receivers: tuple[Receiver, Receiver]
) -> None:
    first, second = receivers
    seed_users(engine)
    daemon = Daemon(database_url, tmp_path, env=SHORT_SETTINGS_REFRESH).start()
    try:
        admin = Browser(daemon.url, "admin")
        assert admin.post("/admin/connectors/webhook", _webhook_form(first.url, SECRET)).status_code == 302
        daemon.stop()  # the saved settings also apply from the start after a restart
        daemon.start()
        admin = Browser(daemon.url, "admin")
        poster = Poster(daemon.mango_url, API_KEY, API_SALT)
        one = scenarios.build("incoming_answered", seed=21, start=int(time.time()) - 60)
        assert not poster.play(one.notifications).errors
        _wait_for_call(first, one.entry_id)

        assert admin.post("/admin/connectors/webhook", _webhook_form(second.url)).status_code == 302
        time.sleep(SETTINGS_REFRESH + 0.5)  # every process has re-read the saved settings by now
        two = scenarios.build("incoming_missed", seed=22, start=int(time.time()) - 30, customer="79165550002")
        assert not poster.play(two.notifications).errors
        _wait_for_call(second, two.entry_id)
        assert not any(hit["entry_id"] == two.entry_id for hit in first.accepted)
        assert second.rejected == 0
    finally:
        daemon.stop()
