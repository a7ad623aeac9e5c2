"""Live call popups on every panel page: the hub session for the logged-in user, and the shared client.

The popups are the operator page's client (`bridge/operator/static/live.js`), served here too so the panel
works without the operator page. A user with an extension sees their own calls; an administrator without
one sees every call (supervisor). Roles without the "popups" permission get no live session.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, g, jsonify, send_from_directory
from sqlalchemy import Engine

from admin_module import sessions
from admin_module.directory_users import check_password
from admin_module.login_limiter import LoginLimiter, LoginLimits, TooManyAttempts
from admin_module.roles import ADMIN, can, can_dial
from bridge.config import Settings
from bridge.config.model import LdapSettings
from bridge.ldap import LdapError
from bridge.memo import once
from bridge.operator import blueprint as operator_blueprint
from bridge.operator.blueprint import LOGIN_SECONDS, SESSION_PREFIX, LoginRefused
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
        active: sessions.ActiveSession = g.admin_session
        return jsonify(browser_session(settings, get_signer(), identity, not_after=active.hub_token_until()))

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
            "dial": can_dial(user.role, user.extension),
            "dialed": t("live_dialed"),
        }

    return live_config


class OperatorPasswordLogins:
    """Panel users log in to the operator page with their panel password (same limits as the panel).

    The login is a server-side session like the panel's (`sessions.py`): the operator page's cookie holds
    `SESSION_PREFIX` + its token, checked in the store on every request, so logging out (here or in the
    panel), a new password or a disabled user ends it. The identity is the user's extension, or every call
    for an administrator without one, read afresh on every request.
    """

    def __init__(
        self, engine: Engine, limits: LoginLimits | None = None, ldap: LdapSettings | None = None
    ) -> None:
        self._engine = engine
        self._limiter = LoginLimiter(engine, limits)
        self._ldap = ldap or LdapSettings()

    def login(self, username: str, password: str, address: str | None) -> tuple[Identity, str]:
        """(identity, cookie value); raises `LoginRefused` with the reason."""
        username = username.strip()
        try:
            user = self._limiter.attempt(
                username, address, lambda: check_password(self._engine, self._ldap, username, password)
            )
        except TooManyAttempts as exc:
            raise LoginRefused(f"Too many failed attempts. Try again in {exc.minutes} min.") from None
        except LdapError:
            raise LoginRefused(
                "The company directory cannot be reached; try again later or use a local account."
            ) from None
        if user is None:
            raise LoginRefused("Wrong user name or password.")
        if identity_for(user.role, user.extension) is None:
            raise LoginRefused(
                "This user has no extension: ask the administrator to map one under Employees."
            )
        token = sessions.start(self._engine, user.id, sessions.OPERATOR, ttl=LOGIN_SECONDS)
        identity = self._identity(SESSION_PREFIX + token, hub=False)
        if identity is None:  # ended between the two statements: as if the password were wrong
            raise LoginRefused("Wrong user name or password.")
        return identity, SESSION_PREFIX + token

    def identity(self, cookie: str) -> Identity | None:
        """Who the session in `cookie` speaks for, expiring when a hub token issued for it must (a few
        minutes at most); None when the session has ended or the user lost the extension."""
        return self._identity(cookie, hub=True)

    def _identity(self, cookie: str, *, hub: bool) -> Identity | None:
        if not cookie.startswith(SESSION_PREFIX):
            return None
        active = sessions.resolve(self._engine, cookie[len(SESSION_PREFIX) :], sessions.OPERATOR)
        if active is None:
            return None
        found = identity_for(active.user.role, active.user.extension)
        until = active.hub_token_until() if hub else active.expires_at
        return None if found is None else replace(found, expires_at=until)

    def logout(self, cookie: str) -> None:
        """End every session of the cookie's user (the panel's too), like the panel's logout."""
        if not cookie.startswith(SESSION_PREFIX):
            return
        active = sessions.resolve(self._engine, cookie[len(SESSION_PREFIX) :], sessions.OPERATOR)
        if active is not None:
            sessions.end_all(self._engine, active.user.id)


def password_login(engine: Engine, settings: Settings | None = None) -> OperatorPasswordLogins:
    """The operator page's password logins, with the `login.*` limits of `settings` (defaults without)."""
    if settings is None:
        return OperatorPasswordLogins(engine)
    return OperatorPasswordLogins(engine, LoginLimits.from_settings(settings), settings.ldap)
