"""Shared helpers for the admin panel's tests (no tests here): an in-process panel on the real store,
seeded calls, and a logged-in client. Browser tests run the same app under Werkzeug in a thread."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from flask import Flask
from sqlalchemy import Engine, insert
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from admin_module.blueprint import make_admin_blueprint
from admin_module.users import create_user
from bridge.config import Settings
from bridge.connector_api import Connector
from bridge.connectors_runtime import mango_client
from bridge.pbx.mango.simulator.command_server import CommandServer
from bridge.settings_store import SettingsStore
from bridge.store.schema import calls, employees, recordings

API_KEY = "test-vpbx-key"
API_SALT = "test-vpbx-salt-0123456789"
PASSWORD = "correct horse battery"


def make_app(
    engine: Engine,
    simulator_url: str | None = None,
    *,
    fixed: frozenset[str] = frozenset(),
    credentials: bool = False,
    connectors: Mapping[str, Connector] | None = None,
    sections: Mapping[str, Any] | None = None,
    client_factory: Any = mango_client,
) -> Flask:
    """The panel alone (as bridge/web/app.py registers it), over the real store. `credentials` puts the
    simulator's key and salt in the config; `connectors` are the running connectors the panel sees;
    `sections` more settings (e.g. `ldap`); `client_factory` builds the Mango client."""
    mango: dict[str, str] = {"api_url": simulator_url} if simulator_url else {}
    if credentials:
        mango.update(api_key=API_KEY, api_salt=API_SALT)
    settings = Settings.model_validate({**({"mango": mango} if mango else {}), **(sections or {})})
    store = SettingsStore(engine, settings, fixed=fixed)
    app = Flask("admin-test")
    app.register_blueprint(
        make_admin_blueprint(
            settings,
            engine,
            mango_client_factory=client_factory,
            secret_key="test-secret-" + "x" * 32,
            secure_cookies=False,
            store=store,
            connectors=(lambda: connectors) if connectors is not None else None,
        )
    )
    return app


def seed_users(engine: Engine) -> None:
    create_user(engine, "admin", PASSWORD, "admin", lang="en", extension="101")
    create_user(engine, "manager", PASSWORD, "manager", lang="en", extension="102")
    create_user(engine, "accountant", PASSWORD, "accountant", lang="en")


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    assert found, "no CSRF token in the page"
    return found.group(1)


def panel_session(base_url: str, username: str = "admin", password: str = PASSWORD) -> requests.Session:
    """An HTTP session logged into the panel at `base_url` through its login form."""
    http = requests.Session()
    page = http.get(f"{base_url}/admin/login", timeout=10)
    done = http.post(
        f"{base_url}/admin/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(page.text)},
        allow_redirects=False,
        timeout=10,
    )
    assert done.status_code == 302, done.text
    return http


def login(client: Any, username: str, password: str = PASSWORD) -> Any:
    page = client.get("/admin/login")
    return client.post(
        "/admin/login", data={"username": username, "password": password, "csrf_token": csrf_of(page.text)}
    )


def add_call(engine: Engine, entry_id: str, **values: Any) -> None:
    now = time.time()
    row = {
        "entry_id": entry_id,
        "direction": "incoming",
        "status": "ended",
        "customer_number": "74959998877",
        "line_number": "74951234567",
        "extensions": "[]",
        "missed": False,
        "closed": True,
        "started_at": now,
        "updated_at": now,
        "emitted": "[]",
    }
    if isinstance(values.get("extensions"), list):
        values["extensions"] = json.dumps(values["extensions"])
    row.update(values)
    with engine.begin() as conn:
        conn.execute(insert(calls).values(**row))


def add_recording(engine: Engine, entry_id: str, recording_id: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(recordings).values(
                recording_id=recording_id,
                entry_id=entry_id,
                ready=True,
                state="Completed",
                updated_at=time.time(),
            )
        )


def add_employee(engine: Engine, extension: str, name: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            insert(employees).values(extension=extension, name=name, numbers="[]", updated_at=time.time())
        )


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any) -> None:
        pass


@dataclass
class LivePanel:
    """The panel served by Werkzeug in a thread, next to the Mango simulator."""

    app: Flask
    simulator: CommandServer
    server: BaseWSGIServer
    thread: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def live_panel(engine: Engine) -> Iterator[LivePanel]:
    simulator = CommandServer(API_KEY, API_SALT, rate_limits=False).start()
    app = make_app(engine, simulator.url)
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=_Quiet)
    panel = LivePanel(app, simulator, server)
    try:
        yield panel
    finally:
        panel.stop()
        simulator.stop(timeout=1)
