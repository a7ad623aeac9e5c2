"""The panel's widget pages: the sites that embed the callback widget, one site's settings (with its abuse
limits), its embed tag, removing a site, and the block list of numbers and addresses.

`register_widget_routes(bp, engine=..., settings=..., t=...)` adds them to the admin blueprint. A site
whose daily cap of distinct numbers is reached today is flagged on the list and on its page. Sites are
saved through `widget.sites.save_site`, the same call the CLI uses: the widget's web workers re-read a site
at most 5 seconds after a change (`widget.sites.SiteCache`), and requests waiting for the schedule are
re-planned in the same transaction. Removing a site and the block list go through `widget.sites` too
(`delete_site`, `block`, `unblock`, `list_blocked`); the widget reads the block list on every request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import Engine, func, select

from admin_module import auth
from admin_module.widget_forms import (
    COLOURS,
    DAILY_CAP,
    LIMIT_PARTS,
    LIMIT_SCOPES,
    MAIN_TEXTS,
    MIN_FILL,
    NUMBER_TYPES,
    NUMBER_TYPES_SHOWN,
    OTHER_TEXTS,
    BlockForm,
    FieldErrors,
    SiteForm,
    block_entry,
    choices,
    fill,
    hours_field,
    limit_field,
    site_config,
    text_field,
)
from bridge.config import Settings
from widget.daily_cap import numbers_today
from widget.schedule import WEEKDAYS
from widget.service import WAITING
from widget.sites import (
    BLOCK_KINDS,
    Site,
    SiteExists,
    SiteNotFound,
    block,
    delete_site,
    embed_snippet,
    list_blocked,
    list_sites,
    load_site,
    save_site,
    unblock,
)
from widget.tables import widget_requests
from widget.texts import DEFAULT_TEXTS, LANGUAGES

__all__ = ["BLOCKED_PAGE", "NEW_SITE", "register_widget_routes"]

log = logging.getLogger(__name__)

# /admin/widget/new is the form for a new site and /admin/widget/blocked the block list, so no site may be
# added under these keys.
NEW_SITE = "new"
BLOCKED_PAGE = "blocked"
RESERVED_KEYS = (NEW_SITE, BLOCKED_PAGE)


def cap_status(engine: Engine, site: Site, now: float | None = None) -> dict[str, Any]:
    """The site's distinct numbers today against its daily cap (`reached` when no new number is called)."""
    cap = site.config.limits.daily_numbers
    today = numbers_today(engine, site.key, site.config, time.time() if now is None else now)
    return {"today": today, "cap": cap, "reached": bool(cap) and today >= cap}


def register_widget_routes(
    bp: Blueprint, *, engine: Engine, settings: Settings, t: Callable[..., str]
) -> None:
    """`/admin/widget` (the list: `admin.widget_page`), `/admin/widget/new`, `/admin/widget/<key>`, its
    `/delete`, and `/admin/widget/blocked` (the block list)."""

    def public_url() -> tuple[str, bool]:
        """`http.public_url`, else the address this page was opened at (and False: not configured)."""
        configured = settings.http.public_url.strip()
        return (configured, True) if configured else (request.host_url, False)

    def label(field: str) -> str:
        """The field's name for the list of problems ("" where the message names its day or text)."""
        if field.startswith(("hours_", "text_")):
            return ""
        if field.startswith("limit_"):
            return limit_label(field)
        key = "widget_" + {"retry_delay_seconds": "retry_delay"}.get(field, field)
        text = t(key)
        return "" if text == key else text

    def render(form: SiteForm, site: Site | None, errors: FieldErrors, status: int = 200) -> Any:
        url, configured = public_url()
        key = site.key if site is not None else ""
        return (
            render_template(
                "admin/widget_site.html",
                form=form,
                site=site,
                errors=errors,
                snippet=embed_snippet(url, key) if site is not None else "",
                public_url_configured=configured,
                weekdays=WEEKDAYS,
                hours_field=hours_field,
                languages=LANGUAGES,
                main_texts=MAIN_TEXTS,
                other_texts=OTHER_TEXTS,
                text_field=text_field,
                default_texts=DEFAULT_TEXTS,
                colours=COLOURS,
                choices=choices,
                label=label,
                limit_scopes=LIMIT_SCOPES,
                limit_parts=LIMIT_PARTS,
                limit_field=limit_field,
                min_fill=MIN_FILL,
                daily_cap=DAILY_CAP,
                number_types=NUMBER_TYPES,
                number_types_shown=NUMBER_TYPES_SHOWN,
                default_region=settings.phones.default_region,
                cap=cap_status(engine, site) if site is not None else None,
            ),
            status,
        )

    def save(form: SiteForm, site: Site | None) -> Any:
        """Validate the posted form and save it; 400 with the messages per field when it is wrong."""
        new = site is None
        base = {} if site is None else site.config.model_dump(mode="json")
        config, errors = site_config(form, base, new=new, missing=t("widget_required"))
        key = (form.key.data or "").strip() if new else site.key  # type: ignore[union-attr]
        if new and key in RESERVED_KEYS:
            errors.setdefault("key", []).append(t("widget_key_reserved", site=key))
            config = None
        if config is None:
            return render(form, site, errors, 400)
        try:
            saved = save_site(engine, key, config, enabled=bool(form.enabled.data), create=new)
        except SiteExists:
            return render(form, site, {"key": [t("widget_exists", site=key)]}, 409)
        except SiteNotFound:
            abort(404)
        log.info("admin.widget saved by=%s site=%s new=%s", g.admin_user.username, key, new)
        flash(t("widget_saved", site=key), "ok")
        return redirect(url_for("admin.widget_site", key=saved.key))

    @bp.get("/widget")
    @auth.requires("widget")
    def widget_page() -> Any:
        url, configured = public_url()
        sites = list_sites(engine)
        return render_template(
            "admin/widget_list.html",
            sites=sites,
            snippets={site.key: embed_snippet(url, site.key) for site in sites},
            caps={site.key: cap_status(engine, site) for site in sites},
            public_url_configured=configured,
        )

    @bp.get("/widget/new")
    @auth.requires("widget")
    def widget_new() -> Any:
        form = SiteForm(formdata=None)
        fill(form, None)
        return render(form, None, {})

    @bp.post("/widget/new")
    @auth.requires("widget")
    def widget_create() -> Any:
        return save(SiteForm(), None)

    @bp.get("/widget/<key>")
    @auth.requires("widget")
    def widget_site(key: str) -> Any:
        site = load_site(engine, key)
        if site is None:
            return _not_found(t, key)
        form = SiteForm(formdata=None)
        fill(form, site)
        return render(form, site, {})

    @bp.post("/widget/<key>")
    @auth.requires("widget")
    def widget_save(key: str) -> Any:
        site = load_site(engine, key)
        if site is None:
            return _not_found(t, key)
        return save(SiteForm(), site)

    def limit_label(field: str) -> str:
        if field == limit_field(MIN_FILL):
            return t("widget_min_fill")
        if field == limit_field(DAILY_CAP):
            return t("widget_daily_cap")
        scope, _, part = field.removeprefix("limit_").rpartition("_")
        return f"{t('widget_limit_' + scope)} ({t('widget_limit_' + part)})"

    _register_delete(bp, engine=engine, t=t)
    _register_block_list(bp, engine=engine, region=settings.phones.default_region, t=t)


def _not_found(t: Callable[..., str], key: str) -> Response:
    body = render_template("admin/error.html", message=t("widget_not_found", site=key), status=404)
    return Response(body, status=404, mimetype="text/html")


def _waiting(engine: Engine, key: str) -> int:
    """How many of the site's requests wait to be dialled (outside hours, queued or before a retry)."""
    query = select(func.count()).where(
        widget_requests.c.site_key == key, widget_requests.c.status.in_(WAITING)
    )
    with engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def _register_delete(bp: Blueprint, *, engine: Engine, t: Callable[..., str]) -> None:
    """`/admin/widget/<key>/delete`: a confirmation page, and the POST that removes the site."""

    def confirm_page(key: str, error: str = "", status: int = 200) -> Any:
        body = render_template(
            "admin/widget_delete.html", key=key, waiting=_waiting(engine, key), error=error
        )
        return body, status

    @bp.get("/widget/<key>/delete")
    @auth.requires("widget")
    def widget_delete_confirm(key: str) -> Any:
        if load_site(engine, key) is None:
            return _not_found(t, key)
        return confirm_page(key)

    @bp.post("/widget/<key>/delete")
    @auth.requires("widget")
    def widget_delete(key: str) -> Any:
        if load_site(engine, key) is None:
            return _not_found(t, key)
        if request.form.get("confirm") != "y":
            return confirm_page(key, t("widget_delete_unconfirmed"), 400)
        if not delete_site(engine, key):
            return _not_found(t, key)
        log.info("admin.widget removed by=%s site=%s", g.admin_user.username, key)
        flash(t("widget_deleted", site=key), "ok")
        return redirect(url_for("admin.widget_page"))


def _register_block_list(bp: Blueprint, *, engine: Engine, region: str, t: Callable[..., str]) -> None:
    """`/admin/widget/blocked`: the numbers and addresses the widget refuses, on every site."""

    def page(form: BlockForm, errors: FieldErrors, status: int = 200) -> Any:
        body = render_template(
            "admin/widget_blocked.html",
            form=form,
            errors=errors,
            entries=list_blocked(engine),
            kinds=BLOCK_KINDS,
        )
        return body, status

    @bp.get("/widget/blocked")
    @auth.requires("widget")
    def widget_blocked() -> Any:
        form = BlockForm(formdata=None)
        form.kind.data = request.args.get("kind") if request.args.get("kind") in BLOCK_KINDS else "phone"
        form.value.data = request.args.get("value", "")[:64]
        return page(form, {})

    @bp.post("/widget/blocked")
    @auth.requires("widget")
    def widget_block() -> Any:
        form = BlockForm()
        messages = {
            "missing": t("widget_required"),
            "kind": t("widget_block_bad_kind"),
            "phone": t("widget_block_bad_phone"),
            "nul": t("widget_block_nul"),
        }
        kind, value, errors = block_entry(form, region, messages)
        if not errors:
            try:
                value = block(engine, kind, value, (form.reason.data or "").strip() or None)
            except ValueError:
                errors["value"] = [t("widget_block_bad_ip", value=value)]
        if errors:
            return page(form, errors, 400)
        log.info("admin.widget blocked by=%s kind=%s value=%s", g.admin_user.username, kind, value)
        flash(t("widget_block_added", value=value), "ok")
        return redirect(url_for("admin.widget_blocked"))

    @bp.post("/widget/blocked/remove")
    @auth.requires("widget")
    def widget_unblock() -> Any:
        kind, value = request.form.get("kind", ""), request.form.get("value", "")
        try:
            removed = unblock(engine, kind, value)
        except ValueError:
            removed = False
        if removed:
            log.info("admin.widget unblocked by=%s kind=%s value=%s", g.admin_user.username, kind, value)
            flash(t("widget_block_removed", value=value), "ok")
        else:
            flash(t("widget_block_not_listed", value=value), "error")
        return redirect(url_for("admin.widget_blocked"))
