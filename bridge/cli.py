"""The `callbridge` command line."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bridge import __version__
from bridge.checks import check
from bridge.cli_context import AppContext
from bridge.config import ConfigError
from bridge.connectors_cli import connectors
from bridge.employees import employees_cli
from bridge.events_cli import events
from bridge.history.cli import import_history
from bridge.init_cli import init
from bridge.logging_setup import setup_logging
from bridge.outbox.cli import deliveries
from bridge.pbx.mango.simulator.cli import simulate
from bridge.store.opening import StoreUnavailable


class _CallbridgeGroup(click.Group):
    """The `callbridge` group; the installed add-ons' groups join it on first use (not on import)."""

    _addons_added = False

    def _add_addon_groups(self) -> None:
        if self._addons_added:
            return
        self._addons_added = True
        from bridge.addons import load_addons

        for addon in load_addons():
            if addon.cli_group is not None:
                self.add_command(addon.cli_group())  # `admin`, `widget`

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._add_addon_groups()
        return super().get_command(ctx, cmd_name)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._add_addon_groups()
        return super().list_commands(ctx)


@click.group(cls=_CallbridgeGroup)
@click.version_option(__version__, prog_name="callbridge")
@click.option(
    "--config",
    "config_path",
    envvar="CALLBRIDGE_CONFIG",
    type=click.Path(dir_okay=False),
    help="TOML settings file (default: $CALLBRIDGE_CONFIG; environment variables override it).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """callbridge: the bridge between your cloud PBX and your CRMs."""
    ctx.obj = AppContext(config_path)


@cli.command()
@click.pass_obj
def run(obj: AppContext) -> None:
    """Run the daemon: the Mango webhook receiver, the read API and the delivery workers."""
    import os

    from bridge.daemon import serve

    settings = obj.config
    if obj.config_path:
        os.environ["CALLBRIDGE_CONFIG"] = os.path.abspath(obj.config_path)
    setup_logging(settings.log.level)
    if not settings.mango.api_key:
        click.echo(
            "warning: no Mango API key set (CALLBRIDGE_MANGO_API_KEY); webhooks are refused until it is",
            err=True,
        )
    try:
        serve(settings)
    except StoreUnavailable as exc:
        raise click.ClickException(str(exc)) from None


@cli.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(obj: AppContext) -> None:
    """Apply the database migrations (also done on every start)."""
    from bridge.store.migrate import current_revision

    engine = obj.engine  # opened and migrated
    click.echo(f"database at revision {current_revision(engine)}")


@db.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite FILE if it exists.")
@click.pass_obj
def db_backup(obj: AppContext, file: Path, force: bool) -> None:
    """Copy the SQLite store into FILE, consistently, while callbridge runs.

    For PostgreSQL it prints the pg_dump command to use instead and exits with 2. Restore: stop
    callbridge, put the copy in place of the database file (removing its -wal and -shm files), start it.
    """
    from bridge.store.backup import BackupError, UsePgDump, backup

    try:
        size = backup(obj.config.database.url, file, force=force)
    except UsePgDump as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
    except BackupError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"backed up the store into {file} ({size} bytes, integrity check ok)")


@cli.group("config")
def config_group() -> None:
    """The settings: their reference."""


@config_group.command("reference")
@click.option(
    "--update",
    "update",
    type=click.Path(dir_okay=False, exists=True),
    help="Rewrite the reference table in this Markdown file (between its markers) instead of printing it.",
)
def config_reference(update: str | None) -> None:
    """Print every setting with its environment variable, default and meaning (Markdown)."""
    from pathlib import Path

    from bridge.config.reference import markdown_table, splice

    if update is None:
        click.echo(markdown_table())
        return
    path = Path(update)
    try:
        path.write_text(splice(path.read_text(encoding="utf-8")), encoding="utf-8")
    except ValueError as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    click.echo(f"updated the settings reference in {path}")


def _parse_ttl(value: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = value.strip().lower()
    try:
        if text and text[-1] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(text)
    except ValueError:
        raise click.BadParameter("use seconds or a number with s, m, h or d, e.g. 12h") from None


@cli.command()
@click.option("--extension", help="The employee's PBX extension (short number), e.g. 101.")
@click.option("--supervisor", is_flag=True, help="A token that sees every call.")
@click.option("--ttl", default="12h", show_default=True, help="How long the token is valid (s, m, h, d).")
@click.pass_obj
def token(obj: AppContext, extension: str | None, supervisor: bool, ttl: str) -> None:
    """Print a signed token for the live popups and the operator page (the token is the last line).

    Give it to the employee: the operator page (/operator) asks for it once, a WebSocket client connects
    with ws://HOST:PORT/ws?token=TOKEN.
    """
    import time

    from bridge.realtime.auth import signer_for

    if bool(extension) == supervisor:
        raise click.UsageError("give either --extension NUMBER or --supervisor")
    seconds = _parse_ttl(ttl)
    if not 60 <= seconds <= 366 * 86400:
        raise click.BadParameter("between 1 minute and a year", param_hint="--ttl")
    signer = signer_for(obj.config, obj.engine)
    try:
        value = (
            signer.issue_supervisor(seconds) if supervisor else signer.issue_employee(str(extension), seconds)
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--extension") from None
    who = "supervisor (every call)" if supervisor else f"extension {extension}"
    until = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(time.time() + seconds))
    click.echo(f"token for {who}, valid until {until}:")
    click.echo(value)


cli.add_command(check)
cli.add_command(init)
cli.add_command(deliveries)
cli.add_command(simulate)
cli.add_command(connectors)
cli.add_command(employees_cli)
cli.add_command(import_history)
cli.add_command(events)


def main() -> None:
    try:
        cli(standalone_mode=True)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
