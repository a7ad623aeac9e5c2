"""Managing the callback widget in the panel over real HTTP, next to the widget's own endpoints on the real
store: a site's abuse limits (the widget refuses requests over the new limit; a wrong limit is refused at
its field), removing a site (its config answers as for an unknown site, its waiting requests are given up),
and the block list (a number or address blocked in the panel is refused by the widget, and accepted again
once unblocked). Roles, CSRF and escaping are checked for every new form."""

from __future__ import annotations

import datetime as dt
import html
import re
import time
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import Engine, select

from bridge.config import Settings
from bridge.connectors_runtime import mango_client
from tests.test_admin_support import LivePanel
from tests.test_admin_widget import SITE, Browser, eventually, field_error, widget_config
from tests.test_admin_widget import panel as panel  # noqa: F401  (the fixture)
from widget.blueprint import service_from_settings
from widget.scheduler import WidgetScheduler
from widget.settings import Limit
from widget.sites import block, list_blocked, load_site
from widget.tables import widget_requests

NUMBER = "+79161234567"
OTHER_NUMBER = "+79161234568"


def _closed_days() -> str:
    """Yesterday, today and tomorrow in the site's zone: the site is closed now, so requests wait for the
    day after tomorrow and nothing is dialled during a test."""
    today = dt.datetime.now(ZoneInfo("Europe/Moscow")).date()
    return "\n".join((today + dt.timedelta(days=d)).isoformat() for d in (-1, 0, 1))


def site_form(**changes: str) -> dict[str, str]:
    """The site form: open all week but closed these days, and no least time to fill the widget's form."""
    return {**SITE, "holidays": _closed_days(), "limit_min_fill_seconds": "0", **changes}


def create(admin: Browser, **changes: str) -> None:
    assert admin.post("/admin/widget/new", site_form(**changes)).status_code == 302


def request_callback(base: str, phone: str) -> requests.Response:
    """What the widget on https://flowers.example sends: its config (for the form token), then the request."""
    token = widget_config(base).json()["form_token"]
    return requests.post(
        f"{base}/widget/callback",
        params={"site": "flowers"},
        json={"phone": phone, "form_token": token},
        headers={"Origin": "https://flowers.example"},
        timeout=10,
    )


def unblock_in_panel(admin: Browser, kind: str, value: str) -> requests.Response:
    """The Unblock button of an entry on the block list page."""
    return admin.post(
        "/admin/widget/blocked/remove", {"kind": kind, "value": value}, form_page="/admin/widget/blocked"
    )


def rows(page: str, table: str) -> list[str]:
    body = re.search(rf'<table class="grid" id="{table}">(.*?)</table>', page, re.S)
    assert body, f"no table {table}"
    return re.findall(r"<tr data-[^>]*>.*?</tr>", body.group(1), re.S)


# ------------------------------------------------------------------------------------------- limits


def test_limits_edited_in_the_panel_are_enforced_by_the_widget(panel: LivePanel, engine: Engine) -> None:
    admin = Browser(panel.url, "admin")
    create(admin)
    site = load_site(engine, "flowers")
    assert site is not None
    assert site.config.limits.min_fill_seconds == 0
    assert site.config.limits.per_number == Limit(count=3, seconds=3600)  # the default
    page = admin.get("/admin/widget/flowers").text
    assert 'id="widget-limits"' in page and "Per phone number" in page
    assert re.search(r'name="limit_per_number_count" id="limit_per_number_count" value="3"', page)
    assert request_callback(panel.url, NUMBER).status_code == 202

    edited = admin.post(
        "/admin/widget/flowers",
        site_form(
            limit_per_number_count="2",
            limit_per_number_seconds="7200",
            limit_per_ip_count="50",
            countdown="40",
        ),
    )
    assert edited.status_code == 302
    saved = load_site(engine, "flowers")
    assert saved is not None
    assert saved.config.limits.per_number == Limit(count=2, seconds=7200)
    assert saved.config.limits.per_ip == Limit(count=50, seconds=600)
    assert saved.config.limits.per_site == Limit(count=120, seconds=60)  # untouched
    assert re.search(
        r'name="limit_per_number_seconds" id="limit_per_number_seconds" value="7200"',
        admin.get("/admin/widget/flowers").text,
    )

    eventually(lambda: widget_config(panel.url).json()["countdown"] == 40)  # the widget has the new site
    assert request_callback(panel.url, NUMBER).status_code == 202  # the second of 2 per 7200 s
    refused = request_callback(panel.url, NUMBER)
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert "at most 2 per 7200 s" in refused.json()["error"]
    assert 0 < int(refused.headers["Retry-After"]) <= 7200
    assert request_callback(panel.url, OTHER_NUMBER).status_code == 202  # another number is not limited


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("limit_per_ip_count", "0", "greater than or equal to 1"),
        ("limit_per_number_seconds", "604801", "less than or equal to 604800"),
        ("limit_per_site_count", "many", "valid integer"),
        ("limit_per_visitor_seconds", "", "This value is required."),
        ("limit_min_fill_seconds", "-1", "greater than or equal to 0"),
    ],
)
def test_a_wrong_limit_is_refused_at_its_field_and_nothing_is_saved(
    panel: LivePanel, engine: Engine, field: str, value: str, message: str
) -> None:
    admin = Browser(panel.url, "admin")
    create(admin)
    before = load_site(engine, "flowers")

    refused = admin.post("/admin/widget/flowers", site_form(countdown="50", **{field: value}))
    assert refused.status_code == 400
    assert message in field_error(refused.text, field)
    errors = re.search(r'id="widget-errors".*?</div>', refused.text, re.S)
    assert errors and message in html.unescape(errors.group(0))
    after = load_site(engine, "flowers")
    assert after is not None and before is not None
    assert after.config == before.config and after.updated_at == before.updated_at

    new = admin.post("/admin/widget/new", site_form(key="roses", **{field: value}))
    assert new.status_code == 400
    assert message in field_error(new.text, field)
    assert load_site(engine, "roses") is None


def test_the_limit_titles_follow_the_users_language(panel: LivePanel, engine: Engine) -> None:
    from admin_module.users import create_user
    from tests.test_admin_support import PASSWORD

    create_user(engine, "admin_ru", PASSWORD, "admin", lang="ru")
    admin = Browser(panel.url, "admin_ru")
    create(admin)
    page = admin.get("/admin/widget/flowers").text
    assert "Защита от злоупотреблений" in page and "На один номер" in page
    refused = admin.post("/admin/widget/flowers", site_form(limit_per_ip_count=""))
    assert field_error(refused.text, "limit_per_ip_count") == "Заполните это поле."
    assert "С одного IP-адреса (Заявок): Заполните это поле." in html.unescape(refused.text)


# ------------------------------------------------------------------------------------------- delete


def test_a_deleted_site_is_gone_from_the_panel_and_the_widget(panel: LivePanel, engine: Engine) -> None:
    admin = Browser(panel.url, "admin")
    create(admin)
    assert request_callback(panel.url, NUMBER).status_code == 202  # waits for the day after tomorrow
    assert 'id="widget-delete"' in admin.get("/admin/widget/flowers").text

    confirm = admin.get("/admin/widget/flowers/delete")
    assert confirm.status_code == 200
    waiting = re.search(r'id="widget-delete-waiting">([^<]*)<', confirm.text)
    assert waiting and "dialled (outside working hours or before another attempt): 1." in waiting.group(1)
    assert "marked failed" in waiting.group(1)
    assert re.search(r'<input type="checkbox" name="confirm" id="confirm" value="y" required>', confirm.text)

    # Without the box ticked nothing happens.
    unconfirmed = admin.post("/admin/widget/flowers/delete", {}, form_page="/admin/widget/flowers/delete")
    assert unconfirmed.status_code == 400
    assert 'id="widget-delete-error"' in unconfirmed.text
    assert load_site(engine, "flowers") is not None

    deleted = admin.post(
        "/admin/widget/flowers/delete", {"confirm": "y"}, form_page="/admin/widget/flowers/delete"
    )
    assert deleted.status_code == 302 and deleted.headers["Location"].endswith("/admin/widget")
    assert load_site(engine, "flowers") is None
    listing = admin.get("/admin/widget").text
    assert 'data-site="flowers"' not in listing and "Site flowers deleted." in listing
    assert admin.get("/admin/widget/flowers").status_code == 404
    assert admin.get("/admin/widget/flowers/delete").status_code == 404

    # The widget answers as for a site that never existed.
    unknown = requests.get(f"{panel.url}/widget/config", params={"site": "tulips"}, timeout=10)
    eventually(lambda: widget_config(panel.url, None).status_code == 404)
    assert widget_config(panel.url, None).json()["code"] == unknown.json()["code"] == "unknown_site"

    # As the confirmation says: the waiting request is not dialled but given up when its time comes.
    scheduler = WidgetScheduler(
        service_from_settings(Settings(), engine, {}, lambda: mango_client(Settings()))
    )
    scheduler.run_once(time.time() + 3 * 86400)
    with engine.connect() as conn:
        request = conn.execute(select(widget_requests)).one()
    assert (request.status, request.failure, request.attempts) == ("failed", "site_removed", 0)


# --------------------------------------------------------------------------------------- block list


def test_a_number_blocked_in_the_panel_is_refused_by_the_widget_until_unblocked(
    panel: LivePanel, engine: Engine
) -> None:
    admin = Browser(panel.url, "admin")
    create(admin)
    listing = admin.get("/admin/widget").text
    assert re.search(r'href="/admin/widget/blocked" id="widget-blocked-link"', listing)
    assert 'id="widget-blocked-none"' in admin.get("/admin/widget/blocked").text

    added = admin.post(
        "/admin/widget/blocked", {"kind": "phone", "value": "8 (916) 123-45-67", "reason": "spam"}
    )
    assert added.status_code == 302 and added.headers["Location"].endswith("/admin/widget/blocked")
    page = admin.get("/admin/widget/blocked").text
    assert f"{NUMBER} is blocked." in page
    [row] = rows(page, "widget-blocked")
    assert f'data-value="{NUMBER}"' in row and "spam" in row
    assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</td>", row)  # the date it was blocked

    refused = request_callback(panel.url, "+7 916 123-45-67")
    assert refused.status_code == 403 and refused.json()["code"] == "blocked"
    assert request_callback(panel.url, OTHER_NUMBER).status_code == 202

    removed = unblock_in_panel(admin, "phone", NUMBER)
    assert removed.status_code == 302
    page = admin.get("/admin/widget/blocked").text
    assert f"{NUMBER} is unblocked." in page and 'id="widget-blocked-none"' in page
    assert list_blocked(engine) == []
    assert request_callback(panel.url, NUMBER).status_code == 202

    again = unblock_in_panel(admin, "phone", NUMBER)
    assert "was not on the block list" in admin.get(again.headers["Location"].removeprefix(panel.url)).text


def test_an_address_blocked_in_the_panel_is_refused_by_the_widget(panel: LivePanel, engine: Engine) -> None:
    admin = Browser(panel.url, "admin")
    create(admin)
    assert admin.post("/admin/widget/blocked", {"kind": "ip", "value": "127.0.0.1/8"}).status_code == 302
    assert [(e["kind"], e["value"], e["reason"]) for e in list_blocked(engine)] == [
        ("ip", "127.0.0.0/8", None)
    ]
    refused = request_callback(panel.url, NUMBER)  # this test's requests come from 127.0.0.1
    assert refused.status_code == 403 and refused.json()["code"] == "blocked"

    assert unblock_in_panel(admin, "ip", "127.0.0.0/8").status_code == 302
    assert request_callback(panel.url, NUMBER).status_code == 202


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"kind": "phone", "value": "12"}, "value", "Not a phone number the widget can use:"),
        ({"kind": "phone", "value": "+7 916"}, "value", "Not a phone number the widget can use:"),
        ({"kind": "ip", "value": "300.1.2.3"}, "value", "300.1.2.3 is not an IP address or network"),
        ({"kind": "ip", "value": "+79161234567"}, "value", "is not an IP address or network"),
        ({"kind": "phone", "value": " "}, "value", "This value is required."),
        ({"kind": "email", "value": "a@b.example"}, "kind", "Choose a phone number or an IP address."),
        ({"kind": "phone", "value": NUMBER, "reason": "x" * 501}, "reason", "longer than 500 characters"),
    ],
)
def test_a_wrong_block_list_entry_is_refused_with_a_clear_message(
    panel: LivePanel, engine: Engine, data: dict[str, str], field: str, message: str
) -> None:
    admin = Browser(panel.url, "admin")
    refused = admin.post("/admin/widget/blocked", data)
    assert refused.status_code == 400
    assert message in field_error(refused.text, field)
    assert list_blocked(engine) == []


def test_the_reserved_page_names_cannot_be_site_keys(panel: LivePanel, engine: Engine) -> None:
    admin = Browser(panel.url, "admin")
    refused = admin.post("/admin/widget/new", site_form(key="blocked"))
    assert refused.status_code == 400
    assert "reserved" in field_error(refused.text, "key")
    assert load_site(engine, "blocked") is None


def test_block_this_number_from_the_callback_requests_page(panel: LivePanel, engine: Engine) -> None:
    admin = Browser(panel.url, "admin")
    create(admin)
    assert request_callback(panel.url, NUMBER).status_code == 202
    page = admin.get("/admin/callbacks").text
    link = re.search(r'<a href="([^"]+)" class="block-number"', page)
    assert link, "no block action on the callback requests page"
    form = admin.get(html.unescape(link.group(1)))
    assert re.search(rf'name="value" id="value" value="{re.escape(NUMBER)}"', form.text)
    assert re.search(r'<option value="phone" selected>', form.text)
    assert admin.post("/admin/widget/blocked", {"kind": "phone", "value": NUMBER}).status_code == 302
    assert request_callback(panel.url, NUMBER).status_code == 403
    # A manager sees the requests but may not block.
    assert 'class="block-number"' not in Browser(panel.url, "manager").get("/admin/callbacks").text


# ----------------------------------------------------------------------------------------- security

NEW_POSTS = [
    ("/admin/widget/blocked", {"kind": "phone", "value": OTHER_NUMBER}),
    ("/admin/widget/blocked/remove", {"kind": "phone", "value": NUMBER}),
    ("/admin/widget/flowers/delete", {"confirm": "y"}),
    ("/admin/widget/flowers", {"limit_per_ip_count": "1"}),
]


def _unchanged(engine: Engine) -> None:
    site = load_site(engine, "flowers")
    assert site is not None and site.config.limits.per_ip == Limit(count=5, seconds=600)
    assert [entry["value"] for entry in list_blocked(engine)] == [NUMBER]


@pytest.mark.parametrize("username", ["manager", "accountant"])
def test_only_admins_may_delete_sites_and_edit_the_block_list(
    panel: LivePanel, engine: Engine, username: str
) -> None:
    create(Browser(panel.url, "admin"))
    block(engine, "phone", NUMBER, "spam")
    user = Browser(panel.url, username)
    for path in ("/admin/widget/blocked", "/admin/widget/flowers/delete"):
        assert user.get(path).status_code == 403
    for path, data in NEW_POSTS:
        # A valid token from a page the role may open: refused all the same.
        assert user.post(path, {**site_form(), **data}, form_page="/admin/calls").status_code == 403
    _unchanged(engine)
    anonymous = requests.get(f"{panel.url}/admin/widget/blocked", allow_redirects=False, timeout=10)
    assert anonymous.status_code == 302 and "/admin/login" in anonymous.headers["Location"]


def test_posts_without_the_csrf_token_are_refused(panel: LivePanel, engine: Engine) -> None:
    admin = Browser(panel.url, "admin")
    create(admin)
    block(engine, "phone", NUMBER, "spam")
    for path, data in NEW_POSTS:
        refused = admin.http.post(
            f"{panel.url}{path}", data={**site_form(), **data}, allow_redirects=False, timeout=10
        )
        assert refused.status_code == 400, path
        assert "The form expired" in refused.text
    _unchanged(engine)


def test_a_reason_with_markup_is_shown_as_text(panel: LivePanel, engine: Engine) -> None:
    admin = Browser(panel.url, "admin")
    attack = '"><script>alert(1)</script>'
    assert (
        admin.post("/admin/widget/blocked", {"kind": "phone", "value": NUMBER, "reason": attack}).status_code
        == 302
    )
    assert list_blocked(engine)[0]["reason"] == attack
    page = admin.get("/admin/widget/blocked").text
    assert "<script>alert(1)" not in page
    assert "&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # Refused input is shown back escaped too.
    refused = admin.post("/admin/widget/blocked", {"kind": "ip", "value": attack, "reason": attack})
    assert refused.status_code == 400
    assert "<script>alert(1)" not in refused.text
