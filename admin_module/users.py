"""Panel users in the store; passwords hashed with argon2 (argon2-cffi)."""

from __future__ import annotations

import functools
import json
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from admin_module.roles import ROLES, normalize
from admin_module.tables import admin_sessions, admin_users
from bridge.store.engine import reader

_HASHER = PasswordHasher()
_USERNAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
LANGS = ("ru", "en")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # longer input is refused unchecked (argon2 hashes any length; this bounds the cost)


@functools.cache
def _dummy_hash() -> str:
    """Verifying against this when the user does not exist keeps the timing the same for both cases.
    Made on first use, not at import: every callbridge process imports this module."""
    return _HASHER.hash("not-a-real-password")


class UserError(ValueError):
    """A user cannot be created or changed; the message says why."""


@dataclass(frozen=True)
class PanelUser:
    id: int
    username: str
    role: str
    lang: str
    extension: str | None
    disabled: bool = False
    source: str = "local"
    role_source: str | None = None
    teams: tuple[str, ...] = ()


def user_from_row(row: Any) -> PanelUser:
    """A `PanelUser` from a row holding `admin_users`' columns."""
    return PanelUser(
        row.id,
        row.username,
        normalize(row.role),
        row.lang,
        row.extension,
        bool(row.disabled),
        source=getattr(row, "source", None) or "local",
        role_source=getattr(row, "role_source", None),
        teams=_teams(getattr(row, "teams", None)),
    )


def _teams(raw: str | None) -> tuple[str, ...]:
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def valid_username(username: object) -> bool:
    """Whether `username` can name a user at all (anything else is never looked up in the store)."""
    return isinstance(username, str) and bool(_USERNAME.fullmatch(username))


def _password_bytes(password: object) -> bytes | None:
    """The password as UTF-8, or None when it cannot be one (not text, too long, lone surrogates)."""
    if not isinstance(password, str) or len(password) > MAX_PASSWORD:
        return None
    try:
        return password.encode("utf-8")
    except UnicodeEncodeError:
        return None


def _check_new_password(password: str | None) -> None:
    if len(password or "") < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    if _password_bytes(password) is None:
        raise UserError(f"the password may have at most {MAX_PASSWORD} characters of valid text")


def create_user(
    engine: Engine, username: str, password: str, role: str, *, lang: str = "ru", extension: str | None = None
) -> PanelUser:
    if not valid_username(username):
        raise UserError("the user name may hold 1-64 letters, digits and . _ @ -")
    role = normalize(role)
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if lang not in LANGS:
        raise UserError(f"unknown language {lang!r}; expected one of {', '.join(LANGS)}")
    _check_new_password(password)
    now = time.time()
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(admin_users).values(
                    username=username,
                    password_hash=_HASHER.hash(password),
                    role=role,
                    lang=lang,
                    extension=extension or None,
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError:
        raise UserError(f"user {username!r} already exists") from None
    user = get_user_by_name(engine, username)
    assert user is not None
    return user


def get_user(engine: Engine, user_id: int) -> PanelUser | None:
    with reader(engine).connect() as conn:
        row = conn.execute(select(admin_users).where(admin_users.c.id == user_id)).first()
    return None if row is None else user_from_row(row)


def get_user_by_name(engine: Engine, username: str) -> PanelUser | None:
    with reader(engine).connect() as conn:
        row = conn.execute(select(admin_users).where(admin_users.c.username == username)).first()
    return None if row is None else user_from_row(row)


def list_users(engine: Engine) -> list[PanelUser]:
    with reader(engine).connect() as conn:
        return [
            user_from_row(row) for row in conn.execute(select(admin_users).order_by(admin_users.c.username))
        ]


def authenticate(engine: Engine, username: str, password: str) -> PanelUser | None:
    """The user when the password matches and the user is enabled; None otherwise.

    Costs one argon2 verification whether the user exists or not. Input that cannot be a user name or a
    password (NUL, lone surrogates, over-long) is never sent to the store and simply does not match.
    """
    row = None
    if valid_username(username):
        with reader(engine).connect() as conn:
            row = conn.execute(select(admin_users).where(admin_users.c.username == username)).first()
    secret = _password_bytes(password)
    try:
        _HASHER.verify(row.password_hash if row is not None else _dummy_hash(), secret or b"\0")
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None or secret is None or row.disabled:
        return None
    if _HASHER.check_needs_rehash(row.password_hash):
        with engine.begin() as conn:
            conn.execute(
                update(admin_users)
                .where(admin_users.c.id == row.id)
                .values(password_hash=_HASHER.hash(secret), updated_at=time.time())
            )
    return user_from_row(row)


def end_sessions(conn: Connection, user_id: int) -> int:
    """Delete every session of `user_id` within `conn`'s transaction; returns how many there were."""
    return conn.execute(delete(admin_sessions).where(admin_sessions.c.user_id == user_id)).rowcount


def _require(conn: Connection, username: str) -> int:
    user_id = conn.execute(select(admin_users.c.id).where(admin_users.c.username == username)).scalar()
    if user_id is None:
        raise UserError(f"no user {username!r}")
    return int(user_id)


def set_password(engine: Engine, username: str, password: str) -> int:
    """A new password for `username`; ends every session of theirs. Returns how many were ended."""
    _check_new_password(password)
    return _change_user(engine, username, end_sessions_too=True, password_hash=_HASHER.hash(password))


def set_disabled(engine: Engine, username: str, disabled: bool) -> int:
    """Disable (ending every session) or enable `username`. Returns how many sessions were ended.

    The last enabled admin cannot be disabled: nobody could manage the panel any more."""
    if disabled:
        with engine.begin() as conn:
            _keep_an_admin(conn, _require(conn, username), "disable")
    return _change_user(engine, username, end_sessions_too=disabled, disabled=disabled)


def reset_password(engine: Engine, username: str) -> tuple[str, int]:
    """A new random password for `username` (returned once, never stored in clear) and the sessions ended."""
    password = secrets.token_urlsafe(12)
    return password, set_password(engine, username, password)


def delete_user(engine: Engine, username: str) -> int:
    """Delete `username` and their sessions; returns the sessions ended. Calls keep their employees' names
    (they are kept by extension, not by panel user). The last enabled admin cannot be deleted."""
    if not valid_username(username):
        raise UserError(f"no user {username!r}")
    with engine.begin() as conn:
        user_id = _require(conn, username)
        _keep_an_admin(conn, user_id, "delete")
        ended = end_sessions(conn, user_id)
        conn.execute(delete(admin_users).where(admin_users.c.id == user_id))
    return ended


def _keep_an_admin(conn: Connection, user_id: int, action: str) -> None:
    """`UserError` when `user_id` is the only enabled admin."""
    others = conn.execute(
        select(admin_users.c.id).where(
            admin_users.c.role == "admin", admin_users.c.disabled.is_(False), admin_users.c.id != user_id
        )
    ).first()
    role = conn.execute(select(admin_users.c.role).where(admin_users.c.id == user_id)).scalar()
    if role == "admin" and others is None:
        raise UserError(f"cannot {action} the last enabled admin: create or enable another admin first")


def _change_user(engine: Engine, username: str, *, end_sessions_too: bool, **values: Any) -> int:
    """Update one user's row; with `end_sessions_too`, end their sessions in the same transaction."""
    if not valid_username(username):
        raise UserError(f"no user {username!r}")
    with engine.begin() as conn:
        user_id = _require(conn, username)
        conn.execute(
            update(admin_users).where(admin_users.c.id == user_id).values(**values, updated_at=time.time())
        )
        return end_sessions(conn, user_id) if end_sessions_too else 0


def set_teams(engine: Engine, username: str, teams: list[str]) -> int:
    """The Mango groups a team leader leads (ids, short numbers or names)."""
    cleaned = [t.strip() for t in teams if t.strip()]
    return _change_user(engine, username, end_sessions_too=False, teams=json.dumps(cleaned))


def set_lang(engine: Engine, user_id: int, lang: str) -> None:
    if lang not in LANGS:
        raise UserError(f"unknown language {lang!r}")
    with engine.begin() as conn:
        conn.execute(
            update(admin_users).where(admin_users.c.id == user_id).values(lang=lang, updated_at=time.time())
        )


def set_extension(engine: Engine, extension: str, user_id: int | None) -> None:
    """Map `extension` to one panel user (or to nobody): any other user mapped to it is unmapped."""
    now = time.time()
    with engine.begin() as conn:
        conn.execute(
            update(admin_users)
            .where(admin_users.c.extension == extension)
            .values(extension=None, updated_at=now)
        )
        if user_id is not None:
            conn.execute(
                update(admin_users)
                .where(admin_users.c.id == user_id)
                .values(extension=extension, updated_at=now)
            )
