"""The employees page shows, per connector, the CRM user each extension is mapped to: the connector's
configured map overridden on top of its imported one, read through the running connector."""

from __future__ import annotations

import re

from flask import Flask
from sqlalchemy import Engine

from admin_module.blueprint import make_admin_blueprint
from admin_module.settings_store import SettingsStore
from bridge.config import Settings
from bridge.connector_api import ConnectorContext
from bridge.connectors_runtime import mango_client
from bridge.store.connector_state import SqlStateStore
from connectors.amocrm import AmoCrmConnector
from connectors.webhook import WebhookConnector
from tests.test_admin_support import add_employee, login, seed_users


def test_each_extension_shows_its_crm_user_per_connector(engine: Engine) -> None:
    seed_users(engine)
    for extension, name in (("101", "Anna"), ("102", "Oleg"), ("103", "Pavel")):
        add_employee(engine, extension, name)
    amo = AmoCrmConnector(
        {"account_url": "https://shop.amocrm.ru", "long_lived_token": "t" * 40, "users": {"101": "5001"}}
    )
    amo.bind(ConnectorContext(state=SqlStateStore(engine, "amocrm")))
    amo.employees.save_imported({"101": "4000", "102": "5002"})  # the configured 101 wins over the import
    hook = WebhookConnector({"url": "https://example.com/hook", "secret": "s" * 32})  # maps no users
    settings = Settings()
    app = Flask("employees-test")
    app.register_blueprint(
        make_admin_blueprint(
            settings,
            engine,
            mango_client_factory=mango_client,
            secret_key="test-secret-" + "x" * 32,
            secure_cookies=False,
            store=SettingsStore(engine, settings),
            connectors=lambda: {"amocrm": amo, "webhook": hook},
        )
    )
    client = app.test_client()
    login(client, "admin")
    html = client.get("/admin/employees").text
    assert "amocrm user" in html and "webhook user" not in html
    cells = dict(
        re.findall(
            r'<tr data-extension="(\d+)">.*?<td class="crm-user" data-crm="amocrm">([^<]*)</td>', html, re.S
        )
    )
    assert cells == {"101": "5001", "102": "5002", "103": "—"}
