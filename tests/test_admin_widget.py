"""The panel's widget settings over real HTTP: sites created and edited in the panel reach the widget's public
config endpoint (in-process next to the panel, and in the real `callbridge run`), bad input is refused per
field with nothing saved, roles and CSRF are enforced, texts are escaped, and the embed tag's Copy button
works in Chromium."""

from __future__ import annotations

import html
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import Engine

from admin_module.i18n import EN, RU
from bridge.config import Settings
from bridge.connectors_runtime import mango_client
from tests.browser import CHROMIUM, CHROMIUM_ARGS, requires_chromium
from tests.daemon import Daemon
from tests.test_admin_support import PASSWORD, LivePanel, csrf_of, live_panel, seed_users
from widget.blueprint import make_widget_blueprint
from widget.sites import embed_snippet, load_site
from widget.texts import DEFAULT_TEXTS

# The widget's web workers re-read a site at most this long after a change (widget.sites.SiteCache).
APPLY_SECONDS = 5.0

SITE = {
    "key": "flowers",
    "enabled": "y",
    "name": "Flower shop",
    "mode": "full",
    "countdown": "45",
    "language": "en",
    "position": "bottom-left",
    "colour_accent": "#123456",
    "colour_accent_text": "#ffffff",
    "colour_background": "#ffffff",
    "colour_text": "#1d1d1f",
    "text_en_title": "Call in {seconds} s",
    "text_ru_title": "Перезвоним за {seconds} с",
    "text_en_subtitle": "Free of charge",
    "timezone": "Europe/Moscow",
    **{f"hours_{day}": "00:00-24:00" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
    "holidays": "",
    "group": "200",
    "line": "74951234567",
    "region": "RU",
    "retries": "2",
    "retry_delay_seconds": "60",
    "origins": "https://Flowers.example/\nhttps://www.flowers.example",
}


@pytest.fixture
def panel(engine: Engine) -> Iterator[LivePanel]:
    """The panel and, on the same server, the widget's endpoints (as the daemon serves them)."""
    seed_users(engine)
    serving = live_panel(engine)
    running = next(serving)
    settings = Settings.model_validate({})
    widget = make_widget_blueprint(settings, engine, {}, lambda: mango_client(settings))
    running.app.register_blueprint(widget)
    yield running
    serving.close()


class Browser:
    """A `requests` session logged in to the panel at `base`, sending the CSRF token like the forms do."""

    def __init__(self, base: str, username: str) -> None:
        self.base = base
        self.http = requests.Session()
        page = self.http.get(f"{base}/admin/login", timeout=10)
        done = self.http.post(
            f"{base}/admin/login",
            data={"username": username, "password": PASSWORD, "csrf_token": csrf_of(page.text)},
            timeout=10,
        )
        assert done.status_code == 200, done.text

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(f"{self.base}{path}", timeout=10, **kwargs)

    def post(self, path: str, data: dict[str, str], *, form_page: str | None = None) -> requests.Response:
        """POST `data` with the CSRF token of `form_page` (default: `path` itself)."""
        token = csrf_of(self.get(form_page or path).text)
        return self.http.post(
            f"{self.base}{path}", data={"csrf_token": token, **data}, allow_redirects=False, timeout=10
        )


def widget_config(base: str, origin: str | None = "https://flowers.example") -> requests.Response:
    """The widget's config for the site, as a page on `origin` (None: as a server, without an Origin)."""
    headers = {"Origin": origin} if origin else {}
    return requests.get(f"{base}/widget/config", params={"site": "flowers"}, headers=headers, timeout=10)


def eventually(check: Callable[[], bool], timeout: float = APPLY_SECONDS + 3) -> float:
    """Repeat `check` until it passes; returns when the passing round began (a slow round under load is
    not counted against the widget's cache time)."""
    deadline = time.time() + timeout
    while True:
        began = time.time()
        assert began < deadline, "the widget did not pick the change up in time"
        if check():
            return began
        time.sleep(0.25)


def field_error(page: str, field: str) -> str:
    found = re.search(rf'id="error-{re.escape(field)}" role="alert">([^<]*)<', page)
    assert found, f"no error shown at {field}"
    return html.unescape(found.group(1))


def create(admin: Browser, **changes: str) -> requests.Response:
    return admin.post("/admin/widget/new", {**SITE, **changes})


# ------------------------------------------------------------------------------------- create and edit


def test_a_site_created_and_edited_in_the_panel_is_served_by_the_widget(
    panel: LivePanel, engine: Engine
) -> None:
    admin = Browser(panel.url, "admin")
    assert "widget-none" in admin.get("/admin/widget").text

    created = create(admin)
    assert created.status_code == 302
    assert created.headers["Location"].endswith("/admin/widget/flowers")

    config = widget_config(panel.url)
    assert config.status_code == 200
    assert config.headers["Access-Control-Allow-Origin"] == "https://flowers.example"
    body = config.json()
    assert (body["mode"], body["countdown"], body["position"], body["language"]) == (
        "full",
        45,
        "bottom-left",
        "en",
    )
    assert body["colours"]["accent"] == "#123456"
    assert body["texts"]["en"]["title"] == "Call in {seconds} s"
    assert body["texts"]["ru"]["title"] == "Перезвоним за {seconds} с"
    assert body["texts"]["en"]["subtitle"] == "Free of charge"
    assert body["texts"]["ru"]["subtitle"] == DEFAULT_TEXTS["ru"]["subtitle"]
    assert body["open"] is True  # open all week

    # The site's page shows the saved values and the embed tag for this site.
    page = admin.get("/admin/widget/flowers")
    assert page.status_code == 200
    snippet = html.unescape(re.search(r'<textarea id="widget-snippet"[^>]*>([^<]*)<', page.text).group(1))
    assert snippet == f'<script src="{panel.url}/widget/callback.js" data-site="flowers" async></script>'
    assert 'id="widget-public-url-missing"' in page.text  # no http.public_url in this app's settings
    assert 'value="Call in {seconds} s"' in page.text

    # Edit: look, texts back to the default, closed every day but for holidays in the zone of Vladivostok.
    edited = admin.post(
        "/admin/widget/flowers",
        {
            **SITE,
            "mode": "compact",
            "countdown": "20",
            "text_en_title": "",
            "text_en_subtitle": "Leave your number",
            **{f"hours_{day}": "" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")},
            "hours_mon": "09:00-13:00, 14:00-18:00",
            "timezone": "Asia/Vladivostok",
            "holidays": "2027-01-01\n2026-12-31",
            "origins": "https://flowers.example",
        },
    )
    assert edited.status_code == 302

    def applied() -> bool:
        return widget_config(panel.url).json()["mode"] == "compact"

    eventually(applied)
    body = widget_config(panel.url).json()
    assert body["countdown"] == 20
    assert body["timezone"] == "Asia/Vladivostok"
    assert body["texts"]["en"]["title"] == DEFAULT_TEXTS["en"]["title"]
    assert body["texts"]["en"]["subtitle"] == "Leave your number"
    site = load_site(engine, "flowers")
    assert site is not None
    assert site.config.hours == {"mon": ["09:00-13:00", "14:00-18:00"]}
    assert [d.isoformat() for d in site.config.holidays] == ["2026-12-31", "2027-01-01"]
    assert site.config.origins == ["https://flowers.example"]
    assert site.config.texts == {
        "en": {"subtitle": "Leave your number"},
        "ru": {"title": "Перезвоним за {seconds} с"},
    }
    assert (site.config.retries, site.config.retry_delay_seconds, site.config.group) == (2, 60, "200")
    # The www origin was removed: a page there is refused by the widget now.
    assert widget_config(panel.url, "https://www.flowers.example").status_code == 403

    listing = admin.get("/admin/widget").text
    assert 'data-site="flowers"' in listing and "Flower shop" in listing

    # Switched off in the panel: the widget stops answering for the site.
    admin.post("/admin/widget/flowers", {k: v for k, v in SITE.items() if k != "enabled"})
    eventually(lambda: widget_config(panel.url, None).status_code == 404)
    assert load_site(engine, "flowers").enabled is False  # type: ignore[union-attr]


def test_the_limits_set_elsewhere_survive_an_edit_in_the_panel(panel: LivePanel, engine: Engine) -> None:
    from widget.settings import Limit
    from widget.sites import save_site

    admin = Browser(panel.url, "admin")
    assert create(admin).status_code == 302
    site = load_site(engine, "flowers")
    assert site is not None
    limits = site.config.limits.model_copy(update={"per_ip": Limit(count=9, seconds=60)})
    save_site(engine, "flowers", site.config.model_copy(update={"limits": limits}), create=False)
    assert admin.post("/admin/widget/flowers", {**SITE, "countdown": "31"}).status_code == 302
    saved = load_site(engine, "flowers")
    assert saved is not None
    assert saved.config.countdown == 31
    assert saved.config.limits.per_ip == Limit(count=9, seconds=60)


# ------------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("hours_tue", "25:00-18:00", "times run from 00:00 to 24:00"),
        ("hours_wed", "9 to 6", "write working hours as HH:MM-HH:MM"),
        ("countdown", "1000", "less than or equal to 600"),
        ("countdown", "2", "greater than or equal to 5"),
        ("countdown", "soon", "valid integer"),
        ("origins", "ftp://flowers.example", "is not an origin"),
        ("origins", "https://flowers.example/shop", "an origin has no path"),
        ("timezone", "Mars/Olympus", "unknown time zone"),
        ("holidays", "2026-13-01", "'2026-13-01'"),
        ("group", "managers", "short number"),
        ("colour_accent", "green", "hex colour"),
        ("mode", "huge", "'compact' or 'full'"),
        ("text_en_title", "x" * 501, "at most 500 characters"),
        ("name", "x" * 201, "longer than 200 characters"),
    ],
)
def test_bad_input_is_refused_at_its_field_and_nothing_is_saved(
    panel: LivePanel, engine: Engine, field: str, value: str, message: str
) -> None:
    admin = Browser(panel.url, "admin")
    assert create(admin).status_code == 302
    before = load_site(engine, "flowers")

    refused = admin.post("/admin/widget/flowers", {**SITE, "mode": "compact", field: value})
    assert refused.status_code == 400
    assert message in field_error(refused.text, field)
    assert 'id="widget-errors"' in refused.text
    after = load_site(engine, "flowers")
    assert after is not None and before is not None
    assert after.config == before.config and after.updated_at == before.updated_at

    # The same on a new site: nothing is created.
    new = create(admin, key="roses", **{field: value})
    assert new.status_code == 400
    assert message in field_error(new.text, field)
    assert load_site(engine, "roses") is None


def test_a_new_site_needs_a_valid_free_key_and_the_managers(panel: LivePanel, engine: Engine) -> None:
    admin = Browser(panel.url, "admin")
    bad_key = create(admin, key="a b")
    assert bad_key.status_code == 400
    assert "3-64 letters" in field_error(bad_key.text, "key")
    reserved = create(admin, key="new")
    assert reserved.status_code == 400
    assert "reserved" in field_error(reserved.text, "key")
    no_group = create(admin, group="", line="")
    assert no_group.status_code == 400
    assert "short number" in field_error(no_group.text, "group")
    assert "company number" in field_error(no_group.text, "line")
    assert load_site(engine, "flowers") is None

    assert create(admin).status_code == 302
    again = create(admin, name="Another flower shop")
    assert again.status_code == 409
    assert "already exists" in field_error(again.text, "key")
    assert load_site(engine, "flowers").config.name == "Flower shop"  # type: ignore[union-attr]
    assert admin.get("/admin/widget/tulips").status_code == 404


# ------------------------------------------------------------------------------------------- security


@pytest.mark.parametrize("username", ["manager", "accountant"])
def test_only_roles_with_the_settings_permission_see_the_widget_pages(
    panel: LivePanel, engine: Engine, username: str
) -> None:
    assert create(Browser(panel.url, "admin")).status_code == 302
    user = Browser(panel.url, username)
    for path in ("/admin/widget", "/admin/widget/new", "/admin/widget/flowers"):
        assert user.get(path).status_code == 403
    # A POST with a valid token from a page the role may open is still refused.
    refused = user.post("/admin/widget/flowers", {**SITE, "countdown": "99"}, form_page="/admin/calls")
    assert refused.status_code == 403
    assert load_site(engine, "flowers").config.countdown == 45  # type: ignore[union-attr]

    anonymous = requests.get(f"{panel.url}/admin/widget", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302 and "/admin/login" in anonymous.headers["Location"]


def test_a_post_without_the_csrf_token_is_refused(panel: LivePanel, engine: Engine) -> None:
    admin = Browser(panel.url, "admin")
    refused = admin.http.post(f"{panel.url}/admin/widget/new", data=SITE, allow_redirects=False, timeout=10)
    assert refused.status_code == 400
    assert "The form expired" in refused.text
    assert load_site(engine, "flowers") is None


def test_texts_and_names_are_shown_escaped(panel: LivePanel) -> None:
    admin = Browser(panel.url, "admin")
    attack = '"><script>alert(1)</script>'
    assert create(admin, name=attack, text_en_title=attack).status_code == 302
    for path in ("/admin/widget", "/admin/widget/flowers"):
        page = admin.get(path).text
        assert "<script>alert(1)" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Refused input is shown back escaped too.
    refused = admin.post("/admin/widget/flowers", {**SITE, "origins": attack})
    assert refused.status_code == 400
    assert "<script>alert(1)" not in refused.text


def test_every_widget_text_is_labelled_in_words_in_both_languages(panel: LivePanel) -> None:
    for lang, catalogue in (("en", EN), ("ru", RU)):
        missing = [key for key in DEFAULT_TEXTS["ru"] if f"widget_text_{key}" not in catalogue]
        assert missing == [], f"{lang}: texts without a label: {missing}"
    admin = Browser(panel.url, "admin")
    assert create(admin).status_code == 302
    page = admin.get("/admin/widget/flowers").text
    assert "<code>after_open</code>" not in page and "<code>title</code>" not in page
    assert ">Message after a request, within working hours" in page and ">Headline" in page


def test_the_embed_snippet_escapes_its_address() -> None:
    assert embed_snippet("https://calls.example.com/", "flowers") == (
        '<script src="https://calls.example.com/widget/callback.js" data-site="flowers" async></script>'
    )
    assert '"' not in embed_snippet('https://x.example/"a', "flowers").split('src="')[1].split('" data')[0]


# ---------------------------------------------------------------------------------- the real daemon


def test_a_change_in_the_panel_reaches_every_worker_of_callbridge_run(
    database_url: str, tmp_path: Path
) -> None:
    # http, not https: an https public URL makes the session cookie Secure, unusable over plain HTTP here.
    daemon = Daemon(database_url, tmp_path, env={"CALLBRIDGE_HTTP_PUBLIC_URL": "http://calls.example.com"})
    daemon.start()
    try:
        daemon.create_user("admin", PASSWORD)
        admin = Browser(daemon.url, "admin")
        assert create(admin).status_code == 302
        page = admin.get("/admin/widget/flowers").text
        assert html.escape(
            '<script src="http://calls.example.com/widget/callback.js" data-site="flowers" async></script>'
        ) in page.replace("&#34;", "&quot;")
        assert 'id="widget-public-url-missing"' not in page
        assert widget_config(daemon.url).json()["mode"] == "full"

        started = time.time()
        edited = admin.post("/admin/widget/flowers", {**SITE, "mode": "compact", "countdown": "25"})
        assert edited.status_code == 302

        # The first worker shows the change soon; once the promised time has passed, every worker process
        # must serve it (each request opens a new connection, so the kernel spreads them over the workers).
        def shown() -> bool:
            return widget_config(daemon.url).json()["countdown"] == 25

        assert eventually(shown) - started < APPLY_SECONDS + 3
        time.sleep(max(0.0, started + APPLY_SECONDS + 1 - time.time()))
        bodies = [widget_config(daemon.url).json() for _ in range(24)]
        served = {(body["mode"], body["countdown"]) for body in bodies}
        assert served == {("compact", 25)}
    finally:
        daemon.stop()


# ------------------------------------------------------------------------------------------- browser


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    import playwright.sync_api as playwright_api

    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield instance
        instance.close()


def _site_page(chromium: Any, panel: LivePanel, *, clipboard: bool) -> Any:
    context = chromium.new_context()
    if clipboard:
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=panel.url)
    else:
        context.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined});")
    page = context.new_page()
    page.goto(f"{panel.url}/admin/login")
    page.fill("#username", "admin")
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_load_state()
    page.goto(f"{panel.url}/admin/widget/flowers")
    return page


@requires_chromium
@pytest.mark.parametrize("clipboard", [True, False], ids=["clipboard", "select-fallback"])
def test_the_copy_button_copies_or_selects_the_embed_tag(
    chromium: Any, panel: LivePanel, clipboard: bool
) -> None:
    assert create(Browser(panel.url, "admin")).status_code == 302
    page = _site_page(chromium, panel, clipboard=clipboard)
    snippet = page.input_value("#widget-snippet")
    assert snippet == f'<script src="{panel.url}/widget/callback.js" data-site="flowers" async></script>'
    page.click("#widget-copy")
    page.wait_for_function("document.getElementById('widget-copy-status').textContent !== ''")
    if clipboard:
        assert page.evaluate("navigator.clipboard.readText()") == snippet
        assert page.text_content("#widget-copy-status") == "Copied."
        if os.environ.get("CALLBRIDGE_ADMIN_SCREENSHOTS"):  # refresh the docs' screenshot
            folder = Path(os.environ["CALLBRIDGE_ADMIN_SCREENSHOTS"])
            page.screenshot(path=str(folder / "admin-widget.png"), full_page=True, animations="disabled")
    else:
        selected = page.evaluate(
            "(() => { const b = document.getElementById('widget-snippet');"
            " if (document.activeElement !== b) { return null; }"
            " return b.value.slice(b.selectionStart, b.selectionEnd); })()"
        )
        assert selected == snippet
    page.context.close()
