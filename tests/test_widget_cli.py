"""`callbridge widget ...`: sites, the block list and requests from the command line."""

from __future__ import annotations

import json
from dataclasses import dataclass

from click.testing import CliRunner
from sqlalchemy import Engine

from bridge.config import Settings
from widget.cli import widget
from widget.sites import list_blocked, load_site


@dataclass
class Obj:
    engine: Engine
    config: Settings


def run(engine: Engine, *args: str) -> tuple[int, str]:
    settings = Settings.model_validate({"http": {"public_url": "https://calls.example.com"}})
    result = CliRunner().invoke(widget, list(args), obj=Obj(engine, settings), catch_exceptions=False)
    return result.exit_code, result.output


def test_add_list_set_show_remove_a_site(engine: Engine) -> None:
    code, out = run(
        engine,
        "add-site",
        "--key",
        "shop-1",
        "--origin",
        "https://Shop.example.com/",
        "--origin",
        "http://localhost:8000",
        "--group",
        "200",
        "--line",
        "74951234567",
        "--hours",
        "mon-fri 09:00-18:00; sat 10:00-15:00",
        "--holiday",
        "2025-05-01",
        "--limit",
        "ip=10/60",
        "--text",
        "en.title=Call me now",
        "--accent",
        "#ff6600",
    )
    assert code == 0, out
    assert (
        '<script src="https://calls.example.com/widget/callback.js" data-site="shop-1" async></script>' in out
    )
    site = load_site(engine, "shop-1")
    assert site is not None
    assert site.config.origins == ["http://localhost:8000", "https://shop.example.com"]
    assert site.config.hours["sat"] == ["10:00-15:00"] and "sun" not in site.config.hours
    assert site.config.limits.per_ip.count == 10 and site.config.limits.per_number.count == 3
    assert site.config.texts == {"en": {"title": "Call me now"}} and site.config.colours.accent == "#ff6600"

    code, out = run(engine, "add-site", "--key", "shop-1", "--group", "200", "--line", "1")
    assert code == 1 and "already exists" in out

    code, out = run(engine, "set-site", "shop-1", "--countdown", "45", "--clear-holidays", "--disable")
    assert code == 0, out
    site = load_site(engine, "shop-1")
    assert site is not None and site.config.countdown == 45 and not site.config.holidays and not site.enabled
    assert site.config.origins == ["http://localhost:8000", "https://shop.example.com"]  # kept

    code, out = run(engine, "list-sites")
    assert code == 0 and "shop-1  [OFF]" in out and "https://shop.example.com" in out
    code, out = run(engine, "list-sites", "--json")
    assert json.loads(out)[0]["countdown"] == 45
    code, out = run(engine, "show-site", "shop-1")
    assert code == 0 and '"group": "200"' in out
    assert run(engine, "remove-site", "shop-1")[0] == 0
    assert load_site(engine, "shop-1") is None


def test_invalid_settings_are_explained(engine: Engine) -> None:
    code, out = run(engine, "add-site", "--key", "s1x", "--group", "sales", "--line", "74951234567")
    assert code == 1 and "group" in out and "short number" in out
    code, out = run(
        engine, "add-site", "--key", "s2x", "--group", "200", "--line", "7495", "--hours", "weekdays 9-18"
    )
    assert code == 2 and "--hours" in out
    code, out = run(
        engine, "add-site", "--key", "s3x", "--group", "200", "--line", "7", "--origin", "shop.example"
    )
    assert code == 1 and "origin" in out


def test_block_and_unblock(engine: Engine) -> None:
    assert (
        run(engine, "block", "--phone", "8 (916) 123-45-67", "--reason", "spam")[1]
        == "blocked +79161234567\n"
    )
    assert run(engine, "block", "--ip", "192.0.2.0/24")[0] == 0
    assert {(r["kind"], r["value"]) for r in list_blocked(engine)} == {
        ("phone", "+79161234567"),
        ("ip", "192.0.2.0/24"),
    }
    assert "spam" in run(engine, "blocked")[1]
    assert run(engine, "unblock", "--phone", "+79161234567")[1] == "unblocked\n"
    assert run(engine, "block", "--phone", "12")[0] == 1
    assert run(engine, "requests")[1] == "no requests\n"
