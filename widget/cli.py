"""`callbridge widget ...`: register the sites that embed the widget, block abusers, list requests.

The group takes the engine (and the settings, for the public URL) from the click context (`ctx.obj`),
which the main CLI sets up.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
from typing import Any

import click
import sqlalchemy as sa
from pydantic import ValidationError

from bridge.connector_api.phones import InvalidPhoneNumber, to_e164
from widget.schedule import ScheduleError, parse_hours_spec
from widget.settings import NUMBER_TYPES, SiteConfig, check_key
from widget.sites import (
    SiteExists,
    SiteNotFound,
    block,
    config_json,
    delete_site,
    embed_snippet,
    list_blocked,
    list_sites,
    load_site,
    save_site,
    unblock,
)
from widget.tables import widget_requests

__all__ = ["widget"]

_SCOPES = ("ip", "network", "number", "visitor", "site")


def _engine(ctx: click.Context) -> sa.Engine:
    engine = getattr(ctx.obj, "engine", None)
    if not isinstance(engine, sa.Engine):
        raise click.UsageError("no database configured (the command needs ctx.obj.engine)")
    return engine


def _public_url(ctx: click.Context) -> str:
    settings = getattr(ctx.obj, "config", None)
    url = getattr(getattr(settings, "http", None), "public_url", "") or ""
    return url.rstrip("/") or "https://YOUR-CALLBRIDGE-HOST"


def _region(ctx: click.Context) -> str:
    settings = getattr(ctx.obj, "config", None)
    return getattr(getattr(settings, "phones", None), "default_region", None) or "RU"


def _site_options(func: Any) -> Any:
    options = [
        click.option("--name", help="A name for people (shown in leads)."),
        click.option(
            "--origin",
            "origins",
            multiple=True,
            help="A page origin allowed to use the widget, e.g. https://shop.example.com (repeatable).",
        ),
        click.option("--group", help="The managers' group short number in the PBX, rung first, e.g. 200."),
        click.option("--line", help="The company line (DID) the visitor sees calling, e.g. 74951234567."),
        click.option("--region", help="Country for numbers written without a code (RU, KZ, ...)."),
        click.option(
            "--countries",
            help="Countries whose numbers are called, e.g. RU,KZ ('' = the region only, the default).",
        ),
        click.option(
            "--number-types",
            help=f"Number types called, from {','.join(NUMBER_TYPES)} (default: all but toll_free).",
        ),
        click.option("--timezone", "tz", help="IANA time zone of the working hours, e.g. Europe/Moscow."),
        click.option(
            "--hours",
            help="Working hours, e.g. 'mon-fri 09:00-18:00; sat 10:00-15:00' ('daily 00:00-24:00' = always).",
        ),
        click.option("--holiday", "holidays", multiple=True, help="A closed date, YYYY-MM-DD (repeatable)."),
        click.option("--clear-holidays", is_flag=True, help="Forget every holiday before adding --holiday."),
        click.option("--countdown", type=int, help="Seconds the widget counts down (default 30)."),
        click.option("--retries", type=int, help="Further attempts when a call fails (default 1)."),
        click.option("--retry-delay", type=int, help="Seconds between attempts (default 120)."),
        click.option("--language", type=click.Choice(["auto", "ru", "en"])),
        click.option("--mode", type=click.Choice(["compact", "full"]), help="The first state of the widget."),
        click.option(
            "--position", type=click.Choice(["bottom-right", "bottom-left", "top-right", "top-left"])
        ),
        click.option("--accent", help="The button colour, e.g. #1f7a4d."),
        click.option(
            "--limit",
            "limits",
            multiple=True,
            help="A limit SCOPE=COUNT/SECONDS; scopes ip, network, number, visitor, site (repeatable).",
        ),
        click.option("--min-fill", type=float, help="Least seconds between showing the form and sending it."),
        click.option(
            "--daily-cap", type=int, help="Distinct numbers called a day at most (0 = no cap; 100)."
        ),
        click.option(
            "--text",
            "texts",
            multiple=True,
            help="A text override LANG.KEY=TEXT, e.g. en.title=Call me (repeatable).",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _apply(data: dict[str, Any], **opts: Any) -> dict[str, Any]:
    """Merge command-line options into a config dict (unset options leave values alone)."""
    simple = {
        "name": "name",
        "group": "group",
        "line": "line",
        "region": "region",
        "tz": "timezone",
        "countdown": "countdown",
        "retries": "retries",
        "retry_delay": "retry_delay_seconds",
        "language": "language",
        "mode": "mode",
        "position": "position",
    }
    for option, key in simple.items():
        if opts.get(option) is not None:
            data[key] = opts[option]
    if opts.get("origins"):
        data["origins"] = list(opts["origins"])
    if opts.get("hours") is not None:
        try:
            data["hours"] = parse_hours_spec(opts["hours"])
        except ScheduleError as exc:
            raise click.BadParameter(str(exc), param_hint="--hours") from None
    if opts.get("clear_holidays"):
        data["holidays"] = []
    if opts.get("holidays"):
        data["holidays"] = [*data.get("holidays", []), *opts["holidays"]]
    if opts.get("accent"):
        data.setdefault("colours", {})["accent"] = opts["accent"]
    limits = data.setdefault("limits", {})
    for item in opts.get("limits") or ():
        scope, _, rule = item.partition("=")
        count, _, seconds = rule.partition("/")
        if scope not in _SCOPES or not count.isdigit() or not seconds.isdigit():
            raise click.BadParameter(
                f"{item!r}: write SCOPE=COUNT/SECONDS, e.g. ip=5/600", param_hint="--limit"
            )
        limits[f"per_{scope}"] = {"count": int(count), "seconds": int(seconds)}
    if opts.get("min_fill") is not None:
        limits["min_fill_seconds"] = opts["min_fill"]
    if opts.get("daily_cap") is not None:
        limits["daily_numbers"] = opts["daily_cap"]
    if opts.get("countries") is not None:
        data["countries"] = _items(opts["countries"])
    if opts.get("number_types") is not None:
        data["number_types"] = _items(opts["number_types"].lower())
    for item in opts.get("texts") or ():
        name, _, text = item.partition("=")
        lang, _, key = name.partition(".")
        if not key or not text:
            raise click.BadParameter(f"{item!r}: write LANG.KEY=TEXT", param_hint="--text")
        data.setdefault("texts", {}).setdefault(lang, {})[key] = text
    return data


def _items(text: str) -> list[str]:
    return [item for item in re.split(r"[\s,;]+", text) if item]


def _validated(data: dict[str, Any]) -> SiteConfig:
    try:
        return SiteConfig.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'site'}: {e['msg']}" for e in exc.errors()]
        raise click.ClickException("the site settings are invalid:\n  " + "\n  ".join(problems)) from None


def _cap(config: SiteConfig) -> str:
    cap = config.limits.daily_numbers
    return f"at most {cap} numbers a day" if cap else "no daily cap"


def _snippet(ctx: click.Context, key: str) -> str:
    return embed_snippet(_public_url(ctx), key)


@click.group()
def widget() -> None:
    """The callback widget: sites that embed it, the block list, requests."""


@widget.command("add-site")
@click.option("--key", help="The site key used in the embed tag (default: a random one).")
@click.option("--disabled", is_flag=True, help="Register it switched off.")
@_site_options
@click.pass_context
def add_site(ctx: click.Context, key: str | None, disabled: bool, **opts: Any) -> None:
    """Register a site: its origins, the managers' group and line, hours, look and limits."""
    key = key or secrets.token_urlsafe(9).replace("-", "x").replace("_", "y")
    try:
        check_key(key)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--key") from None
    if not opts.get("group") or not opts.get("line"):
        raise click.UsageError("a site needs --group (the managers' group) and --line (the company line)")
    config = _validated(_apply({}, **opts))
    try:
        save_site(_engine(ctx), key, config, enabled=not disabled, create=True)
    except SiteExists as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"site {key} added. Embed it on the site's pages with:\n\n  {_snippet(ctx, key)}\n")
    if not config.origins:
        click.echo("note: no --origin given, so no browser page may use it yet", err=True)


@widget.command("set-site")
@click.argument("key")
@click.option("--enable/--disable", "enabled", default=None, help="Switch the widget on or off.")
@_site_options
@click.pass_context
def set_site(ctx: click.Context, key: str, enabled: bool | None, **opts: Any) -> None:
    """Change a site's settings; options not given keep their values."""
    engine = _engine(ctx)
    site = load_site(engine, key)
    if site is None:
        raise click.ClickException(f"no site {key!r}; add it with add-site")
    config = _validated(_apply(site.config.model_dump(mode="json"), **opts))
    try:
        save_site(engine, key, config, enabled=site.enabled if enabled is None else enabled, create=False)
    except SiteNotFound as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"site {key} updated")


@widget.command("list-sites")
@click.option("--json", "as_json", is_flag=True, help="Print every setting as JSON.")
@click.pass_context
def list_sites_cmd(ctx: click.Context, as_json: bool) -> None:
    """The registered sites."""
    sites = list_sites(_engine(ctx))
    if as_json:
        click.echo(
            json.dumps(
                [{"key": s.key, "enabled": s.enabled, **s.config.model_dump(mode="json")} for s in sites],
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    if not sites:
        click.echo("no sites; add one with: callbridge widget add-site --origin ... --group ... --line ...")
        return
    for site in sites:
        c = site.config
        hours = "; ".join(f"{day} {','.join(v)}" for day, v in c.hours.items()) or "never open"
        state = "on" if site.enabled else "OFF"
        click.echo(f"{site.key}  [{state}]  {c.name or '-'}")
        click.echo(f"  origins: {', '.join(c.origins) or '(none: no page may use it)'}")
        click.echo(f"  group {c.group} -> visitor, line {c.line}, {c.timezone}: {hours}")
        countries = ", ".join(c.countries) or f"{c.region or _region(ctx)} (the region)"
        click.echo(f"  calls {', '.join(c.number_types)} numbers in {countries}; {_cap(c)}")
        if c.holidays:
            click.echo(f"  holidays: {', '.join(d.isoformat() for d in c.holidays)}")


@widget.command("show-site")
@click.argument("key")
@click.pass_context
def show_site(ctx: click.Context, key: str) -> None:
    """Every setting of one site, as JSON, and its embed tag."""
    site = load_site(_engine(ctx), key)
    if site is None:
        raise click.ClickException(f"no site {key!r}")
    click.echo(config_json(site))
    click.echo(f"\n{_snippet(ctx, key)}")


@widget.command("remove-site")
@click.argument("key")
@click.pass_context
def remove_site(ctx: click.Context, key: str) -> None:
    """Remove a site (its waiting requests are not dialled any more)."""
    if not delete_site(_engine(ctx), key):
        raise click.ClickException(f"no site {key!r}")
    click.echo(f"site {key} removed")


@widget.command("block")
@click.option("--phone", help="A number in any format.")
@click.option("--ip", help="An IP address or network (CIDR).")
@click.option("--reason", help="Why, for whoever reads the list later.")
@click.pass_context
def block_cmd(ctx: click.Context, phone: str | None, ip: str | None, reason: str | None) -> None:
    """Refuse callback requests for a number or from an address, on every site."""
    if bool(phone) == bool(ip):
        raise click.UsageError("give exactly one of --phone or --ip")
    try:
        if phone:
            value = block(_engine(ctx), "phone", to_e164(phone, _region(ctx)), reason)
        else:
            value = block(_engine(ctx), "ip", ip or "", reason)
    except (InvalidPhoneNumber, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"blocked {value}")


@widget.command("unblock")
@click.option("--phone")
@click.option("--ip")
@click.pass_context
def unblock_cmd(ctx: click.Context, phone: str | None, ip: str | None) -> None:
    """Take a number or an address off the block list."""
    if bool(phone) == bool(ip):
        raise click.UsageError("give exactly one of --phone or --ip")
    try:
        kind, value = ("phone", to_e164(phone, _region(ctx))) if phone else ("ip", ip or "")
        removed = unblock(_engine(ctx), kind, value)
    except (InvalidPhoneNumber, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo("unblocked" if removed else "was not blocked")


@widget.command("blocked")
@click.pass_context
def blocked_cmd(ctx: click.Context) -> None:
    """The block list."""
    rows = list_blocked(_engine(ctx))
    if not rows:
        click.echo("the block list is empty")
    for row in rows:
        click.echo(f"{row['kind']:5}  {row['value']}  {row['reason'] or ''}".rstrip())


@widget.command("requests")
@click.option("--site", help="Only this site's requests.")
@click.option("--limit", default=20, show_default=True)
@click.pass_context
def requests_cmd(ctx: click.Context, site: str | None, limit: int) -> None:
    """The newest callback requests and where they stand."""
    query = sa.select(widget_requests).order_by(widget_requests.c.id.desc()).limit(limit)
    if site:
        query = query.where(widget_requests.c.site_key == site)
    with _engine(ctx).connect() as conn:
        rows = conn.execute(query).all()
    if not rows:
        click.echo("no requests")
    for row in rows:
        when = dt.datetime.fromtimestamp(row.created_at, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        extra = row.failure or row.phase or ""
        click.echo(
            f"{row.id:>6}  {when}  {row.site_key}  {row.phone}  {row.status}  "
            f"attempt {row.attempts}/{row.max_attempts}  {extra}".rstrip()
        )
