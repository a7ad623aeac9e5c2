"""The panel in a real browser (Playwright driving Debian's Chromium), served in-process over the real store
next to the Mango simulator. The same scenarios run against `callbridge run` in test_admin_e2e.py.

Set CALLBRIDGE_ADMIN_SCREENSHOTS=docs/img to refresh the documentation's screenshots while testing.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_api
import pytest
from sqlalchemy import Engine

from tests.browser import CHROMIUM, CHROMIUM_ARGS, requires_chromium
from tests.test_admin_stats import CALLS
from tests.test_admin_support import (
    API_KEY,
    API_SALT,
    PASSWORD,
    LivePanel,
    add_call,
    add_employee,
    add_recording,
    live_panel,
    seed_users,
)

SCREENSHOTS = os.environ.get("CALLBRIDGE_ADMIN_SCREENSHOTS")

pytestmark = requires_chromium


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def panel(engine: Engine) -> Iterator[LivePanel]:
    seed_users(engine)
    yield from live_panel(engine)


def shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), full_page=True, animations="disabled")


def open_as(browser: Any, base: str, username: str, *, shoot: str | None = None) -> Any:
    context = browser.new_context(viewport={"width": 1200, "height": 760})
    page = context.new_page()
    page.goto(f"{base}/admin/login")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    if shoot:
        shot(page, shoot)
    page.click("#login-submit")
    page.wait_for_load_state()
    return page


def test_login_save_settings_and_test_the_connection(browser: Any, panel: LivePanel) -> None:
    page = open_as(browser, panel.url, "admin", shoot="admin-login.png")
    assert page.url.endswith("/admin/calls")
    page.click("#nav-settings")
    page.fill("#api_url", panel.simulator.url)
    page.fill("#api_key", API_KEY)
    page.fill("#api_salt", API_SALT)
    page.click("#mango-preset")
    assert "81.88.80.132" in page.input_value("#allowed_ips")
    page.check("#ip_open")
    page.click("#save")
    page.wait_for_load_state()
    assert "Settings saved" in page.inner_text("main")
    assert page.input_value("#api_salt") == ""  # the salt is never sent back
    page.click("#test-connection")
    page.wait_for_load_state()
    assert page.inner_text("#test-result") == "Connection to the server established successfully"
    shot(page, "admin-settings.png")
    page.fill("#api_salt", "a-wrong-salt")
    page.click("#test-connection")
    page.wait_for_load_state()
    message = page.inner_text("#test-result")
    assert "Wrong API salt" in message and "3102" in message
    assert "a-wrong-salt" not in page.content()


def test_call_in_the_log_plays_its_recording_through_callbridge(
    browser: Any, engine: Engine, panel: LivePanel
) -> None:
    from bridge.config import Settings
    from bridge.settings_store import SettingsStore

    SettingsStore(engine, Settings(), fixed=frozenset()).save(
        {"mango.api_url": panel.simulator.url, "mango.api_key": API_KEY, "mango.api_salt": API_SALT}
    )
    add_employee(engine, "101", "Анна Петрова")
    add_call(
        engine,
        "hung-up-1",
        answered_by="101",
        answered_at=time.time(),
        extensions=["101"],
        status="ended",
        talk_seconds=42,
        wait_seconds=5,
        customer_number="74951112233",
    )
    # An id no other run used: on PostgreSQL the recordings cache is the shared ./var/recordings-cache.
    add_recording(engine, "hung-up-1", f"MToxMDAwMDo{uuid.uuid4().hex}==")
    page = open_as(browser, panel.url, "admin")
    row = page.locator('tr[data-entry="hung-up-1"]')
    assert "74951112233" in row.inner_text() and "Анна Петрова" in row.inner_text()
    src = row.locator("audio").get_attribute("src")
    assert src.startswith("/admin/recordings/")
    with page.expect_response(lambda r: "/admin/recordings/" in r.url) as info:
        state = page.evaluate(
            """() => new Promise((resolve) => {
                const a = document.querySelector('tr[data-entry="hung-up-1"] audio');
                a.addEventListener('loadeddata', () => resolve({ok: true, duration: a.duration}));
                a.addEventListener('error', () => resolve({ok: false, code: a.error && a.error.code}));
                a.preload = 'auto';
                a.load();
            })"""
        )
    response = info.value
    # Chromium asks `Range: bytes=0-`; a 206 with Content-Range tells it the player can seek.
    assert response.status == 206 and response.headers["content-type"].startswith("audio/mpeg")
    assert response.headers["content-range"].startswith("bytes 0-")
    assert state["ok"], state
    assert any(r.path == "queries/recording/post" for r in panel.simulator.received)
    shot(page, "admin-calls.png")


def test_missed_call_is_listed_and_one_click_calls_back(
    browser: Any, engine: Engine, panel: LivePanel
) -> None:
    from bridge.config import Settings
    from bridge.settings_store import SettingsStore

    SettingsStore(engine, Settings(), fixed=frozenset()).save(
        {"mango.api_url": panel.simulator.url, "mango.api_key": API_KEY, "mango.api_salt": API_SALT}
    )
    add_call(
        engine,
        "missed-7",
        status="missed",
        missed=True,
        extensions=["101"],
        customer_number="74957770077",
        started_at=time.time() - 300,
    )
    page = open_as(browser, panel.url, "admin")
    page.click("#nav-missed")
    row = page.locator('tr[data-entry="missed-7"]')
    assert "open" in row.inner_text()
    shot(page, "admin-missed.png")
    row.locator("button.call-back").click()
    page.wait_for_load_state()
    command = panel.simulator.wait_for("commands/callback", timeout=5)
    assert command.json["from"]["extension"] == "101" and command.json["to_number"] == "74957770077"
    assert "Calling" in page.inner_text("main")


def test_accountant_sees_statistics_with_a_chart_and_gets_403_on_settings(
    browser: Any, engine: Engine, panel: LivePanel
) -> None:
    for call in CALLS:
        add_call(engine, **{"status": "answered" if call.get("answered_by") else "ended", **call})
    page = open_as(browser, panel.url, "accountant")
    assert page.locator("#nav-settings").count() == 0
    page.goto(f"{panel.url}/admin/stats?date_from=2026-03-01&date_to=2026-03-04&period=day")
    assert page.locator("#chart svg rect.bar").count() == 6
    total = page.locator('tr.total[data-period="2026-03-02"]').inner_text()
    assert "50%" in total
    shot(page, "admin-stats.png")
    response = page.goto(f"{panel.url}/admin/settings")
    assert response.status == 403


def test_post_without_csrf_token_is_refused_in_the_browser(browser: Any, panel: LivePanel) -> None:
    page = open_as(browser, panel.url, "admin")
    status = page.evaluate(
        """async () => {
            const body = new URLSearchParams({api_key: 'evil', ip_mode: 'open'});
            const r = await fetch('/admin/settings', {method: 'POST', body});
            return r.status;
        }"""
    )
    assert status == 400


def test_script_as_a_caller_name_renders_as_text(browser: Any, engine: Engine, panel: LivePanel) -> None:
    evil = "<script>alert(1)</script>"
    add_employee(engine, "101", evil)
    add_call(engine, "xss-1", answered_by="101", customer_number=evil)
    page = open_as(browser, panel.url, "admin")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.reload()
    assert evil in page.locator('tr[data-entry="xss-1"] td.employee').inner_text()
    page.wait_for_timeout(200)
    assert dialogs == []


def test_the_widget_block_list_in_the_browser(browser: Any, engine: Engine, panel: LivePanel) -> None:
    page = open_as(browser, panel.url, "admin")
    page.goto(f"{panel.url}/admin/widget/blocked")
    assert page.locator("#widget-blocked-none").is_visible()
    page.select_option("#kind", "phone")
    page.fill("#value", "8 (916) 123-45-67")
    page.fill("#reason", "calls every hour <b>at night</b>")
    page.click("#widget-block-submit")
    page.wait_for_load_state()
    row = page.locator('#widget-blocked tr[data-value="+79161234567"]')
    assert row.locator("td.reason").inner_text() == "calls every hour <b>at night</b>"
    page.select_option("#kind", "ip")
    page.fill("#value", "not an address")
    page.click("#widget-block-submit")
    page.wait_for_load_state()
    assert page.locator("#error-value").is_visible()
    page.fill("#value", "203.0.113.0/24")
    page.fill("#reason", "")
    page.click("#widget-block-submit")
    page.wait_for_load_state()
    assert page.locator("#widget-blocked tbody tr").count() == 2
    shot(page, "admin-blocklist.png")
    row.locator("button.unblock").click()
    page.wait_for_load_state()
    assert page.locator('#widget-blocked tr[data-value="+79161234567"]').count() == 0


def test_the_russian_header_fits_one_line_at_1366_px_and_the_keyboard_skips_it(
    browser: Any, panel: LivePanel
) -> None:
    page = open_as(browser, panel.url, "admin")
    page.set_viewport_size({"width": 1366, "height": 768})
    page.select_option("#lang", "ru")  # choosing alone changes nothing (no change of context on input)
    assert page.locator("html").get_attribute("lang") == "en"
    page.click("#lang-switch")
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "ru"
    layout = page.evaluate(
        """() => ({
            header: document.querySelector('header.top').getBoundingClientRect().height,
            widths: [...document.querySelector('header.top').children]
                .map((el) => [el.className || el.tagName, Math.round(el.getBoundingClientRect().width)]),
        })"""
    )
    assert layout["header"] < 48, f"the header wraps onto a second line: {layout}"
    page.keyboard.press("Tab")  # the first stop is the skip link, shown when focused
    skip = page.locator("a.skip-link")
    assert skip.evaluate("el => el === document.activeElement") and skip.is_visible()
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.context.close()
