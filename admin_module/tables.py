"""The admin panel's tables; they share the core's metadata (migrations `a001`, `a002`)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, Index, Integer, String, Table, Text, UniqueConstraint, false

from bridge.store.schema import Id, metadata

admin_users = Table(
    "admin_users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),  # admin | employee | team_leader | marketer | accountant
    Column("lang", String(8), nullable=False, default="ru"),
    Column("extension", String(32), nullable=True),  # the PBX extension this user answers
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    # A disabled user cannot log in; disabling ends every session of theirs.
    Column("disabled", Boolean, nullable=False, default=False, server_default=false()),
    # `local` (a password here) or `ldap` (signs in against the directory; role from its groups).
    Column("source", String(16), nullable=False, default="local", server_default="local"),
    Column("directory_dn", String(1024), nullable=True),
    Column("role_source", String(1024), nullable=True),  # the directory group that gave the role
    Column("teams", Text, nullable=True),  # JSON list: the Mango groups a team leader leads
    UniqueConstraint("username", name="uq_admin_users_username"),
)

admin_login_failures = Table(
    "admin_login_failures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False),  # "user:<name>": one row per failed password check
    Column("at", Float, nullable=False),
)
Index("ix_admin_login_failures_key", admin_login_failures.c.key, admin_login_failures.c.at)

# Logged-in sessions (panel and operator page): the cookie holds a random token, the store its SHA-256.
# Logging out, a new password or a disabled user deletes the user's rows, so every copy of a cookie dies.
admin_sessions = Table(
    "admin_sessions",
    metadata,
    Column("id", String(64), primary_key=True),  # sha256 hex of the cookie's token
    Column("user_id", Id, nullable=False),
    Column("kind", String(16), nullable=False),  # panel | operator
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)
Index("ix_admin_sessions_user", admin_sessions.c.user_id)
Index("ix_admin_sessions_expires", admin_sessions.c.expires_at)

# Login attempt counters, one row per limited key ("ua:<user>|<address>", "u:<user>", "a:<address>"),
# counted with one atomic upsert per key so every worker process and instance shares them.
admin_login_limits = Table(
    "admin_login_limits",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("count", Integer, nullable=False),
    Column("window_start", Float, nullable=False),
)
Index("ix_admin_login_limits_window", admin_login_limits.c.window_start)
