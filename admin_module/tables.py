"""The admin panel's tables; they share the core's metadata (migration `a001`)."""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, String, Table, Text, UniqueConstraint

from bridge.store.schema import Id, metadata

admin_users = Table(
    "admin_users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("username", String(64), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),  # admin | manager | accountant
    Column("lang", String(8), nullable=False, default="ru"),
    Column("extension", String(32), nullable=True),  # the PBX extension this user answers
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("username", name="uq_admin_users_username"),
)

admin_settings = Table(
    "admin_settings",
    metadata,
    Column("key", String(64), primary_key=True),  # "mango.api_key", "admin.softphone", ...
    Column("value", Text, nullable=False),  # JSON
    Column("updated_at", Float, nullable=False),
)

admin_login_failures = Table(
    "admin_login_failures",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False),  # "user:<name>" or "ip:<address>"
    Column("at", Float, nullable=False),
)
Index("ix_admin_login_failures_key", admin_login_failures.c.key, admin_login_failures.c.at)
