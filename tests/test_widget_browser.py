"""The widget in a real browser (Playwright driving Debian's Chromium), embedded with its one script tag in
a shop's page served from another origin than callbridge, against the real daemon and the Mango simulator.

Set CALLBRIDGE_WIDGET_SCREENSHOTS=docs/img to refresh the documentation's screenshots while testing.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import playwright.sync_api as playwright_api
import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.browser import CHROMIUM, CHROMIUM_ARGS, requires_chromium
from tests.conftest import BACKENDS
from tests.daemon import free_port
from tests.test_widget_e2e import GROUP, LINE, Bridge, bridge_on_each_backend
from widget.texts import DEFAULT_TEXTS

SCREENSHOTS = os.environ.get("CALLBRIDGE_WIDGET_SCREENSHOTS")

pytestmark = requires_chromium

SHOP_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Цветочная лавка</title>
<style>
  /* A shop's own, careless CSS: none of it may reach the widget. */
  body {{ font: 16px Georgia, serif; margin: 0; background: #f4efe6; color: #333; }}
  header {{ background: #5b3a29; color: #fff; padding: 18px 32px; font-size: 24px; }}
  main {{ padding: 24px 32px; max-width: 760px; }}
  .card {{ background: #fff; padding: 16px; margin: 12px 0; border-radius: 6px; }}
  button, input {{ background: hotpink !important; border: 4px dotted lime !important; }}
  button, input {{ font-size: 30px !important; }}
  div {{ color: red !important; }}
  section {{ display: none !important; }}
</style></head>
<body>
<header>Цветочная лавка</header>
<main>
  <a href="#catalog" id="first-link">Каталог</a>
  <div class="card"><h2>Букет «Весна»</h2><p>Тюльпаны, ирисы и мимоза. 2 490 ₽</p></div>
  <div class="card"><h2>Букет «Нежность»</h2><p>Пионовидные розы и эвкалипт. 3 990 ₽</p></div>
  <div class="card"><h2>Доставка</h2><p>По Москве за 2 часа, ежедневно с 9:00 до 21:00.</p></div>
</main>
<script src="{src}" data-site="{site}" async></script>
</body></html>
"""


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any) -> None:
        pass


class ShopServer:
    """The shop's web server: another origin (`http://localhost:PORT`) than callbridge (127.0.0.1)."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        self.port = free_port()
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", self.port, self, threaded=True, request_handler=_Quiet
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def origin(self) -> str:
        return f"http://localhost:{self.port}"

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        html = self.pages.get(request.path)
        response = Response(html, mimetype="text/html") if html else Response("not found", status=404)
        return response(environ, start_response)

    def page(self, path: str, bridge: Bridge, site: str, lang: str = "ru") -> str:
        self.pages[path] = SHOP_PAGE.format(src=f"{bridge.url}/widget/callback.js", site=site, lang=lang)
        return f"{self.origin}{path}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


bridge = pytest.fixture(scope="module", params=BACKENDS)(bridge_on_each_backend)


@pytest.fixture(scope="module")
def shop() -> Iterator[ShopServer]:
    server = ShopServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


@pytest.fixture
def context(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, locale="ru-RU")
    ctx.set_default_timeout(15000)
    yield ctx
    ctx.close()


def site_for(bridge: Bridge, shop: ShopServer, key: str, *options: str) -> None:
    try:
        bridge.add_site(key, "--min-fill", "1", *options, origin=shop.origin)
    except AssertionError as exc:
        if "already exists" not in str(exc):
            raise


def shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / name), animations="disabled")


RECORDER = """() => {
  const root = document.querySelector('callbridge-widget').shadowRoot;
  window.__cbw = {status: [], count: [], headline: []};
  const watch = (selector, into) => {
    const node = root.querySelector(selector);
    new MutationObserver(() => {
      const text = node.textContent;
      if (text && into[into.length - 1] !== text) into.push(text);
    }).observe(node, {childList: true, characterData: true, subtree: true});
  };
  watch('.cbw-status', window.__cbw.status);
  watch('.cbw-count', window.__cbw.count);
  watch('.cbw-headline', window.__cbw.headline);
}"""


def test_visitor_gets_a_call_and_the_widget_follows_it(
    bridge: Bridge, shop: ShopServer, context: Any
) -> None:
    site_for(bridge, shop, "browser-open", "--hours", "daily 00:00-24:00")
    url = shop.page("/flowers", bridge, "browser-open") + "?utm_source=newsletter&utm_campaign=march"
    page = context.new_page()
    page.goto(url)

    launcher = page.locator(".cbw-launcher")
    panel = page.locator(".cbw-panel")
    launcher.wait_for(state="visible")
    assert launcher.inner_text() == "Перезвоним за 30 секунд"
    assert not panel.is_visible()
    shot(page, "widget-compact.png")

    launcher.click()
    phone = page.locator("#cbw-phone")
    assert panel.is_visible() and phone.is_visible()
    assert (
        page.evaluate("document.querySelector('callbridge-widget').shadowRoot.activeElement.id")
        == "cbw-phone"
    )
    # The shop's CSS does not reach the widget: its inputs are not hot pink with 30px text.
    assert phone.evaluate("e => getComputedStyle(e).fontSize") == "17px"
    assert phone.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(255, 255, 255)"

    phone.press_sequentially("12")
    page.locator(".cbw-submit").click()
    error = page.locator(".cbw-error")
    assert error.is_visible() and "Проверьте номер" in error.inner_text()
    assert phone.get_attribute("aria-invalid") == "true"

    phone.fill("")
    phone.press_sequentially("89165550606")
    assert phone.input_value() == "+7 (916) 555-06-06"
    shot(page, "widget-full.png")

    page.evaluate(RECORDER)
    bridge.mango.pace = 0.3
    try:
        page.locator(".cbw-submit").click()
        page.wait_for_function(
            "() => window.__cbw.status.includes('Соединили! Возьмите трубку.')", timeout=45000, polling=100
        )
        log = page.evaluate("window.__cbw")
    finally:
        bridge.mango.pace = 0
    assert log["status"] == [
        "Звоним менеджерам…",
        "Менеджер ответил — соединяем вас…",
        "Соединили! Возьмите трубку.",
    ]
    assert log["headline"] == ["Заявка принята. Менеджер позвонит вам в течение 30 секунд."]
    counts = [int(c) for c in log["count"]]
    assert counts[0] == 30 and len(counts) >= 3 and counts == sorted(counts, reverse=True)
    # Connected: the countdown is gone (no number frozen mid-way); the promise was announced (a live region).
    assert not page.locator(".cbw-countdown").is_visible()
    assert page.locator(".cbw-headline").get_attribute("aria-live") == "polite"
    shot(page, "widget-connected.png")

    [command] = bridge.commands_to("79165550606")
    assert command.signature_valid
    assert (
        command.json["from"] == GROUP
        and command.json["to"] == "79165550606"
        and command.json["line_number"] == LINE
    )

    deadline = time.time() + 20
    leads: list[dict[str, Any]] = []
    while time.time() < deadline and not leads:
        leads = [
            b
            for b in bridge.receiver.accepted.values()
            if b["type"] == "callback.requested" and b["data"]["customer_number"] == "+79165550606"
        ]
        time.sleep(0.1)
    [lead] = leads
    assert lead["data"]["extra"]["utm"] == {"utm_source": "newsletter", "utm_campaign": "march"}
    assert lead["data"]["extra"]["page"] == url
    assert len(lead["data"]["extra"]["visitor_id"]) == 32


def test_a_number_the_site_does_not_call_is_refused_in_the_visitors_language(
    bridge: Bridge, shop: ShopServer, context: Any
) -> None:
    site_for(bridge, shop, "browser-open", "--hours", "daily 00:00-24:00")
    page = context.new_page()
    page.goto(shop.page("/premium", bridge, "browser-open"))
    page.locator(".cbw-launcher").click()
    phone = page.locator("#cbw-phone")
    phone.press_sequentially("88091234567")  # a premium-rate number
    assert phone.input_value() == "+7 (809) 123-45-67"
    page.locator(".cbw-submit").click()
    error = page.locator(".cbw-error")
    error.wait_for(state="visible")
    assert error.inner_text() == DEFAULT_TEXTS["ru"]["error_number"]
    assert not bridge.commands_to("78091234567")

    # The refusal did not use the form up: a mobile number from the same form is called.
    phone.fill("")
    phone.press_sequentially("89165550808")
    page.locator(".cbw-submit").click()
    page.locator(".cbw-result").wait_for(state="visible")
    bridge.mango.wait_for(
        "commands/callback_group", timeout=15, where=lambda r: r.json["to"] == "79165550808"
    )


def test_compact_or_full_survives_a_reload(bridge: Bridge, shop: ShopServer, context: Any) -> None:
    site_for(bridge, shop, "browser-open", "--hours", "daily 00:00-24:00")
    page = context.new_page()
    page.goto(shop.page("/mode", bridge, "browser-open"))
    launcher, panel = page.locator(".cbw-launcher"), page.locator(".cbw-panel")
    launcher.wait_for(state="visible")
    assert not panel.is_visible()
    launcher.click()
    assert panel.is_visible()

    page.reload()
    panel.wait_for(state="visible")
    assert not launcher.is_visible()
    assert launcher.get_attribute("aria-expanded") == "true"

    page.locator(".cbw-close").click()
    assert launcher.is_visible() and not panel.is_visible()
    page.reload()
    launcher.wait_for(state="visible")
    assert not panel.is_visible()


def test_keyboard_and_screen_reader_use(bridge: Bridge, shop: ShopServer, context: Any) -> None:
    site_for(bridge, shop, "browser-open", "--hours", "daily 00:00-24:00")
    page = context.new_page()
    page.goto(shop.page("/keys", bridge, "browser-open"))
    launcher = page.locator(".cbw-launcher")
    launcher.wait_for(state="visible")
    # Its accessible name is the text it shows (no aria-label that says something else).
    assert launcher.get_attribute("aria-label") is None
    shown = launcher.locator(".cbw-launcher-text").inner_text()
    assert shown and launcher.evaluate("el => el.innerText.trim()") == shown
    assert launcher.get_attribute("aria-expanded") == "false"

    page.keyboard.press("Tab")  # the shop's link
    page.keyboard.press("Tab")  # the widget's button
    focused = (
        "() => { const r = document.querySelector('callbridge-widget').shadowRoot;"
        " return r.activeElement && r.activeElement.className; }"
    )
    assert page.evaluate(focused) == "cbw-launcher"
    page.keyboard.press("Enter")
    page.locator(".cbw-panel").wait_for(state="visible")
    assert page.evaluate(focused) == "cbw-input"
    assert page.get_by_label("Ваш номер телефона").count() == 1
    assert page.get_by_role("dialog", name="Перезвоним за 30 секунд").count() == 1
    assert page.locator(".cbw-status").get_attribute("role") == "status"
    assert page.locator("input[name=website]").get_attribute("tabindex") == "-1"

    page.keyboard.press("Escape")
    assert launcher.is_visible()
    assert page.evaluate(focused) == "cbw-launcher"


def test_outside_hours_text_and_a_phone_screen(bridge: Bridge, shop: ShopServer, browser: Any) -> None:
    today = datetime.now(ZoneInfo("Europe/Moscow")).date().isoformat()
    site_for(
        bridge, shop, "browser-closed", "--hours", "daily 00:00-24:00", "--holiday", today, "--mode", "full"
    )
    ctx = browser.new_context(
        viewport={"width": 375, "height": 667}, locale="en-US", is_mobile=True, has_touch=True
    )
    try:
        page = ctx.new_page()
        page.goto(shop.page("/mobile", bridge, "browser-closed", lang="en"))
        panel = page.locator(".cbw-panel")
        panel.wait_for(state="visible")  # the site's first state is "full"
        box = panel.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375 and box["width"] >= 320
        assert page.locator(".cbw-title").inner_text() == "We'll call you back in 30 seconds"
        shot(page, "widget-mobile.png")
        page.locator("#cbw-phone").press_sequentially("9165550707")
        page.locator(".cbw-submit").click()
        headline = page.locator(".cbw-headline")
        headline.wait_for(state="visible")
        assert headline.inner_text() == "We are closed now. We will call you back tomorrow at 00:00."
        assert not page.locator(".cbw-countdown").is_visible()
        shot(page, "widget-closed.png")
    finally:
        ctx.close()
    assert not bridge.commands_to("79165550707")
