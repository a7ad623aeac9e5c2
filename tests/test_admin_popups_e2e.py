"""Live popups inside the admin panel, in Chromium, against `callbridge run` with the shop connector on a
WooCommerce database: a simulated incoming call pops up on whatever panel page the manager has open, with the
shop customer's last orders; the popup's Call button reaches the Mango simulator as `commands/callback`; a
hostile customer name renders as text; the accountant gets no popups."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as sync_api
import pytest
import requests
import sqlalchemy as sa

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator import CommandServer
from bridge.pbx.mango.simulator.poster import Poster
from tests.browser import CHROMIUM, CHROMIUM_ARGS, requires_chromium
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes import shop_schema as shop
from tests.test_admin_support import PASSWORD
from tests.test_realtime_e2e import split_at_ringing

pytestmark = requires_chromium

SHOP = "https://shop.example.com"
SCREENSHOTS = os.environ.get("CALLBRIDGE_ADMIN_SCREENSHOTS")  # e.g. docs/img: refresh the docs' screenshot


@pytest.fixture
def stack(database_url: str, tmp_path: Path) -> Iterator[tuple[Daemon, CommandServer]]:
    shop_db = tmp_path / "shop.db"
    writer = sa.create_engine(f"sqlite:///{shop_db}")
    shop.create_woocommerce(writer)
    writer.dispose()
    config = tmp_path / "callbridge.toml"
    config.write_text(
        "[connectors.shop]\n"
        f'database_url = "sqlite:///{shop_db}"\n'
        'mapping = "woocommerce"\n'
        f'admin_base_url = "{SHOP}"\n',
        encoding="utf-8",
    )
    daemon = Daemon(database_url, tmp_path, env={"CALLBRIDGE_CONFIG": str(config)})
    mango = CommandServer(API_KEY, API_SALT, bridge_url=daemon.mango_url, rate_limits=False).start()
    daemon.env["CALLBRIDGE_MANGO_API_URL"] = mango.url
    daemon.start()
    try:
        assert requests.get(f"{daemon.url}/admin/login", timeout=5).status_code == 200
        daemon.create_user("anna", PASSWORD, "manager", extension="101")
        daemon.create_user("oleg", PASSWORD, "manager", extension="102", lang="ru")
        daemon.create_user("buh", PASSWORD, "accountant")
        yield daemon, mango
    finally:
        mango.stop(timeout=1)
        daemon.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


def login(browser: Any, daemon: Daemon, username: str, path: str) -> Any:
    page = browser.new_context(viewport={"width": 1200, "height": 760}).new_page()
    page.goto(f"{daemon.url}/admin/login?next=/admin/{path}")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_load_state()
    assert page.url.endswith(f"/admin/{path}")
    # The page's live client is connected to the hub before any call rings.
    sync_api.expect(page.locator("body")).to_have_attribute("data-live", "yes", timeout=15_000)
    return page


def test_incoming_call_pops_up_in_the_panel_with_the_shop_customers_last_orders(
    stack: tuple[Daemon, CommandServer], browser: Any
) -> None:
    daemon, mango = stack
    expect = sync_api.expect
    anna = login(browser, daemon, "anna", "calls")
    oleg = login(browser, daemon, "oleg", "missed")  # another page, another language, another extension
    buh = browser.new_context().new_page()
    buh.goto(f"{daemon.url}/admin/login")
    buh.fill("#username", "buh")
    buh.fill("#password", PASSWORD)
    buh.click("#login-submit")
    buh.wait_for_load_state()

    poster = Poster(daemon.mango_url, API_KEY, API_SALT)
    call = scenarios.build("incoming_answered", seed=21, customer=shop.IVAN.lstrip("+"), extensions=("101",))
    ringing, rest = split_at_ringing(call)
    assert not poster.play(ringing).errors

    popup = anna.locator(f'.popup[data-entry-id="{call.entry_id}"]')
    expect(popup.locator(".popup-state")).to_have_text("Incoming call", timeout=15_000)
    expect(popup.locator(".popup-name")).to_have_text("Иван Петров")
    expect(popup.locator(".popup-number")).to_have_text(shop.IVAN)
    orders = popup.locator(".popup-orders li")
    # Ivan's orders newest first (the connector's max_orders default is 5): number, date, total, status.
    expect(orders).to_have_count(4)
    expect(orders.nth(0)).to_contain_text("№ 102")
    expect(orders.nth(0)).to_contain_text("399.90 RUB")
    expect(orders.nth(0)).to_contain_text("processing")
    assert (
        orders.nth(0).locator("a").get_attribute("href") == f"{SHOP}/wp-admin/post.php?post=102&action=edit"
    )
    expect(popup.locator(".popup-orders-title")).to_have_text("Last orders")
    customer_link = popup.locator(".popup-links a").first
    assert customer_link.get_attribute("href") == f"{SHOP}/wp-admin/user-edit.php?user_id=2"
    if SCREENSHOTS:
        anna.screenshot(path=str(Path(SCREENSHOTS) / "admin-popup.png"), animations="disabled")

    # Only the ringing employee's panel pops up; the accountant's pages carry no live client at all.
    expect(oleg.locator(".popup")).to_have_count(0)
    assert buh.locator("#popups").count() == 0
    assert requests.get(f"{daemon.url}/admin/live/session", timeout=5).status_code == 401

    # The rest of the call: answered at 101, then hung up; the popup follows.
    assert not poster.play(rest).errors
    expect(popup.locator(".popup-state")).to_have_text("Call ended", timeout=15_000)

    # The call's page in the log: the caller's card with the orders, the legs, the recording.
    anna.goto(f"{daemon.url}/admin/calls")
    anna.locator(f'tr[data-entry="{call.entry_id}"] a.call-link').click()
    anna.wait_for_load_state()
    expect(anna.locator("#call-card .card-name")).to_have_text("Иван Петров")
    expect(anna.locator("#card-orders tbody tr")).to_have_count(4)
    expect(anna.locator("#card-orders tbody tr").first).to_contain_text("processing")
    expect(anna.locator("#call-legs tbody tr")).not_to_have_count(0)
    assert anna.locator("#call-summary audio").count() == len(call.expected.recording_ids)
    if SCREENSHOTS:
        anna.screenshot(path=str(Path(SCREENSHOTS) / "admin-call.png"), full_page=True, animations="disabled")
    # Oleg (102) may not open a call that never reached him.
    assert oleg.goto(f"{daemon.url}/admin/calls/{call.entry_id}").status == 403
    oleg.goto(f"{daemon.url}/admin/missed")
    expect(oleg.locator("body")).to_have_attribute("data-live", "yes", timeout=15_000)

    # A second call at 102: the popup's Call button places a click-to-call (a signed commands/callback).
    second = scenarios.build(
        "incoming_missed", seed=22, customer=shop.XSS_PHONE.lstrip("+"), extensions=("102",)
    )
    ringing, rest = split_at_ringing(second)
    assert not poster.play(ringing).errors
    hostile = oleg.locator(f'.popup[data-entry-id="{second.entry_id}"]')
    # Russian for oleg; the customer's name (a script tag) is text, and nothing ran.
    expect(hostile.locator(".popup-state")).to_have_text("Входящий звонок", timeout=15_000)
    expect(hostile.locator(".popup-name")).to_have_text(shop.XSS)
    assert oleg.evaluate("() => document.querySelectorAll('.popup-name script').length") == 0
    hostile.locator("button.popup-call").click()
    command = mango.wait_for("commands/callback", timeout=10)
    assert command.json["from"]["extension"] == "102"
    assert command.json["to_number"] == shop.XSS_PHONE.lstrip("+")
    expect(oleg.locator("#live-status")).to_contain_text("102", timeout=10_000)
    assert not poster.play(rest).errors
    expect(hostile.locator(".popup-state")).to_have_text("Пропущенный звонок", timeout=15_000)
