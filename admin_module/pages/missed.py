"""Missed calls and their follow-ups, and the click-to-call action the panel's Call buttons post
(`/admin/missed`, `/admin/callback`)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, flash, g, jsonify, redirect, render_template, request, url_for

from admin_module import auth, calllog, recordings, scope
from admin_module.forms import CallbackForm
from admin_module.missed import follow_ups
from admin_module.pages.context import PageContext, log
from bridge.pbx.port import PbxError


def register(bp: Blueprint, ctx: PageContext) -> None:
    """Add the missed calls page and the callback action to the admin blueprint."""
    t = ctx.t

    @bp.get("/missed")
    @auth.requires("view_calls")
    def missed_page() -> Any:
        days = request.args.get("days", "7")
        days_n = int(days) if days.isdigit() and 0 < int(days) <= 92 else 7
        since = time.time() - days_n * 86400
        all_calls = calllog.load_calls(ctx.engine, since)
        ups = follow_ups(all_calls)
        user = g.admin_user
        missed_calls = [c for c in all_calls if c.get("missed")]
        if scope.for_request(user) is not None:
            missed_calls = [c for c in missed_calls if recordings.may_see_call(user, c)]
        return render_template(
            "admin/missed.html",
            items=missed_calls,
            ups=ups,
            days=days_n,
            names=ctx.employee_names(),
            callback_form=CallbackForm(formdata=None),
        )

    @bp.post("/callback")
    @auth.requires("callback")
    def callback() -> Any:
        form = CallbackForm()
        back = url_for("admin.missed_page") if form.entry_id.data else url_for("admin.calls_page")
        user = g.admin_user
        extension = user.extension
        if user.role == "admin" and form.extension.data:
            extension = form.extension.data.strip()
        wants_json = request.accept_mimetypes.best == "application/json"  # the live popup's Call button
        if not form.validate() or not extension:
            problem = t("no_extension") if not extension else t("callback_failed", reason="number")
            if wants_json:
                return jsonify({"error": problem}), 422
            flash(problem, "error")
            return redirect(back)
        number = form.number.data.strip()
        try:
            command_id = ctx.originate(extension, number)
        except (PbxError, ValueError) as exc:
            if wants_json:
                return jsonify({"error": t("callback_failed", reason=str(exc))}), 422
            flash(t("callback_failed", reason=str(exc)), "error")
            return redirect(back)
        log.info("admin.callback by=%s extension=%s command_id=%s", user.username, extension, command_id)
        sent = t("callback_sent", extension=extension, number=number)
        if wants_json:
            return jsonify({"command_id": command_id, "message": sent})
        flash(sent, "ok")
        return redirect(back)
