"""`callbridge admin ...`: panel users from the command line (the first admin is created here)."""

from __future__ import annotations

import sys
from typing import Any

import click

from admin_module.roles import ROLES
from admin_module.users import LANGS, UserError, create_user, list_users


@click.group("admin")
def admin() -> None:
    """Users of the admin panel."""


@admin.command("create-user")
@click.option("--username", required=True, help="Login name (letters, digits, . _ @ -).")
@click.option("--role", type=click.Choice(ROLES), required=True, help="admin, manager or accountant.")
@click.option(
    "--password", default=None, help="The password (visible in the process list: prefer --password-stdin)."
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input."
)
@click.option("--lang", type=click.Choice(LANGS), default="ru", show_default=True)
@click.option("--extension", default=None, help="The PBX extension this user answers (managers).")
@click.pass_obj
def create_user_command(
    obj: Any,
    username: str,
    role: str,
    password: str | None,
    password_stdin: bool,
    lang: str,
    extension: str | None,
) -> None:
    """Create a panel user; the password is stored as an argon2 hash."""
    if password_stdin:
        if password is not None:
            raise click.UsageError("give --password or --password-stdin, not both")
        password = sys.stdin.readline().rstrip("\r\n")
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user = create_user(obj.engine, username, password, role, lang=lang, extension=extension)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {user.role} {user.username!r} (id {user.id})")


@admin.command("list-users")
@click.pass_obj
def list_users_command(obj: Any) -> None:
    """Every panel user: name, role, language, extension."""
    for user in list_users(obj.engine):
        click.echo(f"{user.username}\t{user.role}\t{user.lang}\t{user.extension or '-'}")
