"""The amoCRM widget's script.js and its live panel in Chromium, against `callbridge run` and the Mango
simulator.

The page is a stand-in of amoCRM's widget runtime: `define` builds the widget as amoCRM does (an object
with `add_action`, `get_settings`, `i18n` and `$authorizedAjax` on its prototype, then `init`, `render`,
`bind_actions`); a click on a phone number runs the widget's 'phone' action with ``{value: number}``;
`$authorizedAjax` adds an ``X-Auth-Token`` made as amoCRM makes it (HS256 under the integration's secret).
script.js is the one the daemon packages (``/connectors/amocrm/widget/package.zip``). The live panel it
frames signs in through the widget's session endpoint (no access code is typed); a ring group's call
shows the caller's amoCRM card in it, and a colleague's answer closes it. For a user without an extension
the panel falls back to its access-code form, and an access code from `callbridge token` signs it in.

The page is served at the daemon's own origin: the daemon's hook forwarder answers CORS preflights
itself and never passes them to a connector's hooks, so a cross-origin POST with ``X-Auth-Token`` cannot
pass in a browser yet (the connector's preflight answer is tested in tests/test_amocrm_widget.py).
"""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator import CommandServer
from bridge.pbx.mango.simulator.poster import Poster
from tests.amocrm_tokens import one_time_token
from tests.browser import CHROMIUM, CHROMIUM_ARGS, requires_chromium
from tests.daemon import API_KEY, API_SALT, Daemon
from tests.fakes.amocrm import FakeAmoCrm
from tests.test_realtime_e2e import answer_index, cli_token, split_at_ringing

pytestmark = requires_chromium

LLT = "llt-widget-browser-" + "9c8d7e6f" * 6
INTEGRATION_SECRET = "amo-integration-secret-" + "b" * 40
SECRET = "amocrm-widget-browser-" + "s" * 24

STAND_IN = """<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><title>amoCRM</title></head>
<body>
<div class="card">
  <a class="phone" id="mapped" href="#" data-phone="+7 926 555-66-77">+7 926 555-66-77</a>
  <a class="phone" id="other" href="#" data-phone="8 (916) 000-00-09">8 (916) 000-00-09</a>
</div>
<script>
window.amo = {actions: {}, settings: {}, i18n: __I18N__};
function AmoWidget() {}
AmoWidget.prototype.add_action = function (name, handler) { amo.actions[name] = handler; };
AmoWidget.prototype.get_settings = function () { return amo.settings; };
AmoWidget.prototype.i18n = function (key) { return amo.i18n[key]; };
AmoWidget.prototype.$authorizedAjax = function (options) {
  var done = [], fail = [];
  var deferred = {
    done: function (f) { done.push(f); return deferred; },
    fail: function (f) { fail.push(f); return deferred; }
  };
  window.amoOneTimeToken().then(function (token) {
    var headers = {'X-Auth-Token': token};
    if (options.contentType) headers['Content-Type'] = options.contentType;
    var method = options.method || options.type || 'GET';
    return fetch(options.url, {method: method, headers: headers, body: options.data});
  }).then(function (response) {
    return response.text().then(function (text) {
      var body = null;
      try { body = JSON.parse(text); } catch (e) { body = null; }
      if (response.ok) done.forEach(function (f) { f(body); });
      else fail.forEach(function (f) { f({status: response.status, responseJSON: body}); });
    });
  }).catch(function () { fail.forEach(function (f) { f({status: 0}); }); });
  return deferred;
};
window.define = function (deps, factory) {
  var Widget = factory();
  var widget = Object.create(AmoWidget.prototype);
  Widget.call(widget);
  widget.callbacks.init(); widget.callbacks.render(); widget.callbacks.bind_actions();
  amo.widget = widget;
};
document.addEventListener('click', function (event) {
  var link = event.target.closest('.phone');
  if (!link) return;
  event.preventDefault();
  amo.actions.phone({value: link.dataset.phone});
});
</script>
<script src="script.js"></script>
</body></html>
"""


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Daemon, CommandServer, FakeAmoCrm, int]]:
    workdir = tmp_path_factory.mktemp("amowidget-browser")
    with (
        FakeAmoCrm(long_lived_token=LLT) as fake,
        CommandServer(API_KEY, API_SALT, rate_limits=False, rng=random.Random(3), pace=0.05) as mango,
    ):
        contact = fake.add_contact("Иван Петров", ["8 (916) 123-45-67"], responsible_user_id=1001)
        config = workdir / "callbridge.toml"
        config.write_text(
            f'[connectors.amocrm]\naccount_url = "{fake.url}"\npopup = false\n\n'
            '[connectors.amocrm.users]\n"101" = 1001\n"102" = 1002\n',
            encoding="utf-8",
        )
        daemon = Daemon(
            f"sqlite:///{workdir / 'callbridge.db'}",
            workdir,
            env={
                "CALLBRIDGE_CONFIG": str(config),
                "CALLBRIDGE_CONNECTORS_AMOCRM_LONG_LIVED_TOKEN": LLT,
                "CALLBRIDGE_CONNECTORS_AMOCRM_CLIENT_SECRET": INTEGRATION_SECRET,
                "CALLBRIDGE_SECURITY_SECRET_KEY": SECRET,
                "CALLBRIDGE_MANGO_API_URL": mango.url,
            },
        )
        daemon.env["CALLBRIDGE_HTTP_PUBLIC_URL"] = daemon.url
        mango.bridge_url = daemon.mango_url
        daemon.start()
        try:
            yield daemon, mango, fake, contact
        finally:
            daemon.stop()


@dataclass
class Widget:
    """The stand-in page, and the amoCRM user its one-time tokens name."""

    page: Any
    user: dict[str, int]

    def reload_as(self, user_id: int) -> None:
        """Open the page again as another amoCRM user (the panel asks for its session on load)."""
        self.user["id"] = user_id
        self.page.reload()
        self.page.wait_for_function("window.amo && window.amo.actions.phone !== undefined")


@pytest.fixture
def widget(stack: tuple[Daemon, CommandServer, FakeAmoCrm, int]) -> Iterator[Widget]:
    from playwright import sync_api

    daemon, _, fake, _ = stack
    package = requests.get(f"{daemon.url}/connectors/amocrm/widget/package.zip", timeout=10)
    assert package.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(package.content))
    html = STAND_IN.replace("__I18N__", archive.read("i18n/ru.json").decode("utf-8"))
    files = {
        "index.html": ("text/html", html.encode()),
        "script.js": ("text/javascript", archive.read("script.js")),
    }
    user = {"id": 1002}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            tab = browser.new_page()
            tab.expose_function(
                "amoOneTimeToken",
                lambda: one_time_token(INTEGRATION_SECRET, fake.url, user["id"], audience=daemon.url),
            )

            def serve(route: Any) -> None:
                kind, body = files[route.request.url.rsplit("/", 1)[-1]]
                route.fulfill(status=200, content_type=kind, body=body)

            tab.route(f"{daemon.url}/amocrm-stand-in/*", serve)
            tab.goto(f"{daemon.url}/amocrm-stand-in/index.html")
            tab.wait_for_function("window.amo && window.amo.actions.phone !== undefined")
            yield Widget(tab, user)
        finally:
            browser.close()


def callbacks_to(mango: CommandServer, number: str) -> int:
    return sum(
        1
        for r in mango.received
        if r.path == "commands/callback" and (r.json or {}).get("to_number") == number
    )


def test_a_click_on_a_number_dials_from_the_users_extension(stack, widget: Widget) -> None:
    _, mango, _, _ = stack
    widget.page.click("#mapped")
    sent = mango.wait_for(
        "commands/callback", timeout=10, where=lambda r: r.json["to_number"] == "79265556677"
    )
    assert sent.signature_valid and sent.json["from"]["extension"] == "102"
    note = widget.page.wait_for_selector("#callbridge-widget-note[data-kind=info]")
    assert note.inner_text() == "Звоним: сначала на ваш номер 102, затем клиенту +7 926 555-66-77"


def test_an_unmapped_user_is_told_why_and_nothing_is_dialled(stack, widget: Widget) -> None:
    _, mango, _, _ = stack
    widget.user["id"] = 4242
    widget.page.click("#other")
    note = widget.page.wait_for_selector("#callbridge-widget-note[data-kind=error]")
    assert "нет внутреннего номера Mango" in note.inner_text()
    assert callbacks_to(mango, "79160000009") == 0


def test_the_live_panel_signs_in_through_the_widget_and_shows_the_ringing_callers_card(
    stack, widget: Widget
) -> None:
    from playwright.sync_api import expect

    daemon, _, fake, contact = stack
    widget.reload_as(1001)  # extension 101, whose colleague 102 answers
    page = widget.page
    frame_element = page.locator("#callbridge-panel")
    panel = page.frame_locator("#callbridge-panel")
    expect(panel.locator("body")).to_have_attribute("data-connected", "yes")
    expect(panel.locator("#login")).to_be_hidden()  # no access code asked for
    expect(frame_element).to_have_attribute("data-open", "no")
    assert frame_element.evaluate("el => el.style.height") == "0px"
    assert (
        page.frame_locator("#callbridge-panel").locator("body").evaluate("() => localStorage.length") == 0
    )  # the hub token is kept in memory only

    call = scenarios.build("ring_group_second_answers", seed=31, extensions=("101", "102"))
    ringing, rest = split_at_ringing(call)
    poster = Poster(daemon.mango_url, API_KEY, API_SALT)
    try:
        assert not poster.play(ringing).errors
        popup = panel.locator(f'.popup[data-entry-id="{call.entry_id}"]')
        expect(popup.locator(".popup-name")).to_have_text("Иван Петров", timeout=10_000)
        expect(popup.locator(".popup-links a")).to_have_attribute(
            "href", f"{fake.url}/contacts/detail/{contact}"
        )
        expect(frame_element).to_have_attribute("data-open", "yes")
        answer = answer_index(rest)
        assert answer is not None
        assert not poster.play(rest[: answer + 1]).errors  # 102 answers
        expect(popup).to_have_count(0, timeout=10_000)
        expect(frame_element).to_have_attribute("data-open", "no")
        assert not poster.play(rest[answer + 1 :]).errors
    finally:
        poster.close()


def test_an_unmapped_users_panel_falls_back_to_the_access_code(stack, widget: Widget) -> None:
    from playwright.sync_api import expect

    daemon = stack[0]
    widget.reload_as(4242)
    frame_element = widget.page.locator("#callbridge-panel")
    panel = widget.page.frame_locator("#callbridge-panel")
    expect(frame_element).to_have_attribute("data-open", "yes")  # the sign-in form asks to be shown
    expect(panel.locator("#login")).to_be_visible()
    panel.locator("#code").fill("not-a-valid-code")
    panel.locator("#sign-in").click()
    expect(panel.locator("#login-error")).to_contain_text("Код не подошёл")
    panel.locator("#code").fill(cli_token(daemon, "--extension", "101"))
    panel.locator("#sign-in").click()
    expect(panel.locator("body")).to_have_attribute("data-connected", "yes")
    expect(frame_element).to_have_attribute("data-open", "no")
