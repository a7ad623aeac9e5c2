"""The connectors page: each connector's queue and dead rows, and the retry action (`/admin/connectors`)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, g, redirect, render_template, request, url_for

from admin_module import auth
from admin_module.forms import ActionForm
from admin_module.language import panel_language
from admin_module.manifest_view import card
from admin_module.pages.context import PageContext, log
from bridge.connectors_runtime import is_enabled


def register(bp: Blueprint, ctx: PageContext) -> None:
    """Add the connectors page and its retry action to the admin blueprint."""
    engine = ctx.engine

    @bp.get("/connectors")
    @auth.requires("connectors")
    def connectors_page() -> Any:
        from bridge.outbox.queries import counts, list_deliveries
        from bridge.registry import available_connectors

        installed = available_connectors()
        language = panel_language()
        sections = ctx.store.effective().connectors  # saved panel values included
        enabled = {name for name, section in sections.items() if is_enabled(section)}
        totals = counts(engine)
        rows = []
        for name in sorted(set(installed) | set(totals["by_connector"])):
            per = totals["by_connector"].get(name, {"pending": 0, "done": 0, "dead": 0})
            delivered = list_deliveries(engine, status="done", connector=name, limit=1)
            failed = [d for d in list_deliveries(engine, connector=name, limit=20) if d.last_error]
            rows.append(
                {
                    "name": name,
                    "card": card(installed[name], language) if name in installed else None,
                    "installed": name in installed,
                    "enabled": name in enabled,
                    "counts": per,
                    "last_delivery": delivered[0].delivered_at if delivered else None,
                    "last_error": failed[0].last_error if failed else None,
                    "dead": list_deliveries(engine, status="dead", connector=name, limit=20),
                }
            )
        extra = ctx.connectors_health() if ctx.connectors_health else {}
        return render_template("admin/connectors.html", rows=rows, extra=extra, form=ActionForm())

    @bp.post("/connectors/retry")
    @auth.requires("connectors")
    def connectors_retry() -> Any:
        from bridge.outbox.queries import retry_deliveries

        ids = [int(v) for v in request.form.getlist("id") if v.isdigit()]
        connector = request.form.get("connector") or None
        n = retry_deliveries(engine, ids=ids or None, connector=connector)
        log.info("admin.retry by=%s connector=%s ids=%s n=%d", g.admin_user.username, connector, ids, n)
        flash(ctx.t("retried", n=n), "ok")
        return redirect(url_for("admin.connectors_page"))
