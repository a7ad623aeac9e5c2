"""Logged-in sessions kept in the store, for the panel and the operator page's password logins.

A cookie carries only a random token; the store keeps its SHA-256 with the user and the expiry. Every
request looks the token up, so deleting a user's rows (logout, a new password, a disabled user) ends every
session of theirs at once, on every worker process and instance, including copies of a stolen cookie.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import Engine, delete, insert, select

from admin_module.tables import admin_sessions, admin_users
from admin_module.users import PanelUser, end_sessions, user_from_row
from bridge.store.engine import reader

PANEL = "panel"
OPERATOR = "operator"
SESSION_SECONDS = 12 * 3600  # a working day
# Live-popup (hub) tokens handed to a session last at most this long: the hub closes the socket when one
# runs out and the page asks for another, which an ended session no longer gets.
HUB_TOKEN_SECONDS = 300.0
_TOKEN_BYTES = 32
_MAX_TOKEN = 128  # longer cookie values are not ours


@dataclass(frozen=True)
class ActiveSession:
    user: PanelUser
    kind: str
    expires_at: float

    def hub_token_until(self) -> float:
        """When a hub token issued now for this session must run out."""
        return min(self.expires_at, time.time() + HUB_TOKEN_SECONDS)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def start(engine: Engine, user_id: int, kind: str, *, ttl: float = SESSION_SECONDS) -> str:
    """A new session for `user_id`; returns the token for the cookie (never stored as such)."""
    token = secrets.token_urlsafe(_TOKEN_BYTES)
    now = time.time()
    with engine.begin() as conn:
        conn.execute(delete(admin_sessions).where(admin_sessions.c.expires_at <= now))
        conn.execute(
            insert(admin_sessions).values(
                id=_digest(token), user_id=user_id, kind=kind, created_at=now, expires_at=now + ttl
            )
        )
    return token


def resolve(engine: Engine, token: object, kind: str) -> ActiveSession | None:
    """The live session of kind `kind` for `token`: None when unknown, ended, expired or the user disabled."""
    if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN or not token.isascii():
        return None
    query = (
        select(admin_users, admin_sessions.c.expires_at)
        .join(admin_sessions, admin_sessions.c.user_id == admin_users.c.id)
        .where(
            admin_sessions.c.id == _digest(token),
            admin_sessions.c.kind == kind,
            admin_sessions.c.expires_at > time.time(),
            admin_users.c.disabled.is_(False),
        )
    )
    with reader(engine).connect() as conn:
        row = conn.execute(query).first()
    return None if row is None else ActiveSession(user_from_row(row), kind, row.expires_at)


def end_all(engine: Engine, user_id: int) -> int:
    """End every session of `user_id` (panel and operator page); returns how many there were."""
    with engine.begin() as conn:
        return end_sessions(conn, user_id)


def count(engine: Engine, user_id: int) -> int:
    """Live sessions of `user_id` (for the command line's user list)."""
    with reader(engine).connect() as conn:
        rows = conn.execute(
            select(admin_sessions.c.id).where(
                admin_sessions.c.user_id == user_id, admin_sessions.c.expires_at > time.time()
            )
        ).all()
    return len(rows)
