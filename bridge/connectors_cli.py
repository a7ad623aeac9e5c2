"""`callbridge connectors ...`: the installed connectors, importing a CRM's employee map, and registering the
integration in a CRM that needs it (`setup`).

The core knows no connector by name: it finds them through the registry (entry points) and asks each for
what it can do (`bridge.crm_employees` for the employee import).
"""

from __future__ import annotations

from typing import Any

import click

from bridge.cli_context import AppContext
from bridge.connector_api import CommandLine, CrmSetup, DeliveryError
from bridge.connector_api.base import Connector
from bridge.connectors_runtime import is_dormant, load_connectors
from bridge.crm_employees import import_crm_employees, imports_employees, mango_users_from
from bridge.employees import mango_client_for
from bridge.pbx.port import PbxError
from bridge.registry import ConnectorConfigError, available_connectors, build_connectors

__all__ = ["connectors"]


def _section_state(name: str, section: Any) -> str:
    """`enabled`, `disabled`, or what is wrong with the section (the registry's words)."""
    try:
        return "enabled" if build_connectors({name: section}) else "disabled"
    except ConnectorConfigError as exc:
        return f"misconfigured: {exc}"


class _ConnectorsGroup(click.Group):
    """`callbridge connectors`; installed connectors' own commands (`CommandLine`) join it on first use."""

    _joined = False

    def _join_connector_commands(self) -> None:
        if self._joined:
            return
        self._joined = True
        for cls in available_connectors().values():
            if isinstance(cls, CommandLine):
                for command in cls.cli_commands():
                    self.add_command(command)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._join_connector_commands()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._join_connector_commands()
        return super().list_commands(ctx)


@click.group("connectors", cls=_ConnectorsGroup)
def connectors() -> None:
    """The CRM connectors: what is installed and configured, importing their employee maps, registering
    them in their CRMs, and the connectors' own commands."""


@connectors.command("list")
@click.pass_obj
def list_command(obj: AppContext) -> None:
    """Every installed connector, whether it is configured and enabled, and what it can do."""
    sections = obj.config.connectors
    installed = available_connectors()
    if not installed:
        click.echo("no connectors are installed")
    for name, cls in installed.items():
        state = _section_state(name, sections[name]) if name in sections else "not configured"
        abilities = sorted(str(capability) for capability in cls.capabilities)
        click.echo(f"{name:<12} {state}  [{', '.join(abilities) or '-'}]")
    for name in sorted(set(sections) - set(installed)):
        click.echo(f"{name:<12} configured, but no connector called {name!r} is installed")


def _installed(name: str) -> type[Connector]:
    installed = available_connectors()
    if name not in installed:
        raise click.ClickException(
            f"no connector called {name!r} is installed (installed: {', '.join(installed) or 'none'})"
        )
    return installed[name]


def _enabled(obj: AppContext, name: str) -> Connector:
    """The running connector NAME, built from the settings; a plain error when it is not enabled."""
    try:
        connector = load_connectors(obj.config, obj.engine).get(name)
    except ConnectorConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if connector is None or is_dormant(connector):
        raise click.ClickException(
            f"the {name} connector is not enabled: configure [connectors.{name}] "
            f"(or CALLBRIDGE_CONNECTORS_{name.upper()}_...) first"
        )
    return connector


@connectors.command("import-employees")
@click.argument("name")
@click.pass_obj
def import_employees_command(obj: AppContext, name: str) -> None:
    """Import connector NAME's map from extensions to CRM users, and store it."""
    if not imports_employees(_installed(name)):
        installed = available_connectors()
        able = [n for n, cls in installed.items() if imports_employees(cls)]
        raise click.ClickException(
            f"the {name} connector has no employee import "
            f"(connectors that have one: {', '.join(able) or 'none'})"
        )
    connector = _enabled(obj, name)
    try:
        lines = import_crm_employees(connector, mango_users_from(lambda: mango_client_for(obj)))
    except PbxError as exc:
        raise click.ClickException(f"could not get the employee list from Mango: {exc}") from None
    except DeliveryError as exc:
        raise click.ClickException(f"the {name} connector could not import its employees: {exc}") from None
    for line in lines:
        click.echo(line)


@connectors.command("setup")
@click.argument("name")
@click.option("--off", is_flag=True, help="Switch the integration off in the CRM instead.")
@click.pass_obj
def setup_command(obj: AppContext, name: str, off: bool) -> None:
    """Register the integration in connector NAME's CRM now (e.g. retailCRM's telephony module, YClients'
    telephony switch), whatever was sent before; with --off, switch it off there."""
    _installed(name)
    connector = _enabled(obj, name)
    if not isinstance(connector, CrmSetup):
        able = [n for n, c in load_connectors(obj.config, obj.engine).items() if isinstance(c, CrmSetup)]
        raise click.ClickException(
            f"the {name} connector has nothing to register in its CRM "
            f"(enabled connectors that have: {', '.join(able) or 'none'})"
        )
    try:
        click.echo(connector.set_up(enabled=not off))
    except DeliveryError as exc:
        doing = "switch off" if off else "register"
        raise click.ClickException(f"the {name} connector could not {doing} the integration: {exc}") from None
