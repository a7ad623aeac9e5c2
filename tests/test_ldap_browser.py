"""The Employees page's "Sync now" in Chromium against a real slapd: the button starts the sync without
leaving the page, the page follows it and shows the run and the new employees; a directory account signs
in through the login form and the header names its role."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import playwright.sync_api as playwright_api
import pytest
from sqlalchemy import Engine
from werkzeug.serving import make_server

from admin_module.users import create_user
from bridge.pbx.mango.simulator.command_server import CommandServer
from tests.browser import CHROMIUM, CHROMIUM_ARGS, requires_chromium
from tests.ldap_server import SERVICE_DN, SERVICE_PASSWORD, LdapServer, slapd  # noqa: F401
from tests.test_admin_support import API_KEY, API_SALT, PASSWORD, LivePanel, make_app

pytestmark = [requires_chromium, pytest.mark.filterwarnings("ignore::DeprecationWarning")]
USER_PASSWORD = "directory pass 2"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def panel(engine: Engine, slapd: LdapServer) -> Iterator[LivePanel]:  # noqa: F811
    store = engine.dialect.name  # the directory serves the module's runs on each store: entries of its own
    unit = slapd.add_unit(f"browser-{store}")
    person = slapd.add_person("vera", name="Vera Browser", extension="901", password=USER_PASSWORD, base=unit)
    group = slapd.add_group(f"cb-browser-leads-{store}", [person])
    ldap = {
        "url": slapd.url,
        "start_tls": True,
        "ca_file": slapd.ca_file,
        "bind_dn": SERVICE_DN,
        "password": SERVICE_PASSWORD,
        "base_dn": unit,
        "filter": "(objectClass=inetOrgPerson)",
        "fields": {"extension": "telephoneNumber", "name": "displayName"},
        "login": True,
        "roles": {group: "team_leader"},
    }
    create_user(engine, "admin", PASSWORD, "admin", lang="en")
    simulator = CommandServer(API_KEY, API_SALT, rate_limits=False).start()
    app = make_app(engine, simulator.url, sections={"ldap": ldap})
    live = LivePanel(app, simulator, make_server("127.0.0.1", 0, app, threaded=True))
    try:
        yield live
    finally:
        live.stop()
        simulator.stop(timeout=1)


def _sign_in(browser: Any, base: str, username: str, password: str) -> Any:
    page = browser.new_context(viewport={"width": 1200, "height": 760}).new_page()
    page.goto(f"{base}/admin/login")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#login-submit")
    page.wait_for_load_state()
    return page


def test_sync_now_and_a_directory_sign_in(browser: Any, panel: LivePanel) -> None:
    page = _sign_in(browser, panel.url, "admin", PASSWORD)
    page.goto(f"{panel.url}/admin/employees")
    assert page.locator('tr[data-extension="901"]').count() == 0
    page.click("#sync-ldap")
    page.wait_for_selector('#directory-runs tr.sync-run[data-state="done"]', timeout=15_000)
    row = page.locator('tr[data-extension="901"]')
    assert "Vera Browser" in row.inner_text() and "ldap" in row.inner_text()
    assert "from the panel" in page.locator("#directory-runs").inner_text()

    vera = _sign_in(browser, panel.url, "vera", USER_PASSWORD)
    who = vera.locator(".who")  # the name on screen, the role in its title and its accessible text
    assert who.get_attribute("title") == "руководитель группы"
    assert " ".join(who.text_content().split()) == "vera (руководитель группы)"
    page.reload()
    users = page.locator("#panel-users").inner_text()
    assert "team leader" in users and "directory group cn=cb-browser-leads" in users
