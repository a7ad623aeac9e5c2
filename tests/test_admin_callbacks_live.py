"""The panel's callback-request list (widget requests from the real widget service) and the live-popup
session each panel page opens: who gets which hub token, and the popup's JSON click-to-call."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Engine, update

from admin_module.users import create_user
from bridge.pbx.mango.client import MangoClient
from bridge.pbx.mango.simulator.command_server import CommandServer
from tests.test_admin_panel import save_settings
from tests.test_admin_support import (
    API_KEY,
    API_SALT,
    PASSWORD,
    add_call,
    csrf_of,
    login,
    make_app,
    seed_users,
)
from widget.service import CallbackForm, WidgetService
from widget.settings import SiteConfig
from widget.sites import load_site, save_site
from widget.tables import widget_requests

ORIGIN = "https://shop.example"
Clients = tuple[FlaskClient, FlaskClient, FlaskClient]  # admin (101), manager (102), accountant


@pytest.fixture
def simulator() -> Iterator[CommandServer]:
    server = CommandServer(API_KEY, API_SALT, rate_limits=False).start()
    yield server
    server.stop(timeout=1)


@pytest.fixture
def app_client(
    engine: Engine, simulator: CommandServer
) -> Iterator[tuple[FlaskClient, FlaskClient, FlaskClient]]:
    seed_users(engine)
    app = make_app(engine, simulator.url)
    clients = []
    for name in ("admin", "manager", "accountant"):
        client = app.test_client()
        login(client, name)
        clients.append(client)
    yield clients[0], clients[1], clients[2]


def _request(engine: Engine, simulator: CommandServer, phone: str, page: str) -> str:
    service = WidgetService(
        engine, {}, lambda: MangoClient(API_KEY, API_SALT, simulator.url, timeout=5), site_cache_ttl=0
    )
    site = load_site(engine, "shop")
    assert site is not None
    now = time.time()
    form = CallbackForm(
        phone=phone,
        form_token=service.form_token(site, now - 5),
        visitor_id="visitor-0001",
        page=page,
        referrer=None,
        lang="ru",
        utm={"utm_source": "ya"},
    )
    return service.submit(site, form, "203.0.113.7", now)["token"]


def test_callback_requests_are_listed_with_their_state_and_a_call_button(
    engine: Engine, simulator: CommandServer, app_client: Clients
) -> None:
    admin, manager, accountant = app_client
    config = {
        "name": "Shop",
        "origins": [ORIGIN],
        "group": "200",
        "line": "74951234567",
        "timezone": "Europe/Moscow",
        "limits": {"min_fill_seconds": 2},
    }
    save_site(engine, "shop", SiteConfig.model_validate(config))
    first = _request(engine, simulator, "+79161230001", "https://shop.example/catalog")
    second = _request(engine, simulator, "+79161230002", "javascript:alert(1)")
    # The second one failed: nobody answered (as the widget service records it).
    with engine.begin() as conn:
        conn.execute(
            update(widget_requests)
            .where(widget_requests.c.token == second)
            .values(status="failed", failure="managers_unavailable", finished_at=time.time())
        )
    page = manager.get("/admin/callbacks")
    assert page.status_code == 200
    html = page.text
    assert html.index("+79161230002") < html.index("+79161230001")  # newest first
    assert 'href="https://shop.example/catalog"' in html
    assert "javascript:" not in html  # only http(s) page addresses are shown, as links
    assert "no manager answered" in html
    assert "utm_source=ya" in html
    # Each number has its one-click callback form.
    assert html.count('class="call-back"') == 2
    only_failed = manager.get("/admin/callbacks?state=failed").text
    assert "+79161230002" in only_failed and "+79161230001" not in only_failed
    assert first  # the first request is in whatever state the widget gave it: listed unfiltered above
    assert accountant.get("/admin/callbacks").status_code == 200


def test_live_session_gives_each_user_the_right_hub_token(engine: Engine, app_client: Clients) -> None:
    admin, manager, accountant = app_client
    app = admin.application
    mine = manager.get("/admin/live/session")
    assert mine.status_code == 200
    assert mine.json["identity"]["role"] == "employee" and mine.json["identity"]["extension"] == "102"
    assert mine.json["token"] and mine.json["expires_at"] > time.time()
    assert admin.get("/admin/live/session").json["identity"]["extension"] == "101"
    assert accountant.get("/admin/live/session").status_code == 403
    assert app.test_client().get("/admin/live/session").status_code == 401
    # An administrator without an extension watches every call.
    create_user(engine, "boss", PASSWORD, "admin", lang="en")
    boss = app.test_client()
    login(boss, "boss")
    assert boss.get("/admin/live/session").json["identity"]["role"] == "supervisor"
    # The pages carry the live client only for users who get popups.
    assert 'id="live-config"' in manager.get("/admin/calls").text
    assert 'id="live-config"' not in accountant.get("/admin/calls").text
    assert admin.get("/admin/live/live.js").status_code == 200
    assert admin.get("/admin/live/secret.py").status_code == 404


def test_popup_call_button_places_the_call_and_answers_json(
    simulator: CommandServer, app_client: Clients
) -> None:
    admin, manager, _ = app_client
    save_settings(admin, api_url=simulator.url, api_key=API_KEY, api_salt=API_SALT)
    token = csrf_of(manager.get("/admin/calls").text)
    answer = manager.post(
        "/admin/callback",
        data={"csrf_token": token, "number": "+7 916 123-45-67"},
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json["command_id"]
    command = simulator.wait_for("commands/callback", timeout=10)
    assert command.json["from"]["extension"] == "102"
    assert command.json["to_number"] == "79161234567"
    bad = manager.post(
        "/admin/callback",
        data={"csrf_token": token, "number": "not a number"},
        headers={"Accept": "application/json"},
    )
    assert bad.status_code == 422 and bad.json["error"]
    refused = manager.post(
        "/admin/callback", data={"number": "+79161234567"}, headers={"Accept": "application/json"}
    )
    assert refused.status_code == 400  # no CSRF token


def test_call_page_checks_access_and_lists_other_calls_with_the_number(
    engine: Engine, app_client: Clients
) -> None:
    admin, manager, accountant = app_client
    now = time.time()
    add_call(engine, "E-1", answered_by="101", extensions=["101"], started_at=now - 600, talk_seconds=30)
    add_call(engine, "E-2", direction="outgoing", answered_by="101", started_at=now - 300)
    add_call(engine, "E-3", customer_number="79990001122", answered_by="102", extensions=["102"])
    page = accountant.get("/admin/calls/E-1")
    assert page.status_code == 200
    assert 'data-entry="E-2"' in page.text and 'data-entry="E-3"' not in page.text  # same number only
    assert manager.get("/admin/calls/E-1").status_code == 403  # rang at 101, not at the manager's 102
    assert manager.get("/admin/calls/E-3").status_code == 200
    assert admin.get("/admin/calls/nope").status_code == 404
    # No lookup connector runs in this app: the card says the caller is unknown.
    assert "Unknown caller" in admin.get("/admin/calls/E-1").text
    assert 'href="/admin/calls/E-1"' in admin.get("/admin/calls").text
