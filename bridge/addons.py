"""Add-ons: packages (the admin panel, the widget) that plug into the core through entry points.

The core imports no add-on by name. Each add-on registers one `AddOn` under the entry point group
``callbridge.addons`` (the entry point's name is the add-on's `name`); the core loads them with
`load_addons()`, in `order`, and calls the hooks an add-on fills in:

- `tables()` imports the add-on's table module, so its tables join `bridge.store.schema.metadata`;
- `register_web(app, context)` registers its blueprints on the web app;
- `cli_group()` gives its `click` group, added to `callbridge`;
- `background_workers(context)` gives the threads the daemon runs for it;
- `password_login(engine, settings)` gives the operator page's password logins (the first add-on wins);
- `pages` names the add-on's pages a person opens, which `/` lists.

An add-on's tables are migrated by its own Alembic branch, registered apart under
``callbridge.migrations`` (see `bridge.store.migrate`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import click
    from flask import Flask
    from sqlalchemy import Engine

    from bridge.config import Settings
    from bridge.connector_api import Connector
    from bridge.operator.blueprint import PasswordLogin
    from bridge.pbx.port import PbxClientForSettings
    from bridge.settings_store import SettingsStore

__all__ = [
    "ENTRY_POINT_GROUP",
    "AddOn",
    "AddOnError",
    "WebContext",
    "Worker",
    "WorkerContext",
    "load_addon_tables",
    "load_addons",
    "password_login",
]

ENTRY_POINT_GROUP = "callbridge.addons"


class AddOnError(Exception):
    """An installed add-on cannot be loaded; the message names it and says why."""


@dataclass(frozen=True)
class WebContext:
    """What an add-on's blueprints are built from (the web app's own objects)."""

    settings: Settings
    engine: Engine
    saved: SettingsStore  # the saved settings, shared with the app (one store per app)
    connectors: Mapping[str, Connector]
    mango_client: PbxClientForSettings


@dataclass(frozen=True)
class WorkerContext:
    """What an add-on's background workers are built from (the daemon's own objects)."""

    settings: Settings
    engine: Engine
    connectors: Mapping[str, Connector]
    mango_client: PbxClientForSettings


@dataclass(frozen=True)
class Worker:
    """One background thread: `run_forever(stop)` returns once `stop` is set."""

    name: str
    run_forever: Callable[[threading.Event], None]


@dataclass(frozen=True)
class AddOn:
    """An add-on's registration; every hook is optional. Lower `order` registers first."""

    name: str
    order: int = 100
    tables: Callable[[], object] | None = None
    register_web: Callable[[Flask, WebContext], None] | None = None
    cli_group: Callable[[], click.Command] | None = None
    background_workers: Callable[[WorkerContext], Sequence[Worker]] | None = None
    password_login: Callable[[Engine, Settings], PasswordLogin] | None = None
    # The add-on's pages a person opens, listed by `/` (e.g. {"admin": "/admin"}).
    pages: Mapping[str, str] = field(default_factory=dict)


def _check(value: Any, name: str, where: str) -> AddOn:
    if not isinstance(value, AddOn):
        raise AddOnError(f"add-on {name!r} ({where}) is not a bridge.addons.AddOn")
    if value.name != name:
        raise AddOnError(f"add-on {where} is called {value.name!r}, its entry point says {name!r}")
    return value


def load_addons() -> list[AddOn]:
    """Every installed add-on, sorted by (`order`, `name`). One that fails to load raises `AddOnError`."""
    found: dict[str, AddOn] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found:
            continue  # the same distribution seen twice on sys.path
        try:
            value = ep.load()
        except Exception as exc:
            raise AddOnError(f"add-on {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        found[ep.name] = _check(value, ep.name, ep.value)
    return sorted(found.values(), key=lambda addon: (addon.order, addon.name))


def load_addon_tables(addons: Sequence[AddOn] | None = None) -> None:
    """Import every add-on's tables, so that they join `bridge.store.schema.metadata`."""
    for addon in load_addons() if addons is None else addons:
        if addon.tables is not None:
            addon.tables()


def password_login(addons: Sequence[AddOn], engine: Engine, settings: Settings) -> PasswordLogin | None:
    """The first add-on's password logins for the operator page, or None (access codes only)."""
    for addon in addons:
        if addon.password_login is not None:
            return addon.password_login(engine, settings)
    return None
