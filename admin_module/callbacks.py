"""The website widget's callback requests as the panel lists them: newest first, with where each stands."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, render_template, request
from sqlalchemy import Engine, select

from admin_module import auth
from bridge.store.engine import reader
from widget.service import WidgetService
from widget.tables import widget_requests

STATES: tuple[str, ...] = (
    "scheduled",
    "calling_managers",
    "connecting",
    "retry",
    "connected",
    "failed",
)
MAX_ROWS = 500


@dataclass(frozen=True)
class RequestFilter:
    since: float
    site: str | None = None
    state: str | None = None


def _utm(text: str | None) -> dict[str, str]:
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _page_url(text: str | None) -> str | None:
    """Only http(s) addresses become links (the visitor's browser sent this)."""
    value = (text or "").strip()
    return value if value.lower().startswith(("http://", "https://")) else None


def recent_requests(engine: Engine, flt: RequestFilter) -> list[dict[str, Any]]:
    """Requests since `flt.since`, newest first, with the widget's own state names (docs/widget.md)."""
    query = select(widget_requests).where(widget_requests.c.created_at >= flt.since)
    if flt.site:
        query = query.where(widget_requests.c.site_key == flt.site)
    query = query.order_by(widget_requests.c.id.desc()).limit(MAX_ROWS)
    with reader(engine).connect() as conn:
        rows = conn.execute(query).all()
    items = []
    for row in rows:
        state = WidgetService.describe(row, None)
        if flt.state and state["state"] != flt.state:
            continue
        items.append(
            {
                "id": row.id,
                "created_at": row.created_at,
                "site": row.site_key,
                "phone": row.phone,
                "state": state["state"],
                "attempt": row.attempts,
                "max_attempts": row.max_attempts,
                "failure": state["failure"],
                "entry_id": row.entry_id,
                "finished_at": row.finished_at,
                "page_url": _page_url(row.page_url),
                "utm": _utm(row.utm),
            }
        )
    return items


def site_keys(engine: Engine) -> list[str]:
    with reader(engine).connect() as conn:
        return sorted(r.site_key for r in conn.execute(select(widget_requests.c.site_key).distinct()))


def register_callback_routes(bp: Blueprint, *, engine: Engine) -> None:
    """`/admin/callbacks`: the widget's callback requests, filtered by days, site and state."""

    @bp.get("/callbacks")
    @auth.requires("callback_requests")
    def callbacks_page() -> Any:
        days = request.args.get("days", "7")
        days_n = int(days) if days.isdigit() and 0 < int(days) <= 92 else 7
        site = request.args.get("site") or None
        state = request.args.get("state") if request.args.get("state") in STATES else None
        flt = RequestFilter(since=time.time() - days_n * 86400, site=site, state=state)
        return render_template(
            "admin/callbacks.html",
            items=recent_requests(engine, flt),
            days=days_n,
            site=site,
            state=state,
            sites=site_keys(engine),
            states=STATES,
        )
