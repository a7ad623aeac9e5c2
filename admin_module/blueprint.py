"""The admin panel's Flask blueprint at `/admin`.

`make_admin_blueprint(settings, engine, originate=..., mango_client_factory=...)`: `originate(extension,
number) -> command_id` places click-to-call; `mango_client_factory(settings) -> PbxCommands` builds a PBX
client from the *effective* settings (saved panel values applied), so saved settings apply without a restart.

This module builds the blueprint, its request hooks, error handlers, filters and template context; each page
group registers its routes from its own module (`admin_module/pages/`, and the `*_views.py` modules).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, Flask, Response, g, request
from flask_wtf.csrf import CSRFError, generate_csrf, validate_csrf
from sqlalchemy import Engine
from wtforms import ValidationError

from admin_module import auth, stats
from admin_module.call_detail import register_call_detail_routes
from admin_module.callbacks import register_callback_routes
from admin_module.i18n import translate
from admin_module.language import panel_language
from admin_module.live import register_live_routes
from admin_module.pages import PAGES, ClientFactory, Originate, PageContext, error_page
from admin_module.roles import can, can_dial
from admin_module.scope import TeamRoster
from bridge.config import Settings
from bridge.connector_api import Connector
from bridge.settings_store import SettingsStore

__all__ = ["ClientFactory", "Originate", "make_admin_blueprint"]


def _tz(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def make_admin_blueprint(
    settings: Settings,
    engine: Engine,
    *,
    originate: Originate | None = None,
    mango_client_factory: ClientFactory,
    secret_key: str | None = None,
    secure_cookies: bool | None = None,
    store: SettingsStore | None = None,
    connectors_health: Callable[[], dict[str, Any]] | None = None,
    connectors: Callable[[], Mapping[str, Connector]] | None = None,
) -> Blueprint:
    """The panel at `/admin`.

    `originate`: click-to-call; None builds one on the effective settings. `mango_client_factory(settings)`:
    a Mango client (`bridge.connectors_runtime.mango_client`). `secret_key`: the shared security secret;
    None resolves it like the realtime tokens do (`bridge.realtime.auth.resolve_secret`). `secure_cookies`:
    None means True when `http.public_url` is https (then also SameSite=None, for a shop's iframe).
    `store`: the settings store shared with the rest of the app (so saved values apply everywhere).
    `connectors()`: the running connectors, for each CRM's extension -> user map on the employees page.
    """
    bp = Blueprint(
        "admin", __name__, url_prefix="/admin", template_folder="templates", static_folder="static"
    )
    settings_store = store or SettingsStore(engine, settings)
    if originate is None:
        # Click-to-call with the settings in force now (saved panel values apply without a restart).
        from bridge.commands.originate import OriginateService

        originate = OriginateService(
            engine,
            lambda: mango_client_factory(settings_store.effective()),
            region=settings.phones.default_region,
            line_number=settings.mango.line_number or None,
        )
    secure = settings.http.public_url.startswith("https://") if secure_cookies is None else secure_cookies

    @bp.record_once
    def _configure(state: Any) -> None:
        app: Flask = state.app
        if not app.secret_key:
            root = secret_key
            if root is None:
                from bridge.realtime.auth import resolve_secret

                root = resolve_secret(settings, engine)
            app.secret_key = auth.session_secret(root)
        app.config.setdefault("WTF_CSRF_TIME_LIMIT", 8 * 3600)
        app.config["WTF_CSRF_SSL_STRICT"] = False  # behind proxies/iframes the Referer is unreliable
        app.config["SESSION_COOKIE_HTTPONLY"] = True
        app.config["SESSION_COOKIE_SECURE"] = secure
        app.config["SESSION_COOKIE_SAMESITE"] = "None" if secure else "Lax"
        app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=12)
        app.jinja_env.autoescape = True

    limiter = auth.LoginLimiter(engine, auth.LoginLimits.from_settings(settings))

    def t(key: str, **values: object) -> str:
        return translate(panel_language(), key, **values)

    def tz() -> ZoneInfo:
        return _tz(settings_store.panel().timezone)

    teams = TeamRoster(lambda: mango_client_factory(settings_store.effective()))

    @bp.before_request
    def _before() -> Any:
        active = auth.load_session(engine)  # checked in the store on every request
        g.admin_user = active.user if active is not None else None
        g.team_roster = teams
        g.admin_session = active
        if request.method == "POST":
            try:
                validate_csrf(request.form.get("csrf_token"))
            except ValidationError:
                return error_page(400, t("csrf_failed"))
        return None

    @bp.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("Cache-Control", "no-store")
        # Framing: this origin, plus the shop admin origins saved in the settings (clickjacking guard).
        ancestors = " ".join(["'self'", *settings_store.panel().frame_ancestors.split()])
        response.headers.setdefault("Content-Security-Policy", f"frame-ancestors {ancestors}")
        return response

    @bp.errorhandler(403)
    def _forbidden(_exc: Exception) -> Response:
        return error_page(403, t("forbidden"))

    @bp.errorhandler(CSRFError)
    def _csrf(_exc: Exception) -> Response:
        return error_page(400, t("csrf_failed"))

    @bp.app_template_filter("admin_time")
    def _time_filter(value: float | None) -> str:
        if value is None:
            return "—"
        return datetime.fromtimestamp(value, tz()).strftime("%Y-%m-%d %H:%M:%S")

    @bp.app_template_filter("admin_seconds")
    def _seconds_filter(value: float | None) -> str:
        return stats.fmt_seconds(value)

    live_config = register_live_routes(bp, settings=settings, engine=engine, t=t)
    register_callback_routes(bp, engine=engine)
    register_call_detail_routes(bp, engine=engine, settings=settings, connectors=connectors)

    @bp.context_processor
    def _context() -> dict[str, Any]:
        user = g.get("admin_user")
        return {
            "t": t,
            "user": user,
            "can": lambda permission: user is not None and can(user.role, permission),
            "can_dial": user is not None and can_dial(user.role, user.extension),
            "csrf_token": generate_csrf,
            "panel": settings_store.panel(),
            "live_config": live_config,
        }

    ctx = PageContext(
        settings=settings,
        engine=engine,
        store=settings_store,
        t=t,
        tz=tz,
        originate=originate,
        mango_client_factory=mango_client_factory,
        limiter=limiter,
        connectors=connectors,
        connectors_health=connectors_health,
    )
    for page in PAGES:
        page.register(bp, ctx)

    from admin_module.widget_views import register_widget_routes

    register_widget_routes(bp, engine=engine, settings=settings, t=t)
    from admin_module.connector_views import register_connector_routes

    register_connector_routes(bp, engine=engine, settings=settings, settings_store=settings_store, t=t)
    from admin_module.history_views import register_history_routes

    register_history_routes(
        bp, engine=engine, settings_store=settings_store, mango_client_factory=mango_client_factory, t=t
    )
    from admin_module.quarantine_views import register_quarantine_routes

    register_quarantine_routes(bp, engine=engine, t=t)
    return bp
