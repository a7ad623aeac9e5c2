"""The widget's registration with the core (entry point ``callbridge.addons``: ``widget``).

Hooks import their modules when called, so loading the registration stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bridge.addons import AddOn, WebContext, Worker, WorkerContext
from bridge.store.migrate import Migrations

if TYPE_CHECKING:
    import click
    from flask import Flask

# The widget's Alembic branch (entry point ``callbridge.migrations``: ``widget``). Its first
# revision sat in the core's line until the branch was split off: there, these core (and admin)
# revisions came after it.
MIGRATIONS = Migrations(
    versions=Path(__file__).parent / "migrations" / "versions",
    base="w001",
    base_table="widget_sites",
    implied_by=frozenset({"a001", "a002", "h001", "0003", "0004", "0005", "0006"}),
)


def _tables() -> object:
    import widget.tables

    return widget.tables


def _register_web(app: Flask, context: WebContext) -> None:
    from widget.blueprint import make_widget_blueprint

    settings = context.settings
    app.register_blueprint(
        make_widget_blueprint(
            settings, context.engine, context.connectors, lambda: context.mango_client(settings)
        )
    )


def _cli_group() -> click.Command:
    from widget.cli import widget

    return widget


def _background_workers(context: WorkerContext) -> Sequence[Worker]:
    from widget.scheduler import make_widget_scheduler

    settings = context.settings
    scheduler = make_widget_scheduler(
        settings, context.engine, context.connectors, lambda: context.mango_client(settings)
    )
    return [Worker("widget-scheduler", scheduler.run_forever)]


addon = AddOn(
    name="widget",
    order=20,
    tables=_tables,
    register_web=_register_web,
    cli_group=_cli_group,
    background_workers=_background_workers,
    pages={"widget": "/widget/callback.js"},
)
