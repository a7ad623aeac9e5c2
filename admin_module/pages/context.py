"""What the admin pages share: `PageContext`, and the panel's error page."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from flask import Response, render_template
from sqlalchemy import Engine, select

from admin_module import auth
from bridge.config import Settings
from bridge.connector_api import Connector
from bridge.pbx.port import PbxClientForSettings, PbxCommands
from bridge.settings_store import SettingsStore
from bridge.store.engine import reader
from bridge.store.schema import employees

log = logging.getLogger("admin_module.blueprint")
"""One logger for the panel's actions (settings saved, retries, imports, callbacks), whichever page acts."""

Originate = Callable[[str, str], str]
ClientFactory = PbxClientForSettings
Translate = Callable[..., str]


@dataclass(frozen=True)
class PageContext:
    """The panel's shared parts, built once per blueprint.

    `t(key, **values)`: the current user's (or browser's) language; `tz()`: the panel's time zone now;
    `originate(extension, number) -> command_id`: click-to-call; `mango_client_factory(settings)`: a Mango
    client; `connectors()`: the running connectors; `connectors_health()`: extra health per connector.
    """

    settings: Settings
    engine: Engine
    store: SettingsStore
    t: Translate
    tz: Callable[[], ZoneInfo]
    originate: Originate
    mango_client_factory: ClientFactory
    limiter: auth.LoginLimiter
    connectors: Callable[[], Mapping[str, Connector]] | None = None
    connectors_health: Callable[[], dict[str, Any]] | None = None

    def mango_client(self) -> PbxCommands:
        """A Mango client on the effective settings (saved panel values applied)."""
        return self.mango_client_factory(self.store.effective())

    def running_connectors(self) -> Mapping[str, Connector]:
        """The running connectors by name (none when the panel was given none)."""
        return self.connectors() if self.connectors else {}

    def employee_names(self) -> dict[str, str]:
        """Employee names by extension."""
        with reader(self.engine).connect() as conn:
            return {
                r.extension: r.name or ""
                for r in conn.execute(select(employees.c.extension, employees.c.name))
            }


def error_page(status: int, message: str) -> Response:
    """The panel's error page with `message`, answered with `status`."""
    body = render_template("admin/error.html", message=message, status=status)
    return Response(body, status=status, mimetype="text/html")
