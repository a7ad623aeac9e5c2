"""The admin panel inside the real daemon (`callbridge run`), with calls made through the Mango simulator:
webhooks -> tracker -> store -> panel. Skipped while the daemon does not serve `/admin` yet (not wired)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_api
import pytest
import requests

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator.command_server import CommandServer
from bridge.pbx.mango.simulator.poster import Poster
from tests.browser import CHROMIUM, CHROMIUM_ARGS, requires_chromium
from tests.daemon import API_KEY, API_SALT, Daemon, wait_closed
from tests.test_admin_support import PASSWORD

pytestmark = requires_chromium


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[tuple[Daemon, CommandServer]]:
    simulator = CommandServer(API_KEY, API_SALT, rate_limits=False).start()
    # The salt is left to the panel (an empty variable fixes nothing); key and URL come from the environment.
    daemon = Daemon(
        database_url,
        tmp_path,
        env={"CALLBRIDGE_MANGO_API_URL": simulator.url, "CALLBRIDGE_MANGO_API_SALT": ""},
    )
    simulator.bridge_url = daemon.mango_url
    daemon.start()
    try:
        assert requests.get(f"{daemon.url}/admin/login", timeout=5).status_code == 200
        daemon.create_user("admin", PASSWORD, "admin", extension="101")
        daemon.create_user("buh", PASSWORD, "accountant")
        yield daemon, simulator
    finally:
        daemon.stop()
        simulator.stop(timeout=1)


def login(browser: Any, daemon: Daemon, username: str) -> Any:
    page = browser.new_context(viewport={"width": 1200, "height": 760}).new_page()
    page.goto(f"{daemon.url}/admin/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_load_state()
    return page


def test_panel_in_the_daemon(stack: tuple[Daemon, CommandServer]) -> None:
    daemon, simulator = stack
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = login(browser, daemon, "admin")
            # Settings: the key and URL are locked (environment); the salt is saved from the panel.
            page.goto(f"{daemon.url}/admin/settings")
            assert page.locator("#api_key").is_disabled()
            page.fill("#api_salt", "a-wrong-salt")
            page.click("#test-connection")
            page.wait_for_load_state()
            assert "Wrong API salt" in page.inner_text("#test-result")
            page.fill("#api_salt", API_SALT)
            page.click("#save")
            page.wait_for_load_state()
            page.click("#test-connection")
            page.wait_for_load_state()
            assert page.inner_text("#test-result") == "Connection to the server established successfully"

            # A call, hung up, with its recording: webhooks signed with the salt saved a moment ago.
            poster = Poster(daemon.mango_url, API_KEY, API_SALT)
            answered = scenarios.build("incoming_answered", seed=7, start=int(time.time()) - 120)
            missed = scenarios.build(
                "incoming_missed", seed=8, start=int(time.time()) - 60, customer="79165550001"
            )
            for scenario in (answered, missed):
                report = poster.play(scenario.notifications)
                assert not report.errors, report.errors
                wait_closed(daemon, scenario.entry_id, recordings=len(scenario.expected.recording_ids))
            page.goto(f"{daemon.url}/admin/calls")
            row = page.locator(f'tr[data-entry="{answered.entry_id}"]')
            assert row.count() == 1
            with page.expect_response(lambda r: "/admin/recordings/" in r.url) as info:
                ok = page.evaluate(
                    """(id) => new Promise((resolve) => {
                        const a = document.querySelector(`tr[data-entry="${id}"] audio`);
                        a.addEventListener('loadeddata', () => resolve(true));
                        a.addEventListener('error', () => resolve(false));
                        a.preload = 'auto'; a.load();
                    })""",
                    answered.entry_id,
                )
            assert ok and info.value.status == 206  # Chromium asks `Range: bytes=0-`: the player can seek

            # The missed call, and one click to call back.
            page.goto(f"{daemon.url}/admin/missed")
            page.locator(f'tr[data-entry="{missed.entry_id}"] button.call-back').click()
            page.wait_for_load_state()
            command = simulator.wait_for("commands/callback", timeout=10)
            assert command.json["from"]["extension"] == "101"

            # CSRF: a POST without the token is refused.
            status = page.evaluate("async () => (await fetch('/admin/settings', {method: 'POST'})).status")
            assert status == 400

            # The accountant: statistics yes, settings no.
            page = login(browser, daemon, "buh")
            assert page.goto(f"{daemon.url}/admin/stats").status == 200
            assert page.locator("#chart svg").count() == 1
            assert page.goto(f"{daemon.url}/admin/settings").status == 403
        finally:
            browser.close()
