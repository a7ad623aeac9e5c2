"""The panel's widget pages: the sites that embed the callback widget, one site's settings, its embed tag.

`register_widget_routes(bp, engine=..., settings=..., t=...)` adds them to the admin blueprint. Sites are
saved through `widget.sites.save_site`, the same call the CLI uses: the widget's web workers re-read a site
at most 5 seconds after a change (`widget.sites.SiteCache`), and requests waiting for the schedule are
re-planned in the same transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, abort, flash, g, redirect, render_template, request, url_for
from sqlalchemy import Engine

from admin_module import auth
from admin_module.widget_forms import (
    COLOURS,
    MAIN_TEXTS,
    OTHER_TEXTS,
    FieldErrors,
    SiteForm,
    choices,
    fill,
    hours_field,
    site_config,
    text_field,
)
from bridge.config import Settings
from widget.schedule import WEEKDAYS
from widget.sites import (
    Site,
    SiteExists,
    SiteNotFound,
    embed_snippet,
    list_sites,
    load_site,
    save_site,
)
from widget.texts import DEFAULT_TEXTS, LANGUAGES

__all__ = ["NEW_SITE", "register_widget_routes"]

log = logging.getLogger(__name__)

NEW_SITE = "new"  # /admin/widget/new is the form for a new site, so no site may be added under this key


def register_widget_routes(
    bp: Blueprint, *, engine: Engine, settings: Settings, t: Callable[..., str]
) -> None:
    """`/admin/widget` (the list: `admin.widget_page`), `/admin/widget/new`, `/admin/widget/<key>`."""

    def public_url() -> tuple[str, bool]:
        """`http.public_url`, else the address this page was opened at (and False: not configured)."""
        configured = settings.http.public_url.strip()
        return (configured, True) if configured else (request.host_url, False)

    def label(field: str) -> str:
        """The field's name for the list of problems ("" where the message names its day or text)."""
        if field.startswith(("hours_", "text_")):
            return ""
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
            ),
            status,
        )

    def save(form: SiteForm, site: Site | None) -> Any:
        """Validate the posted form and save it; 400 with the messages per field when it is wrong."""
        new = site is None
        base = {} if site is None else site.config.model_dump(mode="json")
        config, errors = site_config(form, base, new=new, missing=t("widget_required"))
        key = (form.key.data or "").strip() if new else site.key  # type: ignore[union-attr]
        if new and key == NEW_SITE:
            errors.setdefault("key", []).append(t("widget_key_reserved", site=NEW_SITE))
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
    @auth.requires("settings")
    def widget_page() -> Any:
        url, configured = public_url()
        sites = list_sites(engine)
        return render_template(
            "admin/widget_list.html",
            sites=sites,
            snippets={site.key: embed_snippet(url, site.key) for site in sites},
            public_url_configured=configured,
        )

    @bp.get("/widget/new")
    @auth.requires("settings")
    def widget_new() -> Any:
        form = SiteForm(formdata=None)
        fill(form, None)
        return render(form, None, {})

    @bp.post("/widget/new")
    @auth.requires("settings")
    def widget_create() -> Any:
        return save(SiteForm(), None)

    @bp.get("/widget/<key>")
    @auth.requires("settings")
    def widget_site(key: str) -> Any:
        site = load_site(engine, key)
        if site is None:
            return _not_found(key)
        form = SiteForm(formdata=None)
        fill(form, site)
        return render(form, site, {})

    @bp.post("/widget/<key>")
    @auth.requires("settings")
    def widget_save(key: str) -> Any:
        site = load_site(engine, key)
        if site is None:
            return _not_found(key)
        return save(SiteForm(), site)

    def _not_found(key: str) -> Response:
        body = render_template("admin/error.html", message=t("widget_not_found", site=key), status=404)
        return Response(body, status=404, mimetype="text/html")
