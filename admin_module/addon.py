"""The admin panel's registration with the core (entry point ``callbridge.addons``: ``admin``).

Hooks import their modules when called, so loading the registration stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bridge.addons import AddOn, WebContext, Worker, WorkerContext
from bridge.store.migrate import Migrations

if TYPE_CHECKING:
    from collections.abc import Sequence

    import click
    from flask import Flask
    from sqlalchemy import Engine

    from bridge.config import Settings
    from bridge.operator.blueprint import PasswordLogin

# The panel's Alembic branch (entry point ``callbridge.migrations``: ``admin``). Its first
# revision sat in the core's line until the branch was split off: there, these core (and widget)
# revisions came after it.
MIGRATIONS = Migrations(
    versions=Path(__file__).parent / "migrations" / "versions",
    base="a001",
    base_table="admin_users",
    implied_by=frozenset({"w002", "h001", "0003", "0004", "0005", "0006"}),
)


def _tables() -> object:
    import admin_module.tables

    return admin_module.tables


def _register_web(app: Flask, context: WebContext) -> None:
    from admin_module.blueprint import make_admin_blueprint

    app.register_blueprint(
        make_admin_blueprint(
            context.settings,
            context.engine,
            mango_client_factory=context.mango_client,
            store=context.saved,
            connectors=lambda: context.connectors,
        )
    )


def _cli_group() -> click.Command:
    from admin_module.cli import admin

    return admin


def _password_login(engine: Engine, settings: Settings) -> PasswordLogin:
    from admin_module.live import password_login

    return password_login(engine, settings)  # the panel's users, with the `login.*` limits


def _background_workers(context: WorkerContext) -> Sequence[Worker]:
    from admin_module.directory_sync import DirectorySync
    from bridge.settings_store import SettingsStore

    saved = SettingsStore(context.engine, context.settings)
    sync = DirectorySync(context.engine, lambda: saved.effective().ldap)
    return [Worker("directory-sync", sync.run_forever)]


addon = AddOn(
    name="admin",
    order=10,
    tables=_tables,
    register_web=_register_web,
    cli_group=_cli_group,
    password_login=_password_login,
    background_workers=_background_workers,
    pages={"admin": "/admin"},
)
