"""Sessions, the login rate limit, and the decorators that guard every panel view."""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import abort, g, redirect, request, session, url_for
from sqlalchemy import Engine, and_, delete, func, insert, select

from admin_module.roles import can
from admin_module.tables import admin_login_failures
from admin_module.users import PanelUser, get_user
from bridge.store.engine import reader

F = TypeVar("F", bound=Callable[..., Any])

MAX_FAILURES = 5  # per user name and per client address ...
WINDOW_SECONDS = 300.0  # ... within this window


def session_secret(root_secret: str) -> str:
    """The Flask session key, derived from the shared security secret (one key per purpose)."""
    return hmac.new(root_secret.encode(), b"callbridge-admin-session-v1", hashlib.sha256).hexdigest()


class LoginLimiter:
    """Failed logins counted in the store, so every worker process and instance sees the same count."""

    def __init__(self, engine: Engine, *, limit: int = MAX_FAILURES, window: float = WINDOW_SECONDS) -> None:
        self._engine = engine
        self.limit = limit
        self.window = window

    @staticmethod
    def _keys(username: str, address: str | None) -> list[str]:
        return [f"user:{username.lower()[:64]}", f"ip:{address or '-'}"]

    def retry_after(self, username: str, address: str | None, now: float | None = None) -> float:
        """Seconds until a login may be tried again; 0 when it may be tried now."""
        at = time.time() if now is None else now
        keys = self._keys(username, address)
        with reader(self._engine).connect() as conn:
            rows = conn.execute(
                select(admin_login_failures.c.key, func.count(), func.min(admin_login_failures.c.at))
                .where(
                    and_(admin_login_failures.c.key.in_(keys), admin_login_failures.c.at > at - self.window)
                )
                .group_by(admin_login_failures.c.key)
            ).all()
        wait = 0.0
        for _key, count, oldest in rows:
            if count >= self.limit:
                wait = max(wait, oldest + self.window - at)
        return wait

    def failed(self, username: str, address: str | None, now: float | None = None) -> None:
        at = time.time() if now is None else now
        with self._engine.begin() as conn:
            conn.execute(admin_login_failures.delete().where(admin_login_failures.c.at < at - self.window))
            conn.execute(
                insert(admin_login_failures), [{"key": k, "at": at} for k in self._keys(username, address)]
            )

    def succeeded(self, username: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                delete(admin_login_failures).where(
                    admin_login_failures.c.key == f"user:{username.lower()[:64]}"
                )
            )


def log_in(user: PanelUser) -> None:
    session.clear()
    session["admin_uid"] = user.id
    session["admin_at"] = time.time()
    session.permanent = True


def log_out() -> None:
    session.clear()


def load_user(engine: Engine) -> PanelUser | None:
    uid = session.get("admin_uid")
    if not isinstance(uid, int):
        return None
    return get_user(engine, uid)


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
