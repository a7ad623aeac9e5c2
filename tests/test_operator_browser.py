"""The operator page in a real browser (Playwright driving Debian's Chromium) against `callbridge run`:
login, the popup with the caller's name, closing when a colleague answers, today's calls, and
click-to-call reaching the Mango simulator as a signed `commands/callback`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import playwright.sync_api as sync_api
import pytest

from bridge.config import Settings
from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator import CommandServer
from bridge.pbx.mango.simulator.poster import Poster
from bridge.settings_store import SettingsStore
from bridge.store.engine import make_engine
from bridge.store.migrate import upgrade
from tests.browser import CHROMIUM, CHROMIUM_ARGS, requires_chromium
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes.realtime_client import DEMO_NAME, demo_env
from tests.test_realtime_e2e import answer_index, cli_token, split_at_ringing

pytestmark = requires_chromium


def _company_zone() -> str:
    """A company zone far from the browser's New York whose day is not about to turn over (the page lists
    today's calls only), so the test means the same at any hour it runs."""
    for name in ("Asia/Vladivostok", "Europe/Moscow", "Asia/Kolkata"):
        hour = datetime.now(ZoneInfo(name)).hour
        if 1 <= hour <= 22:
            return name
    raise AssertionError("no candidate zone is away from midnight")


COMPANY_ZONE = _company_zone()
# Browser notifications: a stand-in records what the page shows, with permission already granted.
NOTIFICATION_STUB = """
window.__notes = [];
window.Notification = class {
  constructor(title, options) { window.__notes.push({title, body: (options || {}).body}); }
  close() {}
  static get permission() { return "granted"; }
  static requestPermission() { return Promise.resolve("granted"); }
};
"""


@pytest.fixture
def browser() -> Iterator[object]:
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[tuple[Daemon, CommandServer]]:
    daemon = Daemon(database_url, tmp_path, env=demo_env())
    engine = make_engine(database_url)
    upgrade(engine)  # the panel's saved company time zone, as an administrator set it
    SettingsStore(engine, Settings(), fixed=frozenset()).save({"admin.timezone": COMPANY_ZONE})
    engine.dispose()
    mango = CommandServer(API_KEY, API_SALT, bridge_url=daemon.mango_url).start()
    daemon.env["CALLBRIDGE_MANGO_API_URL"] = mango.url
    daemon.start()
    yield daemon, mango
    mango.stop(timeout=1)
    daemon.stop()


def test_operator_page_popup_close_on_answer_elsewhere_and_click_to_call(
    stack: tuple[Daemon, CommandServer], browser: object
) -> None:
    daemon, mango = stack
    expect = sync_api.expect
    poster = Poster(daemon.mango_url, API_KEY, API_SALT)

    # 101 logs in with the access code an administrator printed.
    alice_ctx = browser.new_context(timezone_id="America/New_York", locale="en-US")  # type: ignore[attr-defined]
    alice_ctx.add_init_script(NOTIFICATION_STUB)
    alice = alice_ctx.new_page()
    alice.goto(f"{daemon.url}/operator")
    expect(alice.locator("#login")).to_be_visible()
    alice.fill("#login-token", "not-a-valid-code")
    alice.click("#login-submit")
    expect(alice.locator("#login-error")).to_contain_text("invalid token")
    alice.fill("#login-token", cli_token(daemon, "--extension", "101"))
    alice.click("#login-submit")
    expect(alice.locator("#who")).to_have_text("Extension 101")
    expect(alice.locator("body")).to_have_attribute("data-connected", "yes")

    # 102's page is embedded the way a CRM iframe does it: the token in the URL.
    bob = browser.new_page()  # type: ignore[attr-defined]
    bob.goto(f"{daemon.url}/operator?token={cli_token(daemon, '--extension', '102')}")
    expect(bob.locator("#who")).to_have_text("Extension 102")
    expect(bob.locator("body")).to_have_attribute("data-connected", "yes")
    assert "token=" not in bob.url, "the token is dropped from the address bar"

    # A ring group rings 101 and 102: both see the caller's card.
    call = scenarios.build("ring_group_second_answers", seed=21, extensions=("101", "102"))
    ringing, rest = split_at_ringing(call)
    assert not poster.play(ringing).errors
    popup = alice.locator(f'.popup[data-entry-id="{call.entry_id}"]')
    expect(popup.locator(".popup-name")).to_have_text(DEMO_NAME)
    expect(popup.locator(".popup-number")).to_have_text("+79161234567")
    expect(popup.locator(".popup-deals")).to_contain_text("Kitchen set")
    expect(bob.locator(f'.popup[data-entry-id="{call.entry_id}"] .popup-name')).to_have_text(DEMO_NAME)
    notes = alice.evaluate("window.__notes")
    assert notes and DEMO_NAME in notes[0]["body"]

    # 102 answers (the call goes on): 101's popup closes, 102's shows the call in progress.
    answer = answer_index(rest)
    assert answer is not None
    assert not poster.play(rest[: answer + 1]).errors
    expect(popup).to_have_count(0, timeout=10_000)
    bob_popup = bob.locator(f'.popup[data-entry-id="{call.entry_id}"]')
    expect(bob_popup.locator(".popup-state")).to_have_text("On the phone", timeout=10_000)
    assert not poster.play(rest[answer + 1 :]).errors
    expect(bob_popup.locator(".popup-state")).to_have_text("Call ended", timeout=10_000)
    expect(alice.locator(f'#calls tr[data-entry-id="{call.entry_id}"]')).to_have_count(1, timeout=10_000)

    # A missed call is highlighted in today's list, its time in the company's zone (not the browser's,
    # which is New York here), on a 24-hour clock.
    missed = scenarios.build("incoming_missed", seed=22, extensions=("101",), start=int(time.time()) - 60)
    assert not poster.play(missed.notifications).errors
    row = alice.locator(f'#calls tr.missed[data-entry-id="{missed.entry_id}"]')
    expect(row).to_have_count(1, timeout=10_000)
    started = datetime.fromtimestamp(missed.notifications[0].payload["timestamp"], ZoneInfo(COMPANY_ZONE))
    expect(row.locator("td").first).to_have_text(started.strftime("%H:%M"))
    expect(row.locator("td").nth(1)).to_have_attribute("aria-label", "incoming")

    # Click-to-call: a bad number is refused with the reason, a good one reaches Mango signed.
    alice.fill("#dial-number", "12")
    alice.click("#dial-button")
    expect(alice.locator("#dial-status.error")).to_contain_text("number")
    alice.fill("#dial-number", "8 (916) 123-45-67")
    alice.click("#dial-button")
    sent = mango.wait_for("commands/callback", timeout=10)
    assert sent.signature_valid
    assert sent.json["from"]["extension"] == "101"
    assert sent.json["to_number"] == "79161234567"
    command_id = sent.json["command_id"]
    expect(alice.locator("#dial")).to_have_attribute("data-command-id", command_id)
    # Mango's /result/callback comes back through the webhook: the page shows the command done.
    expect(alice.locator("#dial-status")).to_have_attribute("data-state", "done", timeout=15000)
    alice_ctx.close()

    # On a phone the page fits its width: nothing to scroll sideways but the calls table in its panel.
    phone = browser.new_page(viewport={"width": 360, "height": 740})  # type: ignore[attr-defined]
    phone.goto(f"{daemon.url}/operator?token={cli_token(daemon, '--extension', '101')}")
    expect(phone.locator(f'#calls tr[data-entry-id="{missed.entry_id}"]')).to_have_count(1, timeout=10_000)
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
