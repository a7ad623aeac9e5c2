"""The widget's toll-fraud settings edited in the panel (over real HTTP, on the real store) and with the CLI:
allowed countries and number types, the per-network limit and the daily cap are saved, shown again, and
enforced by the widget's endpoints; wrong values are refused at their fields and nothing is saved."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from tests.test_admin_support import LivePanel
from tests.test_admin_widget import Browser, eventually, field_error, widget_config
from tests.test_admin_widget import panel as panel  # noqa: F401  (the fixture)
from tests.test_admin_widget_manage import create, request_callback, site_form
from widget.cli import widget
from widget.settings import Limit
from widget.sites import load_site


def test_countries_types_network_limit_and_daily_cap_edited_in_the_panel_are_enforced(
    panel: LivePanel, engine: Engine
) -> None:
    admin = Browser(panel.url, "admin")
    create(admin)
    site = load_site(engine, "flowers")
    assert site is not None
    assert site.config.countries == [] and site.config.number_types == [
        "mobile",
        "fixed_line",
        "fixed_line_or_mobile",
    ]
    assert site.config.limits.per_network == Limit(count=10, seconds=600)
    assert site.config.limits.daily_numbers == 100
    page = admin.get("/admin/widget/flowers").text
    assert re.search(r'id="number_type_mobile" value="mobile"\s+checked', page)
    assert not re.search(r'id="number_type_toll_free" value="toll_free"\s+checked', page)
    assert 'name="limit_per_network_count"' in page and "Today: 0 of 100 numbers." in page

    edited = admin.post(
        "/admin/widget/flowers",
        {
            **site_form(countries="kz, RU", limit_per_network_count="7", limit_daily_numbers="2"),
            "number_types_shown": "1",
            "number_types": ["mobile", "toll_free"],  # type: ignore[dict-item]
            "countdown": "41",
        },
    )
    assert edited.status_code == 302, edited.text
    saved = load_site(engine, "flowers")
    assert saved is not None
    assert saved.config.countries == ["KZ", "RU"]
    assert saved.config.number_types == ["mobile", "toll_free"]
    assert saved.config.limits.per_network == Limit(count=7, seconds=600)
    assert saved.config.limits.daily_numbers == 2

    eventually(lambda: widget_config(panel.url).json()["countdown"] == 41)
    landline = request_callback(panel.url, "+7 495 123-45-67")  # fixed line: no longer ticked
    assert landline.status_code == 422 and landline.json()["code"] == "number_not_allowed"
    assert request_callback(panel.url, "+7 701 123 45 67").status_code == 202  # Kazakhstan, mobile
    assert request_callback(panel.url, "+7 800 123-45-67").status_code == 202  # toll-free, ticked
    capped = request_callback(panel.url, "+7 916 123-45-67")
    assert capped.status_code == 429 and capped.json()["code"] == "daily_cap"
    page = admin.get("/admin/widget/flowers").text
    assert 'id="widget-cap-reached"' in page and "Today: 2 of 2 numbers." in page


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"countries": "RUS"}, "countries", "two-letter code"),
        ({"number_types_shown": "1"}, "number_types", "at least one number type"),
        ({"limit_daily_numbers": "-1"}, "limit_daily_numbers", "greater than or equal to 0"),
        ({"limit_per_network_count": "0"}, "limit_per_network_count", "greater than or equal to 1"),
    ],
)
def test_wrong_guard_settings_are_refused_at_their_field(
    panel: LivePanel, engine: Engine, changes: dict[str, str], field: str, message: str
) -> None:
    admin = Browser(panel.url, "admin")
    create(admin)
    before = load_site(engine, "flowers")
    refused = admin.post("/admin/widget/flowers", site_form(**changes))
    assert refused.status_code == 400
    assert message in field_error(refused.text, field)
    assert load_site(engine, "flowers") == before


def test_the_cli_sets_countries_types_network_limit_and_daily_cap(engine: Engine) -> None:
    runner = CliRunner()
    obj = type("Ctx", (), {"engine": engine, "config": None})()
    base = ["add-site", "--key", "cli-guards", "--group", "200", "--line", "74951234567"]
    assert runner.invoke(widget, base, obj=obj).exit_code == 0
    done = runner.invoke(
        widget,
        ["set-site", "cli-guards", "--countries", "ru,by", "--number-types", "mobile,toll_free"]
        + ["--limit", "network=4/120", "--daily-cap", "0"],
        obj=obj,
    )
    assert done.exit_code == 0, done.output
    site = load_site(engine, "cli-guards")
    assert site is not None
    assert site.config.countries == ["BY", "RU"] and site.config.number_types == ["mobile", "toll_free"]
    assert site.config.limits.per_network == Limit(count=4, seconds=120)
    assert site.config.limits.daily_numbers == 0
    listing = runner.invoke(widget, ["list-sites"], obj=obj).output
    assert "calls mobile, toll_free numbers in BY, RU; no daily cap" in listing
    wrong = runner.invoke(widget, ["set-site", "cli-guards", "--number-types", "premium_rate"], obj=obj)
    assert wrong.exit_code != 0 and "number_types" in wrong.output
    cleared = runner.invoke(widget, ["set-site", "cli-guards", "--countries", ""], obj=obj)
    assert cleared.exit_code == 0
    assert load_site(engine, "cli-guards").config.countries == []  # type: ignore[union-attr]
