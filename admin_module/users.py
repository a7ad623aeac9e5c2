"""Panel users in the store; passwords hashed with argon2 (argon2-cffi)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from admin_module.roles import ROLES
from admin_module.tables import admin_users
from bridge.store.engine import reader

_HASHER = PasswordHasher()
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
LANGS = ("ru", "en")
MIN_PASSWORD = 8
# Verifying against this when the user does not exist keeps the timing the same for both cases.
_DUMMY_HASH = _HASHER.hash("not-a-real-password")


class UserError(ValueError):
    """A user cannot be created or changed; the message says why."""


@dataclass(frozen=True)
class PanelUser:
    id: int
    username: str
    role: str
    lang: str
    extension: str | None


def _user(row: object) -> PanelUser:
    return PanelUser(row.id, row.username, row.role, row.lang, row.extension)  # type: ignore[attr-defined]


def create_user(
    engine: Engine, username: str, password: str, role: str, *, lang: str = "ru", extension: str | None = None
) -> PanelUser:
    if not _USERNAME.match(username or ""):
        raise UserError("the user name may hold 1-64 letters, digits and . _ @ -")
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; expected one of {', '.join(ROLES)}")
    if lang not in LANGS:
        raise UserError(f"unknown language {lang!r}; expected one of {', '.join(LANGS)}")
    if len(password or "") < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
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
    return None if row is None else _user(row)


def get_user_by_name(engine: Engine, username: str) -> PanelUser | None:
    with reader(engine).connect() as conn:
        row = conn.execute(select(admin_users).where(admin_users.c.username == username)).first()
    return None if row is None else _user(row)


def list_users(engine: Engine) -> list[PanelUser]:
    with reader(engine).connect() as conn:
        return [_user(row) for row in conn.execute(select(admin_users).order_by(admin_users.c.username))]


def authenticate(engine: Engine, username: str, password: str) -> PanelUser | None:
    """The user when the password matches; None otherwise (same cost whether the user exists or not)."""
    with reader(engine).connect() as conn:
        row = conn.execute(select(admin_users).where(admin_users.c.username == username)).first()
    try:
        _HASHER.verify(row.password_hash if row is not None else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if row is None:
        return None
    if _HASHER.check_needs_rehash(row.password_hash):
        with engine.begin() as conn:
            conn.execute(
                update(admin_users)
                .where(admin_users.c.id == row.id)
                .values(password_hash=_HASHER.hash(password), updated_at=time.time())
            )
    return _user(row)


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
