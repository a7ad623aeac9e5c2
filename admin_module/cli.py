"""`callbridge admin ...`: panel users from the command line (the first admin is created here)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

from admin_module import sessions
from admin_module.roles import ALIASES, ROLES
from admin_module.users import (
    LANGS,
    UserError,
    create_user,
    delete_user,
    list_users,
    reset_password,
    set_disabled,
    set_password,
    set_teams,
)


@click.group("admin")
def admin() -> None:
    """Users of the admin panel."""


_PASSWORD = click.option(
    "--password", default=None, help="The password (visible in the process list: prefer --password-stdin)."
)
_PASSWORD_STDIN = click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input."
)


def _read_password(password: str | None, password_stdin: bool) -> str:
    """The password from the option, the first line of standard input, or a hidden prompt."""
    if password_stdin:
        if password is not None:
            raise click.UsageError("give --password or --password-stdin, not both")
        return sys.stdin.readline().rstrip("\r\n")
    if password is None:
        return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))
    return password


@admin.command("create-user")
@click.option("--username", required=True, help="Login name (letters, digits, . _ @ -).")
@click.option(
    "--role",
    type=click.Choice([*ROLES, *ALIASES]),
    required=True,
    help="admin, employee (was: manager), team_leader, marketer or accountant.",
)
@_PASSWORD
@_PASSWORD_STDIN
@click.option("--lang", type=click.Choice(LANGS), default="ru", show_default=True)
@click.option("--extension", default=None, help="The PBX extension this user answers (employees).")
@click.option(
    "--teams", default="", help="Team leaders: the Mango groups they lead (ids, short numbers or names)."
)
@click.pass_obj
def create_user_command(
    obj: Any,
    username: str,
    role: str,
    password: str | None,
    password_stdin: bool,
    lang: str,
    extension: str | None,
    teams: str,
) -> None:
    """Create a panel user; the password is stored as an argon2 hash."""
    password = _read_password(password, password_stdin)
    try:
        user = create_user(obj.engine, username, password, role, lang=lang, extension=extension)
        if teams:
            set_teams(obj.engine, username, teams.split(","))
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created {user.role} {user.username!r} (id {user.id})")


@admin.command("list-users")
@click.pass_obj
def list_users_command(obj: Any) -> None:
    """Every panel user: name, role, language, extension, state (with live sessions)."""
    for user in list_users(obj.engine):
        state = "disabled" if user.disabled else f"active ({sessions.count(obj.engine, user.id)} sessions)"
        teams = ",".join(user.teams) or "-"
        cells = [user.username, user.role, user.lang, user.extension or "-", state, user.source, teams]
        click.echo("\t".join(cells))


@admin.command("set-teams")
@click.option("--username", required=True, help="The team leader's login name.")
@click.option("--teams", required=True, help="The Mango groups they lead, comma-separated (empty: none).")
@click.pass_obj
def set_teams_command(obj: Any, username: str, teams: str) -> None:
    """Set the Mango groups a team leader leads: they see those groups' members' calls and statistics."""
    _user_change(lambda: set_teams(obj.engine, username, teams.split(",")))
    click.echo(f"{username!r} leads: {teams or 'no group'}")


@admin.command("set-password")
@click.option("--username", required=True, help="The user's login name.")
@_PASSWORD
@_PASSWORD_STDIN
@click.pass_obj
def set_password_command(obj: Any, username: str, password: str | None, password_stdin: bool) -> None:
    """Give a user a new password; every session of theirs ends (they log in again)."""
    new_password = _read_password(password, password_stdin)
    ended = _user_change(lambda: set_password(obj.engine, username, new_password))
    click.echo(f"new password for {username!r}; {ended} session(s) ended")


@admin.command("disable-user")
@click.option("--username", required=True, help="The user's login name.")
@click.pass_obj
def disable_user_command(obj: Any, username: str) -> None:
    """Refuse a user's logins and end every session of theirs (`enable-user` undoes it)."""
    ended = _user_change(lambda: set_disabled(obj.engine, username, True))
    click.echo(f"disabled {username!r}; {ended} session(s) ended")


@admin.command("enable-user")
@click.option("--username", required=True, help="The user's login name.")
@click.pass_obj
def enable_user_command(obj: Any, username: str) -> None:
    """Let a disabled user log in again."""
    _user_change(lambda: set_disabled(obj.engine, username, False))
    click.echo(f"enabled {username!r}")


@admin.command("reset-password")
@click.option("--username", required=True, help="The user's login name.")
@click.pass_obj
def reset_password_command(obj: Any, username: str) -> None:
    """Give a user a new random password, printed once (the last line); every session of theirs ends."""
    try:
        password, ended = reset_password(obj.engine, username)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"new password for {username!r} ({ended} session(s) ended); give it to them and let them change it:"
    )
    click.echo(password)


@admin.command("delete-user")
@click.option("--username", required=True, help="The user's login name.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def delete_user_command(obj: Any, username: str, yes: bool) -> None:
    """Delete a user and end their sessions (their calls stay; `disable-user` keeps the account)."""
    if not yes:
        click.confirm(f"Delete the panel user {username!r}?", abort=True)
    ended = _user_change(lambda: delete_user(obj.engine, username))
    click.echo(f"deleted {username!r}; {ended} session(s) ended")


def _user_change(change: Callable[[], int]) -> int:
    """Run one change of a user, a `UserError` becoming the command's plain error message."""
    try:
        return change()
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
