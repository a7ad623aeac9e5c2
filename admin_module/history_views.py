"""The panel's call-history import: `/admin/history` queues an import, the daemon's runner does it,
`/admin/history/<id>.json` reports its progress (polled by `static/history.js`)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, flash, g, jsonify, redirect, render_template, request, url_for
from sqlalchemy import Engine

from admin_module import auth
from bridge.history import jobs
from bridge.history.periods import PeriodError, check_period, parse_day, zone
from bridge.pbx.port import PbxClientForSettings
from bridge.settings_store import SettingsStore

Translate = Callable[..., str]


def job_view(job: jobs.Job, t: Translate) -> dict[str, Any]:
    """A job for the page and the JSON: the stored fields plus the state in the user's language."""
    return {**job.as_json(), "state_label": t(f"history_state_{job.state}")}


def register_history_routes(
    bp: Blueprint,
    *,
    engine: Engine,
    settings_store: SettingsStore,
    mango_client_factory: PbxClientForSettings,
    t: Translate,
) -> None:
    """Add the history-import page, its form and its progress JSON to the admin blueprint."""

    def page(error: str | None = None, status: int = 200, values: dict[str, str] | None = None) -> Any:
        tz_name = settings_store.panel().timezone
        try:
            today = datetime.now(zone(tz_name)).date()
        except PeriodError:
            today = datetime.now(ZoneInfo("UTC")).date()
        defaults = {"date_from": (today - timedelta(days=7)).isoformat(), "date_to": today.isoformat()}
        body = render_template(
            "admin/history.html",
            jobs=[job_view(job, t) for job in jobs.recent(engine)],
            values=values or defaults,
            timezone=tz_name,
            today=today.isoformat(),
            error=error,
        )
        return body, status

    def period(values: dict[str, str]) -> tuple[date, date, str]:
        tz_name = settings_store.panel().timezone
        first = parse_day(values["date_from"], "date_from")
        last = parse_day(values["date_to"], "date_to")
        check_period(first, last, zone(tz_name))
        return first, last, tz_name

    def mango_ready() -> str | None:
        """Why Mango cannot be asked now (not set up), or None."""
        try:
            mango_client_factory(settings_store.effective()).close()
        except ValueError:
            return t("history_not_configured")
        return None

    @bp.get("/history")
    @auth.requires("settings")
    def history_page() -> Any:
        return page()

    @bp.post("/history")
    @auth.requires("settings")
    def history_start() -> Any:
        values = {name: (request.form.get(name) or "").strip() for name in ("date_from", "date_to")}
        try:
            first, last, tz_name = period(values)
        except PeriodError as exc:
            return page(t(f"history_err_{exc.kind}", **exc.values), 400, values)
        problem = mango_ready()
        if problem is not None:
            return page(problem, 409, values)
        try:
            stale_after = settings_store.effective().history.stale_seconds
            job = jobs.queue(engine, first, last, tz_name, g.admin_user.username, stale_after=stale_after)
        except jobs.JobConflict as exc:
            other = exc.job
            assert other is not None
            message = t("history_duplicate", id=other.id, state=t(f"history_state_{other.state}"))
            return page(message, 409, values)
        waiting = any(other.running for other in jobs.recent(engine) if other.id != job.id)
        flash(t("history_queued_behind" if waiting else "history_queued", id=job.id), "ok")
        return redirect(url_for("admin.history_page"))

    @bp.get("/history/<int:job_id>.json")
    @auth.requires("settings")
    def history_job(job_id: int) -> Response:
        job = jobs.get(engine, job_id)
        if job is None:
            response = jsonify({"error": t("history_no_job", id=job_id)})
            response.status_code = 404
            return response
        return jsonify(job_view(job, t))
