"""The employees page shows, per connector, the CRM user each extension is mapped to (the connector's
configured map over its imported one, read through the running connector), and imports a CRM's users with
one click: amoCRM's fake paired with the Mango simulator's employees by e-mail."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine

from bridge.connector_api import Connector, ConnectorContext
from bridge.pbx.mango.simulator.command_server import CommandServer
from bridge.store.connector_state import SqlStateStore
from connectors.amocrm import AmoCrmConnector
from connectors.webhook import WebhookConnector
from tests.fakes.amocrm import FakeAmoCrm
from tests.test_admin_support import API_KEY, API_SALT, add_employee, csrf_of, login, make_app, seed_users

LLT = "llt-panel-" + "0a1b2c3d" * 6


@pytest.fixture
def amo_fake() -> Iterator[FakeAmoCrm]:
    with FakeAmoCrm(long_lived_token=LLT) as server:
        yield server


@pytest.fixture
def mango() -> Iterator[CommandServer]:
    with CommandServer(API_KEY, API_SALT, rate_limits=False) as server:
        yield server


def panel(engine: Engine, mango: CommandServer, connectors: dict[str, Connector]) -> FlaskClient:
    seed_users(engine)
    client = make_app(engine, mango.url, credentials=True, connectors=connectors).test_client()
    login(client, "admin")
    return client


def crm_cells(html: str, crm: str) -> dict[str, str]:
    pattern = rf'<tr data-extension="(\d+)">.*?<td class="crm-user" data-crm="{crm}">([^<]*)</td>'
    return dict(re.findall(pattern, html, re.S))


def amo_connector(engine: Engine, fake: FakeAmoCrm, **settings: Any) -> AmoCrmConnector:
    amo = AmoCrmConnector({"account_url": fake.url, "long_lived_token": LLT, **settings})
    amo.bind(ConnectorContext(state=SqlStateStore(engine, "amocrm")))
    return amo


def test_each_extension_shows_its_crm_user_per_connector(
    engine: Engine, amo_fake: FakeAmoCrm, mango: CommandServer
) -> None:
    for extension, name in (("101", "Anna"), ("102", "Oleg"), ("103", "Pavel")):
        add_employee(engine, extension, name)
    amo = amo_connector(engine, amo_fake, users={"101": "5001"})
    amo.employees.save_imported({"101": "4000", "102": "5002"})  # the configured 101 wins over the import
    hook = WebhookConnector({"url": "https://example.com/hook", "secret": "s" * 32})  # maps no users
    html = panel(engine, mango, {"amocrm": amo, "webhook": hook}).get("/admin/employees").text
    assert "amocrm user" in html and "webhook user" not in html
    assert crm_cells(html, "amocrm") == {"101": "5001", "102": "5002", "103": "—"}


def test_one_click_imports_the_crm_users_by_email(
    engine: Engine, amo_fake: FakeAmoCrm, mango: CommandServer
) -> None:
    for extension, name in (("101", "Anna"), ("102", "Oleg"), ("103", "Pavel")):
        add_employee(engine, extension, name)
    client = panel(engine, mango, {"amocrm": amo_connector(engine, amo_fake)})
    page = client.get("/admin/employees").text
    assert crm_cells(page, "amocrm") == {"101": "—", "102": "—", "103": "—"}  # nothing mapped yet
    answer = client.post(
        "/admin/employees/import-crm",
        data={"csrf_token": csrf_of(page), "connector": "amocrm"},
        follow_redirects=True,
    )
    assert "extension(s) matched to amoCRM users by e-mail" in answer.text
    assert [r.path for r in mango.received if r.path == "config/users/request"]
    assert crm_cells(answer.text, "amocrm")["101"] == "1001"
    # Unknown connector, and no CSRF token: refused, nothing imported.
    bad = client.post(
        "/admin/employees/import-crm",
        data={"csrf_token": csrf_of(page), "connector": "nope"},
        follow_redirects=True,
    )
    assert "nope" in bad.text
    assert client.post("/admin/employees/import-crm", data={"connector": "amocrm"}).status_code == 400
