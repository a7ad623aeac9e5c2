"""A connector that was off when the process started joins, without a restart, once it is enabled.

Unit level: the dormant `LiveConnector` (what it answers before its first build, how it builds when its
section turns it on, an invalid section), and what the users of the connector mapping do with it (the
dispatcher, the lookups, the hooks, `callbridge check`). End to end: `callbridge run` started with no
connector enabled, an admin turns the webhook connector on in the panel, a Mango call reaches the receiver
within seconds, and turning it off again stops new deliveries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from sqlalchemy import Engine, select

from bridge.checks import check_connectors
from bridge.config import Settings
from bridge.connectors_runtime import LiveConnector, Sections, active, is_dormant, load_connectors
from bridge.crm_employees import imports_employees
from bridge.http_errors import install_error_handlers
from bridge.lookup import LookupService
from bridge.outbox.dispatcher import Dispatcher
from bridge.outbox.enqueue import enqueue
from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator.poster import Poster
from bridge.registry import available_connectors
from bridge.settings_store import SettingsStore
from bridge.store.schema import calls, outbox
from tests.daemon import SETTINGS_REFRESH, SHORT_SETTINGS_REFRESH, Daemon
from tests.fakes.yclients import FakeYClients
from tests.test_admin_connector_config import (
    SECRET,
    Browser,
    Receiver,
    _event,
    _serve_receiver,
    _webhook_form,
)
from tests.test_admin_support import API_KEY, API_SALT, seed_users
from tests.test_yclients_contract import COMPANY, CRM, PARTNER, USER
from tests.test_yclients_contract import settings as yclients_section

BITRIX24 = {"portal": "http://127.0.0.1:9", "client_id": "local.1", "client_secret": "app-secret-1"}


class Sources:
    """Effective connector sections the test changes; a new mapping each time, as the cached reader gives."""

    def __init__(self) -> None:
        self.now: Sections = {}

    def set(self, **sections: dict[str, Any]) -> None:
        self.now = dict(sections)

    def __call__(self) -> Sections:
        return self.now


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()
    server = _serve_receiver(state, "/hook")
    yield state
    server.shutdown()
    server.server_close()


def _webhook(url: str, **extra: Any) -> dict[str, Any]:
    return {"url": url, "secret": SECRET, "timeout": 5, "rate_per_second": 50, **extra}


def _live(engine: Engine, sources: Sources) -> dict[str, Any]:
    return load_connectors(Settings(), engine, sources)


# ------------------------------------------------------------------------------------ the dormant connector


def test_every_installed_connector_is_there_dormant_until_enabled(engine: Engine) -> None:
    sources = Sources()
    connectors = _live(engine, sources)
    assert set(connectors) == set(available_connectors())
    assert active(connectors) == {}
    webhook = connectors["webhook"]
    assert isinstance(webhook, LiveConnector) and webhook.dormant and is_dormant(webhook)
    assert not webhook.wants(_event("call-0")) and not webhook.enabled
    assert webhook.capabilities == frozenset() and webhook.event_types == frozenset()
    assert webhook.rate_limit is None
    assert webhook.config_model is available_connectors()["webhook"].config_model
    assert connectors["demo"].lookup("+79161234567") is None
    assert connectors["demo"].responsible_for("+79161234567") is None
    assert webhook.check() == "not enabled, nothing to check"
    assert connectors["bitrix24"].mapped_users() == {} and not imports_employees(connectors["bitrix24"])
    with pytest.raises(AttributeError, match="not enabled"):
        _ = webhook.config

    sources.set(webhook=_webhook("https://hooks.example.com/in", rate_per_second=7))
    assert not webhook.dormant and webhook.enabled
    assert webhook.wants(_event("call-1"))
    assert webhook.rate_limit is not None and webhook.rate_limit.rate == 7.0
    assert webhook.config.url.unicode_string() == "https://hooks.example.com/in"
    assert set(active(connectors)) == {"webhook"}

    sources.set(webhook={**_webhook("https://hooks.example.com/in"), "enabled": False})
    assert not webhook.wants(_event("call-2")) and not webhook.enabled
    assert not webhook.dormant  # off again, but its build stays (rows already queued are still delivered)


def test_an_invalid_enabled_section_keeps_it_dormant_and_names_keys_only(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    sources = Sources()
    webhook = _live(engine, sources)["webhook"]
    short = "short-secret"
    sources.set(webhook={"url": "https://hooks.example.com/in", "secret": short})
    with caplog.at_level(logging.WARNING, logger="callbridge.connectors"):
        assert webhook.dormant
        assert not webhook.wants(_event("call-1"))
    assert "connectors.webhook.secret" in caplog.text and "stays off" in caplog.text
    assert short not in caplog.text

    sources.set(webhook=_webhook("https://hooks.example.com/good"))
    assert not webhook.dormant
    # A section that stops validating keeps the last good build.
    sources.set(webhook={"url": "https://hooks.example.com/bad", "secret": short})
    assert webhook.config.url.unicode_string() == "https://hooks.example.com/good"
    assert webhook.wants(_event("call-2"))


# ------------------------------------------------------------------------------- the users of the mapping


def test_the_dispatcher_leaves_a_dormant_connectors_rows_and_delivers_once_it_is_enabled(
    engine: Engine, receiver: Receiver
) -> None:
    sources = Sources()
    sources.set(webhook=_webhook(receiver.url))
    enabled_at_first = _live(engine, sources)
    with engine.begin() as conn:  # queued while it was on, e.g. before a restart
        assert enqueue(conn, [_event("call-1")], list(enabled_at_first.values()), now=time.time()) == 1

    sources.set()  # off when this process starts
    connectors = _live(engine, sources)
    dispatcher = Dispatcher(engine, connectors)
    try:
        assert dispatcher.run_once() == 0
        with engine.connect() as conn:
            row = conn.execute(select(outbox.c.status, outbox.c.attempts)).one()
        assert tuple(row) == ("pending", 0) and receiver.accepted == []

        sources.set(webhook=_webhook(receiver.url))
        deadline = time.monotonic() + 10
        while not receiver.accepted and time.monotonic() < deadline:
            dispatcher.run_once()
            time.sleep(0.05)
        assert [hit["entry_id"] for hit in receiver.accepted] == ["call-1"]
    finally:
        dispatcher.close()


def test_lookups_ask_a_connector_enabled_after_the_service_was_built(engine: Engine) -> None:
    sources = Sources()
    service = LookupService(_live(engine, sources), cache_seconds=0, miss_cache_seconds=0)
    try:
        assert not service.enabled and service.start("+79161234567") is None
        sources.set(demo={"contacts": {"+79161234567": "Anna Petrova"}})
        assert service.enabled and service.sources == ["demo"]
        card = service.lookup("+79161234567", deadline=5)
        assert card is not None and card.name == "Anna Petrova"
    finally:
        service.close()


def test_hooks_answer_404_while_dormant_and_follow_the_build(engine: Engine) -> None:
    sources = Sources()
    connectors = _live(engine, sources)
    app = Flask("hooks-test")
    install_error_handlers(app)
    for name, connector in connectors.items():
        app.register_blueprint(connector.blueprint(), url_prefix=f"/connectors/{name}")
    web = app.test_client()
    assert web.get("/connectors/bitrix24/").status_code == 404
    assert web.get("/connectors/webhook/").status_code == 404

    sources.set(bitrix24=BITRIX24, webhook=_webhook("https://hooks.example.com/in"))
    answer = web.get("/connectors/bitrix24/")
    assert answer.status_code == 200
    assert answer.json == {"connector": "bitrix24", "auth": "app", "installed": False}
    assert web.get("/connectors/bitrix24/no-such-hook").status_code == 404
    assert web.get("/connectors/webhook/").status_code == 404  # the webhook connector has no hooks


def test_check_reports_only_the_enabled_connectors(engine: Engine, receiver: Receiver) -> None:
    settings = Settings()
    assert check_connectors(settings, engine) == []  # the installed ones that are off are no problem
    saved = {f"connectors.webhook.{key}": value for key, value in _webhook(receiver.url).items()}
    SettingsStore(engine, settings, fixed=frozenset()).save({**saved, "connectors.webhook.enabled": True})
    [result] = check_connectors(settings, engine)
    assert result.name == "webhook" and result.ok and [hit["type"] for hit in receiver.accepted] == ["ping"]


# -------------------------------------------------------------------------------------------- end to end


def _processed(engine: Engine, entry_id: str, timeout: float = 30.0) -> None:
    """Wait until the daemon's processor has folded the call (its outbox rows commit with it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            if conn.execute(select(calls.c.entry_id).where(calls.c.entry_id == entry_id)).first():
                return
        time.sleep(0.1)
    raise AssertionError(f"{entry_id} was not processed")


def _queued_for(engine: Engine, entry_id: str) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(select(outbox.c.connector).where(outbox.c.entry_id == entry_id)))


def _first_delivery(poster: Poster, receiver: Receiver, timeout: float = 30.0) -> float:
    """Play a new call every half second until one reaches `receiver`; when it arrived (monotonic)."""
    deadline = time.monotonic() + timeout
    for seed in range(100, 1000):
        call = scenarios.build("incoming_answered", seed=seed, start=int(time.time()) - 60)
        assert not poster.play(call.notifications).errors
        wait_until = min(deadline, time.monotonic() + 0.5)
        while time.monotonic() < wait_until:
            if any(hit["entry_id"] == call.entry_id for hit in receiver.accepted):
                return time.monotonic()
            time.sleep(0.02)
        if time.monotonic() >= deadline:
            break
    raise AssertionError(f"no call reached {receiver.url} in {timeout:.0f}s")


def _hooks_answer(url: str, timeout: float = 20.0) -> None:
    """Every HTTP worker serves the hooks: several fresh connections in a row get the connector's answer."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < 6:
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} did not start answering")
        status = requests.get(url, timeout=5, headers={"Connection": "close"}).status_code
        streak = streak + 1 if status == 200 else 0
        time.sleep(0.05)


def test_callbridge_run_starts_a_connector_enabled_in_the_panel_and_stops_it_again(
    database_url: str, engine: Engine, tmp_path: Path, receiver: Receiver
) -> None:
    seed_users(engine)
    daemon = Daemon(database_url, tmp_path, env=SHORT_SETTINGS_REFRESH).start()
    try:
        assert requests.get(f"{daemon.url}/connectors/bitrix24/", timeout=5).status_code == 404
        poster = Poster(daemon.mango_url, API_KEY, API_SALT)
        before = scenarios.build("incoming_answered", seed=31, start=int(time.time()) - 90)
        assert not poster.play(before.notifications).errors
        _processed(engine, before.entry_id)
        assert _queued_for(engine, before.entry_id) == set()

        admin = Browser(daemon.url, "admin")
        saved_at = time.monotonic()
        assert admin.post("/admin/connectors/webhook", _webhook_form(receiver.url, SECRET)).status_code == 302
        assert admin.post("/admin/connectors/bitrix24", {"enabled": "y", **BITRIX24}).status_code == 302
        took = _first_delivery(poster, receiver) - saved_at
        assert took < 15, f"the enabled connector took {took:.1f}s to deliver"
        assert receiver.rejected == 0
        assert not any(hit["entry_id"] == before.entry_id for hit in receiver.accepted)
        _hooks_answer(f"{daemon.url}/connectors/bitrix24/")  # the HTTP workers got the connector too

        assert admin.post("/admin/connectors/webhook", {"url": receiver.url}).status_code == 302
        time.sleep(SETTINGS_REFRESH + 1.0)  # every process has re-read the saved settings by now
        two = scenarios.build("incoming_missed", seed=33, start=int(time.time()) - 30, customer="79165550003")
        assert not poster.play(two.notifications).errors
        _processed(engine, two.entry_id)
        assert "webhook" not in _queued_for(engine, two.entry_id)
        assert not any(hit["entry_id"] == two.entry_id for hit in receiver.accepted)
        assert "connector enabled connector=webhook" in daemon.log_path.read_text()
    finally:
        daemon.stop()


def test_turning_a_connector_off_lets_it_undo_its_setup_once_across_processes(engine: Engine) -> None:
    """YClients' telephony is switched off in YClients when the admin turns the connector off, by one of the
    processes that held it (each is told); turning it on again switches it on again."""
    with FakeYClients(partner_token=PARTNER, crm_token=CRM, user_token=USER, company_id=COMPANY) as fake:
        sources = Sources()
        sources.set(yclients=yclients_section(fake))
        processes = [_live(engine, sources)["yclients"] for _ in range(2)]  # e.g. the daemon and a web worker
        processes[0].ensure_enabled()
        assert fake.setups == ["enable"]
        sources.set(yclients={**yclients_section(fake), "enabled": False})
        for live in processes:
            assert not live.enabled
        assert fake.setups == ["enable", "disable"]  # once, whichever process saw it first
        sources.set(yclients=yclients_section(fake))
        for live in processes:
            assert live.enabled
        processes[1].ensure_enabled()
        assert fake.setups == ["enable", "disable", "enable"]
