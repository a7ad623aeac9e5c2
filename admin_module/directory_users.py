"""Panel users from the directory (`ldap.login`): sign-in by binding as the user, the role from the groups
in `[ldap.roles]` (re-checked at every sign-in and sync), and the extension from the synced employee.

A directory user's row in `admin_users` has `source = ldap` and no usable password, so the local check
never lets it in. A user in no mapped group is refused; one who lost every mapped group is disabled and
their sessions end (`role_source` is then empty, so a later sign-in with a mapped group enables them
again, while a user an admin disabled stays disabled).
"""

from __future__ import annotations

import json
import logging
import time

from sqlalchemy import Engine, insert, select, update

from admin_module.tables import admin_users
from admin_module.users import PanelUser, authenticate, end_sessions, user_from_row, valid_username
from bridge.config.model import LdapSettings
from bridge.ldap import DirectoryAccount, DirectoryClient, LdapError
from bridge.store.schema import employees

log = logging.getLogger("callbridge.admin")

__all__ = ["LdapError", "check_password", "recheck", "sign_in"]

_NO_PASSWORD = "!directory"  # not an argon2 hash: the local check never matches it
_LOST_GROUPS = ""  # role_source of a user disabled because no mapped group lists them any more


def _extension_of(conn: object, dn: str) -> str | None:
    row = conn.execute(  # type: ignore[attr-defined]
        select(employees.c.extension).where(employees.c.directory_dn == dn, employees.c.active.is_(True))
    ).first()
    return row.extension if row is not None else None


def _source_group(groups: tuple[str, ...], role: str | None, roles: dict[str, str]) -> str:
    """The mapped group that gave `role` (the empty marker when none did)."""
    return next((g for g in groups if roles.get(g) == role), _LOST_GROUPS)


def _store(
    engine: Engine, username: str, account: DirectoryAccount, roles: dict[str, str]
) -> PanelUser | None:
    """Create or refresh the panel row of a directory user who signed in; None when they may not."""
    now = time.time()
    group = _source_group(account.groups, account.role, roles)
    with engine.begin() as conn:
        row = conn.execute(select(admin_users).where(admin_users.c.username == username)).first()
        extension = _extension_of(conn, account.dn)
        if row is None:
            if account.role is None:
                return None
            conn.execute(
                insert(admin_users).values(
                    username=username,
                    password_hash=_NO_PASSWORD,
                    role=account.role,
                    lang="ru",
                    extension=extension,
                    created_at=now,
                    updated_at=now,
                    source="ldap",
                    directory_dn=account.dn,
                    role_source=group,
                )
            )
        else:
            if row.source != "ldap":
                return None  # a local user of that name: never taken over by the directory
            if row.disabled and row.role_source != _LOST_GROUPS:
                return None  # disabled by an admin
            if account.role is None:
                conn.execute(
                    update(admin_users)
                    .where(admin_users.c.id == row.id)
                    .values(disabled=True, role_source=_LOST_GROUPS, updated_at=now)
                )
                end_sessions(conn, row.id)
                return None
            values: dict[str, object] = {
                "role": account.role,
                "role_source": group,
                "directory_dn": account.dn,
                "disabled": False,
                "updated_at": now,
            }
            if extension:
                values["extension"] = extension
            conn.execute(update(admin_users).where(admin_users.c.id == row.id).values(**values))
        stored = conn.execute(select(admin_users).where(admin_users.c.username == username)).one()
    return user_from_row(stored)


def sign_in(engine: Engine, settings: LdapSettings, username: str, password: str) -> PanelUser | None:
    """The panel user for a directory account whose password is right and who is in a mapped group; None
    otherwise. LdapError when the directory cannot be asked."""
    if not settings.login or not valid_username(username) or not password or len(password) > 1024:
        return None
    with DirectoryClient(settings) as client:
        account = client.authenticate(username, password)
    if account is None:
        return None
    user = _store(engine, username, account, settings.roles)
    if user is None:
        log.info("admin.login directory user %s refused: in no group of ldap.roles", username)
    return user


def check_password(engine: Engine, settings: LdapSettings, username: str, password: str) -> PanelUser | None:
    """A local user first; then, with `ldap.login`, a directory account of that name (the panel's and the
    operator page's logins). LdapError when the directory is needed and cannot be asked."""
    user = authenticate(engine, username, password)
    if user is not None or not settings.login:
        return user
    return sign_in(engine, settings, username, password)


def recheck(engine: Engine, settings: LdapSettings) -> int:
    """Re-read every directory user's groups (after a sync): roles follow them, a user in no mapped group
    any more (or gone from the directory) is disabled with their sessions ended. Returns how many changed."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(admin_users).where(admin_users.c.source == "ldap", admin_users.c.disabled.is_(False))
        ).all()
    if not rows:
        return 0
    changed = 0
    with DirectoryClient(settings) as client:
        for row in rows:
            groups, role = client.role_of(row.directory_dn) if row.directory_dn else ((), None)
            group = _source_group(groups, role, settings.roles)
            if role == row.role and group == row.role_source:
                continue
            with engine.begin() as conn:
                values: dict[str, object] = {"role_source": group, "updated_at": time.time()}
                if role is None:
                    values["disabled"] = True
                    end_sessions(conn, row.id)
                else:
                    values["role"] = role
                    if role != row.role:
                        end_sessions(conn, row.id)  # a new role starts with a new sign-in
                conn.execute(update(admin_users).where(admin_users.c.id == row.id).values(**values))
            changed += 1
    return changed


def teams_json(teams: list[str]) -> str:
    """The stored form of a team leader's groups."""
    return json.dumps([t.strip() for t in teams if t.strip()])
