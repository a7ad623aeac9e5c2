"""The panel's quarantine page: raw PBX events the processor could not fold, with the reason, and a
button that puts one back to be folded again (`/admin/quarantine`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, url_for
from sqlalchemy import Engine

from admin_module import auth
from admin_module.forms import ActionForm
from bridge.store.raw_events import list_quarantined, release_quarantined

Translate = Callable[..., str]
PAGE_SIZE = 200

log = logging.getLogger(__name__)


def register_quarantine_routes(bp: Blueprint, *, engine: Engine, t: Translate) -> None:
    """Add the quarantine page and its retry action to the admin blueprint."""

    @bp.get("/quarantine")
    @auth.requires("settings")
    def quarantine_page() -> Any:
        events = list_quarantined(engine, limit=PAGE_SIZE)
        return render_template("admin/quarantine.html", events=events, form=ActionForm())

    @bp.post("/quarantine/<int:event_id>/retry")
    @auth.requires("settings")
    def quarantine_retry(event_id: int) -> Any:
        if ActionForm().validate_on_submit() and release_quarantined(engine, event_id):
            log.info("admin.quarantine retry by=%s id=%d", g.admin_user.username, event_id)
            flash(t("quarantine_retried", id=event_id), "ok")
        else:
            flash(t("quarantine_retry_failed", id=event_id), "error")
        return redirect(url_for("admin.quarantine_page"))
