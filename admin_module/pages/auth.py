"""Access: login, logout, the language switch and the index (`/admin/login`, `/logout`, `/lang`, `/`)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, url_for

from admin_module import auth, directory_users
from admin_module.forms import LangForm, LoginForm
from admin_module.pages.context import PageContext, log
from admin_module.roles import can
from admin_module.users import PanelUser, set_lang
from bridge.ldap import LdapError


def register(bp: Blueprint, ctx: PageContext) -> None:
    """Add the access pages to the admin blueprint."""
    engine = ctx.engine
    t = ctx.t

    def _check(username: str, password: str) -> PanelUser | None:
        return directory_users.check_password(engine, ctx.store.effective().ldap, username, password)

    @bp.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        form = LoginForm()
        error = None
        status = 200
        if request.method == "POST":
            username = (form.username.data or "").strip()
            password = form.password.data or ""
            try:
                user = None
                if form.validate_on_submit():
                    check = lambda: _check(username, password)  # noqa: E731
                    user = ctx.limiter.attempt(username, request.remote_addr, check)
            except auth.TooManyAttempts as exc:
                error, status = t("too_many", minutes=exc.minutes), 429
            except LdapError as exc:
                log.warning("admin.login directory unavailable: %s", exc)
                error, status = t("directory_unavailable"), 503
            else:
                if user is not None:
                    auth.log_in(engine, user, current_app.permanent_session_lifetime.total_seconds())
                    target = request.args.get("next") or ""
                    if not target.startswith("/admin") or target.startswith("//"):
                        target = url_for("admin.index")
                    return redirect(target)
                error, status = t("bad_login"), 401
        return render_template("admin/login.html", form=form, error=error), status

    @bp.post("/logout")
    def logout() -> Any:
        auth.log_out(engine)  # every session of this user, in every browser
        return redirect(url_for("admin.login"))

    @bp.post("/lang")
    @auth.login_required
    def lang() -> Any:
        form = LangForm()
        if form.validate_on_submit():
            set_lang(engine, g.admin_user.id, form.lang.data)
        referrer = request.referrer or ""
        same_panel = referrer.startswith(request.host_url.rstrip("/") + "/admin")
        return redirect(referrer if same_panel else url_for("admin.index"))

    @bp.get("/")
    @auth.login_required
    def index() -> Any:
        user = g.admin_user
        if can(user.role, "view_calls"):
            return redirect(url_for("admin.calls_page"))
        if can(user.role, "stats"):
            return redirect(url_for("admin.stats_page"))
        abort(403)
