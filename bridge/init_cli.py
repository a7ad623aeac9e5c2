"""`callbridge init`: a settings file in one go, then the check, then the address for Mango's cabinet."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from bridge.checks import check_mango
from bridge.config import ConfigError, load_config
from bridge.config.starter import Starter, receiver_address, render


def _ask(value: str | None, prompt: str, *, hide: bool = False, default: str = "") -> str:
    """`value` when given; else a prompt on a terminal; else `default`."""
    if value is not None:
        return value
    if not sys.stdin.isatty():
        return default
    return str(click.prompt(prompt, default=default, hide_input=hide, show_default=bool(default)))


@click.command("init")
@click.argument("path", default="callbridge.toml", type=click.Path(dir_okay=False))
@click.option("--mango-key", default=None, help="The cabinet's unique code of your PBX (vpbx_api_key).")
@click.option(
    "--mango-salt", default=None, help="The cabinet's key for creating a signature (vpbx_api_salt)."
)
@click.option("--public-url", default=None, help="The HTTPS address Mango reaches callbridge at.")
@click.option("--database-url", default=None, help="Default: a SQLite file under ./var/.")
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
@click.option("--no-check", is_flag=True, help="Do not call Mango to check the key and salt.")
def init(
    path: str,
    mango_key: str | None,
    mango_salt: str | None,
    public_url: str | None,
    database_url: str | None,
    force: bool,
    no_check: bool,
) -> None:
    """Write a commented settings file (PATH, default callbridge.toml) with generated secrets, check the
    Mango credentials, and print the address to paste into Mango's cabinet.

    Values not given as options are asked for on a terminal (the salt hidden)."""
    target = Path(path)
    if target.exists() and not force:
        raise click.ClickException(f"{target} exists; give --force to overwrite it")
    starter = Starter(
        mango_key=_ask(mango_key, "Mango: unique code of your PBX (vpbx_api_key)").strip(),
        mango_salt=_ask(mango_salt, "Mango: key for creating a signature (vpbx_api_salt)", hide=True).strip(),
        public_url=_ask(
            public_url, "Public HTTPS address of callbridge, e.g. https://calls.example.com"
        ).strip(),
        database_url=database_url or Starter.database_url,
    )
    _write_private(target, render(starter))
    click.echo(f"wrote {target} (readable by you only)")
    try:
        settings = load_config(target)  # as `callbridge run` will read it: the environment wins
    except ConfigError as exc:
        raise click.ClickException(f"{target} was written but is not valid: {exc}") from None
    checked = None if no_check else check_mango(settings)
    if checked is not None:
        click.echo(f"{'ok  ' if checked.ok else 'FAIL'} mango: {checked.message}")
    click.echo("")
    if starter.public_url:
        click.echo("In Mango's cabinet (Integrations -> API connector), external system address:")
        click.echo(f"    {receiver_address(starter.public_url)}")
    else:
        click.echo(f"Set http.public_url in {target}; Mango's cabinet then takes <public_url>/mango.")
    click.echo(f"Start callbridge with:  callbridge --config {target} run")
    if checked is not None and not checked.ok:
        raise SystemExit(1)


def _write_private(target: Path, text: str) -> None:
    """Write `text` to `target`, created with mode 600 (it holds secrets)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)
    os.chmod(target, 0o600)
