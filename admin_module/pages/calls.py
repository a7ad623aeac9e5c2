"""The call log: the list with its filters, its CSV export, and the recordings player's files
(`/admin/calls`, `/admin/calls.csv`, `/admin/recordings/<id>`)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, g, render_template, request, stream_with_context
from sqlalchemy import Engine, select

from admin_module import auth, calllog, recordings, scope
from admin_module.csv_export import csv_response, requested_separator
from admin_module.forms import CallbackForm
from admin_module.pages.context import PageContext, error_page
from bridge.api.calls_query import STATUSES
from bridge.store.engine import reader
from bridge.store.schema import recordings as rec_table


def register(bp: Blueprint, ctx: PageContext) -> None:
    """Add the call log, its CSV export and the recordings to the admin blueprint."""
    engine = ctx.engine

    @bp.get("/calls")
    @auth.requires("view_calls")
    def calls_page() -> Any:
        flt = visible_filter(calllog.LogFilter.from_args(request.args))
        cursor = request.args.get("cursor") or None
        try:
            result = calllog.page(engine, flt, ctx.tz(), cursor=cursor)
        except (ValueError, TypeError):
            result = calllog.page(engine, flt, ctx.tz(), cursor=None)
        entry_ids = [item["entry_id"] for item in result["items"]]
        recs = recordings_by_call(engine, entry_ids)
        return render_template(
            "admin/calls.html",
            items=result["items"],
            next_cursor=result["next_cursor"],
            flt=flt,
            args=flt.query_args(),
            recs=recs,
            names=ctx.employee_names(),
            statuses=STATUSES,
            directions=calllog.DIRECTIONS,
            callback_form=CallbackForm(formdata=None),
        )

    @bp.get("/calls.csv")
    @auth.requires("view_calls")
    def calls_csv() -> Any:
        flt = visible_filter(calllog.LogFilter.from_args(request.args))
        zone = ctx.tz()
        rows = calllog.iterate(engine, flt, zone)
        body = stream_with_context(calllog.to_csv(rows, zone, requested_separator()))
        return csv_response(body, "calls.csv")

    @bp.get("/recordings/<path:recording_id>")
    @auth.requires("recordings")
    def recording(recording_id: str) -> Any:
        if not ctx.store.panel().recordings:
            abort(403)
        call = recordings.recording_call(engine, recording_id)
        if call is None:
            abort(404)
        if not recordings.may_see_call(g.admin_user, call):
            abort(403)
        try:
            # Mango is asked only when the file is not cached yet; Range requests let the player seek.
            return recordings.serve(ctx.settings, engine, ctx.mango_client, recording_id)
        except recordings.RecordingUnavailable as exc:
            return error_page(502, ctx.t("recording_failed", reason=str(exc)))


def visible_filter(flt: calllog.LogFilter) -> calllog.LogFilter:
    """`flt` narrowed to the signed-in user's own calls unless their role sees every call."""
    user = g.admin_user
    visible = scope.for_request(user)
    if visible is None or (flt.employee and flt.employee in visible):
        return flt  # everyone's calls, or a member of the team leader's groups they picked
    return flt.with_employee(user.extension or min(visible, default="-none-"))


def recordings_by_call(engine: Engine, entry_ids: list[str]) -> dict[str, list[str]]:
    """The recording ids of each call in `entry_ids`."""
    if not entry_ids:
        return {}
    out: dict[str, list[str]] = {}
    with reader(engine).connect() as conn:
        for row in conn.execute(
            select(rec_table.c.entry_id, rec_table.c.recording_id).where(rec_table.c.entry_id.in_(entry_ids))
        ):
            out.setdefault(row.entry_id, []).append(row.recording_id)
    return out
