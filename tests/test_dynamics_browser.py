"""The Dynamics 365 channel page (/connectors/dynamics/cif) in a real browser (Playwright driving Debian's
Chromium) against `callbridge run`, with a stand-in of the Channel Integration Framework library served where
Dynamics serves the real one: sign-in with an access code, the ringing call opening the caller's contact
(`searchAndOpenRecords`), and a click-to-act reaching the Mango simulator as a signed `commands/callback`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import playwright.sync_api as sync_api
import pytest

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator import CommandServer
from bridge.pbx.mango.simulator.poster import Poster
from tests.browser import CHROMIUM, CHROMIUM_ARGS, requires_chromium
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes.dynamics import FakeDataverse, certificate
from tests.test_dynamics_e2e import SECRET_VALUE, USERS, config_file
from tests.test_realtime_e2e import cli_token, split_at_ringing

pytestmark = requires_chromium

# What the page needs of the CIF library (learn.microsoft.com, CIF 1.0/2.0 JavaScript reference): the
# CIFInitDone event, setClickToAct, addHandler and searchAndOpenRecords; the stand-in records every call.
CIF_STAND_IN = """
window.__cif = { opened: [], handlers: {}, clickToAct: null };
window.Microsoft = { CIFramework: {
  setClickToAct: (value) => { window.__cif.clickToAct = value; return Promise.resolve(); },
  addHandler: (name, handler) => { window.__cif.handlers[name] = handler; return Promise.resolve(true); },
  searchAndOpenRecords: (entity, query, searchOnly) => {
    window.__cif.opened.push({ entity, query, searchOnly });
    document.body.dataset.opened = String(window.__cif.opened.length);
    return Promise.resolve("{}");
  },
} };
window.dispatchEvent(new Event("CIFInitDone"));
"""


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[tuple[Daemon, CommandServer, FakeDataverse, str]]:
    cert, key = certificate(tmp_path)
    fake = FakeDataverse(cert=cert, key=key, client_secret=SECRET_VALUE).start()
    fake.systemusers.update(USERS.values())
    anna = fake.add_contact("Анна Соколова", owner=USERS["102"], telephone1="+7 (916) 123-45-67")
    env = {
        "CALLBRIDGE_CONFIG": str(config_file(tmp_path, fake)),
        "CALLBRIDGE_CONNECTORS_DYNAMICS_CLIENT_SECRET": SECRET_VALUE,
        "REQUESTS_CA_BUNDLE": str(cert),
        "SSL_CERT_FILE": str(cert),
    }
    daemon = Daemon(database_url, tmp_path, env=env)
    mango = CommandServer(API_KEY, API_SALT, bridge_url=daemon.mango_url).start()
    daemon.env["CALLBRIDGE_MANGO_API_URL"] = mango.url
    try:
        daemon.start()
        yield daemon, mango, fake, anna
    finally:
        mango.stop(timeout=1)
        daemon.stop()
        fake.stop()


@pytest.fixture
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


def test_the_channel_page_opens_the_caller_and_places_clicked_calls(
    stack: tuple[Daemon, CommandServer, FakeDataverse, str], browser: object
) -> None:
    daemon, mango, fake, anna = stack
    expect = sync_api.expect
    context = browser.new_context()  # type: ignore[attr-defined]
    context.route(
        f"{fake.url}/webresources/Widget/msdyn_ciLibrary.js",
        lambda route: route.fulfill(status=200, content_type="text/javascript", body=CIF_STAND_IN),
    )
    page = context.new_page()
    response = page.goto(f"{daemon.url}/connectors/dynamics/cif")
    assert (
        response is not None
        and f"frame-ancestors 'self' {fake.url}" in response.headers["content-security-policy"]
    )

    # A wrong access code is refused; the right one connects the page as extension 101.
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", "not-a-valid-code")
    page.click("#login button")
    expect(page.locator("#status")).to_have_attribute("data-state", "error")
    page.fill("#token", cli_token(daemon, "--extension", "101"))
    page.click("#login button")
    expect(page.locator("#status")).to_have_text("Connected as extension 101")
    assert page.evaluate("window.__cif.clickToAct") is True

    # Anna calls and 101's phone rings: the page opens her contact in Dynamics.
    scenario = scenarios.build("incoming_answered", seed=61, customer="79161234567", extensions=("101",))
    head, tail = split_at_ringing(scenario)
    poster = Poster(daemon.mango_url, API_KEY, API_SALT)
    assert not poster.play(head).errors
    expect(page.locator("body")).to_have_attribute("data-opened", "1", timeout=15_000)
    assert page.evaluate("window.__cif.opened") == [
        {"entity": "contact", "query": f"?$select=fullname&$filter=contactid eq {anna}", "searchOnly": False}
    ]
    expect(page.locator("#calls li")).to_contain_text("Анна Соколова")
    assert not poster.play(tail).errors

    # The rep clicks a phone number in Dynamics: Mango is asked, signed, to ring 101 and dial it.
    clicked = {
        "value": "+7 (916) 765-43-21",
        "name": "telephone1",
        "format": "phone",
        "entityLogicalName": "contact",
    }
    page.evaluate("data => window.__cif.handlers.onclicktoact(data)", json.dumps(clicked))
    sent = mango.wait_for("commands/callback", timeout=10)
    assert sent.signature_valid
    assert (sent.json["from"]["extension"], sent.json["to_number"]) == ("101", "79167654321")
    expect(page.locator("#calls li").first).to_contain_text("Calling +7 (916) 765-43-21")
    poster.close()
    context.close()
