"""Live call popups on every panel page: the hub session for the logged-in user, and the shared client.

The popups are the operator page's client (`bridge/operator/static/live.js`), served here too so the panel
works without the operator page. A user with an extension sees their own calls; an administrator without
one sees every call (supervisor). Roles without the "popups" permission get no live session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, send_from_directory, session
from sqlalchemy import Engine

from admin_module.roles import ADMIN, can
from bridge.config import Settings
from bridge.memo import once
from bridge.operator import blueprint as operator_blueprint
from bridge.operator.blueprint import LoginRefused
from bridge.realtime.auth import EMPLOYEE, SUPERVISOR, Identity, TokenSigner, signer_for, valid_extension
from bridge.realtime.session import browser_session

LIVE_ASSETS = (
    Path(operator_blueprint.__file__).resolve().parent / "static"
)  # live.js lives with the operator page
ASSET_NAMES = frozenset({"live.js", "live.css"})

# The popup texts live.js shows, by its label name -> our translation key.
LABEL_KEYS: dict[str, str] = {
    "incoming": "live_incoming",
    "outgoing": "live_outgoing",
    "at": "live_at",
    "hidden": "live_hidden",
    "manager": "live_manager",
    "deals": "live_deals",
    "orders": "live_orders",
    "looking": "live_looking",
    "unknown": "live_unknown",
    "onPhone": "live_on_phone",
    "answeredBy": "live_answered_by",
    "transferred": "live_transferred",
    "missed": "live_missed",
    "ended": "live_ended",
    "callback": "live_callback",
    "on": "live_on",
    "call": "live_call",
    "live": "live_live",
    "reconnecting": "live_reconnecting",
    "close": "live_close",
}


def identity_for(role: str, extension: str | None) -> Identity | None:
    """Whose calls pop up for a panel user: their extension, all calls for an admin without one, or none."""
    if not can(role, "popups"):
        return None
    if extension and valid_extension(extension):
        return Identity(EMPLOYEE, extension)
    if role == ADMIN:
        return Identity(SUPERVISOR)
    return None


def register_live_routes(
    bp: Blueprint,
    *,
    settings: Settings,
    engine: Engine,
    t: Callable[..., str],
    signer: Callable[[], TokenSigner] | None = None,
) -> Callable[[], dict[str, Any] | None]:
    """Add `/admin/live/session` and the client's assets; returns the template helper for `base.html`."""
    get_signer = signer or once(lambda: signer_for(settings, engine))

    @bp.get("/live/session")
    def live_session() -> Any:
        user = g.get("admin_user")
        if user is None:
            return jsonify({"error": "not logged in"}), 401
        identity = identity_for(user.role, user.extension)
        if identity is None:
            return jsonify({"error": "no live popups for this user (no extension)"}), 403
        logged_in_at = session.get("admin_at")
        started = logged_in_at if isinstance(logged_in_at, int | float) else time.time()
        not_after = started + current_app.permanent_session_lifetime.total_seconds()
        return jsonify(browser_session(settings, get_signer(), identity, not_after=not_after))

    @bp.get("/live/<name>")
    def live_asset(name: str) -> Response:
        if name not in ASSET_NAMES:
            return Response("not found", status=404, mimetype="text/plain")
        return send_from_directory(LIVE_ASSETS, name, max_age=300)

    def live_config() -> dict[str, Any] | None:
        """What base.html embeds for the popups, or None when this user gets none."""
        user = g.get("admin_user")
        if user is None or identity_for(user.role, user.extension) is None:
            return None
        return {
            "labels": {name: t(key) for name, key in LABEL_KEYS.items()},
            "dial": can(user.role, "callback"),
            "dialed": t("live_dialed"),
        }

    return live_config


def password_login(engine: Engine) -> Callable[[str, str, str | None], Identity]:
    """Log panel users in to the operator page with their panel password (same rate limit as the panel).

    Returns `login(username, password, address) -> Identity` (their extension, or every call for an
    administrator without one); raises `LoginRefused` with the reason.
    """
    from admin_module.auth import LoginLimiter
    from admin_module.users import authenticate

    limiter = LoginLimiter(engine)

    def login(username: str, password: str, address: str | None) -> Identity:
        username = username.strip()
        wait = limiter.retry_after(username, address)
        if wait > 0:
            raise LoginRefused(f"Too many failed attempts. Try again in {max(1, round(wait / 60))} min.")
        user = authenticate(engine, username, password)
        if user is None:
            limiter.failed(username, address)
            raise LoginRefused("Wrong user name or password.")
        limiter.succeeded(username)
        identity = identity_for(user.role, user.extension)
        if identity is None:
            raise LoginRefused(
                "This user has no extension: ask the administrator to map one under Employees."
            )
        return identity

    return login
