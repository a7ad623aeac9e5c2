"""Panel sessions, the login rate limit, and the decorators that guard every panel view.

The Flask cookie holds only a session token; the session itself lives in the store (`sessions.py`), so
logging out, a new password or a disabled user ends it everywhere.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import abort, g, redirect, request, session, url_for
from sqlalchemy import Engine

from admin_module import sessions
from admin_module.login_limiter import LoginLimiter, LoginLimits, TooManyAttempts
from admin_module.roles import can
from admin_module.users import PanelUser

__all__ = ["LoginLimiter", "LoginLimits", "TooManyAttempts"]

F = TypeVar("F", bound=Callable[..., Any])

_COOKIE_KEY = "admin_sid"


def session_secret(root_secret: str) -> str:
    """The Flask session key, derived from the shared security secret (one key per purpose)."""
    return hmac.new(root_secret.encode(), b"callbridge-admin-session-v1", hashlib.sha256).hexdigest()


def log_in(engine: Engine, user: PanelUser, ttl: float) -> None:
    """A new server-side session for `user`; the cookie carries its token."""
    session.clear()
    session[_COOKIE_KEY] = sessions.start(engine, user.id, sessions.PANEL, ttl=ttl)
    session.permanent = True


def log_out(engine: Engine) -> None:
    """End every session of the logged-in user (every browser, the operator page too), then this cookie."""
    user = g.get("admin_user")
    if user is not None:
        sessions.end_all(engine, user.id)
    session.clear()


def load_session(engine: Engine) -> sessions.ActiveSession | None:
    """This request's live panel session, or None (and the ended session's token leaves the cookie; its
    CSRF token stays, so a login form opened meanwhile still works)."""
    token = session.get(_COOKIE_KEY)
    if token is None:
        return None
    active = sessions.resolve(engine, token, sessions.PANEL)
    if active is None:
        session.pop(_COOKIE_KEY, None)
    return active


def login_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("admin_user") is None:
            return redirect(
                url_for("admin.login", next=request.full_path if request.method == "GET" else None)
            )
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def requires(permission: str) -> Callable[[F], F]:
    """Log-in required, then 403 unless the user's role has `permission`."""

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = g.get("admin_user")
            if user is None:
                return redirect(
                    url_for("admin.login", next=request.full_path if request.method == "GET" else None)
                )
            if not can(user.role, permission):
                abort(403)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
