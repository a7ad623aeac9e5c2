"""The core's `employees` table, filled from Mango's `config/users/request` or from the directory.

Used by `callbridge employees import`, `sync-ldap` (bridge/ldap/) and `list`, and by the admin panel's
"Import from Mango" button. Every Mango
employee with an extension is written (added or brought up to date); employees without one cannot take
calls and are left out. Rows of extensions Mango no longer lists are kept (staff may still be mapped to
them) and reported as `stale`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import click
from sqlalchemy import Engine, insert, select, update

from bridge.cli_context import AppContext
from bridge.connectors_runtime import mango_client
from bridge.ldap.client import LdapError
from bridge.ldap.sync import run_sync
from bridge.pbx.port import PbxCommands, PbxError, PbxUser
from bridge.settings_store import SettingsStore
from bridge.store.schema import employees
from bridge.text_table import table

__all__ = [
    "EmployeeImport",
    "employees_cli",
    "import_employees",
    "list_employees",
    "mango_client_for",
    "store_employees",
]


@dataclass(frozen=True)
class EmployeeImport:
    """What an import did: extensions added and changed, those already up to date, users skipped, and rows
    Mango no longer lists."""

    added: tuple[str, ...]
    updated: tuple[str, ...]  # a field changed
    unchanged: int
    skipped: int  # Mango users without an extension
    stale: tuple[str, ...]

    @property
    def total(self) -> int:
        return len(self.added) + len(self.updated)

    def words(self) -> str:
        """A plain-words summary for a person: real changes only."""
        if self.total:
            text = f"{len(self.added)} new and {len(self.updated)} changed employee(s) imported from Mango"
        else:
            text = "nothing to import from Mango"
        if self.unchanged:
            text += f"; {self.unchanged} already up to date"
        if self.skipped:
            text += f"; {self.skipped} without an extension left out"
        if self.stale:
            text += f"; no longer in Mango (kept): {', '.join(self.stale)}"
        return text + "."


_FIELDS = ("name", "email", "department", "position", "mango_user_id", "numbers")


def _values(user: PbxUser) -> dict[str, object]:
    return {
        "name": user.name,
        "email": user.email,
        "department": user.department,
        "position": user.position,
        "mango_user_id": user.user_id,
        "numbers": json.dumps([n.number for n in user.numbers]),
    }


def store_employees(
    engine: Engine, users: Iterable[PbxUser], *, clock: Callable[[], float] = time.time
) -> EmployeeImport:
    """Write every user that has an extension into `employees`, in one transaction: new ones added, changed
    ones updated (with `updated_at`), the others left as they are."""
    users = list(users)
    with_extension = {u.extension: u for u in users if u.extension}
    now = clock()
    added: list[str] = []
    updated: list[str] = []
    with engine.begin() as conn:
        current = {
            row.extension: {field: getattr(row, field) for field in _FIELDS}
            for row in conn.execute(select(employees.c.extension, *(employees.c[f] for f in _FIELDS)))
        }
        for extension, user in sorted(with_extension.items()):
            values = _values(user)
            if extension not in current:
                conn.execute(insert(employees).values(extension=extension, updated_at=now, **values))
                added.append(extension)
            elif values != current[extension]:
                stmt = update(employees).where(employees.c.extension == extension)
                conn.execute(stmt.values(updated_at=now, **values))
                updated.append(extension)
    return EmployeeImport(
        added=tuple(added),
        updated=tuple(updated),
        unchanged=len(with_extension) - len(added) - len(updated),
        skipped=len(users) - sum(1 for u in users if u.extension),
        stale=tuple(sorted(set(current) - set(with_extension))),
    )


def import_employees(
    engine: Engine, client: PbxCommands, *, clock: Callable[[], float] = time.time
) -> EmployeeImport:
    """Ask Mango for its employees and store them. Raises `PbxError` when Mango cannot be asked."""
    return store_employees(engine, client.users(), clock=clock)


def mango_client_for(obj: AppContext) -> PbxCommands:
    """A Mango client with the credentials the daemon uses (the configuration, or what the admin panel
    saved); a `ClickException` in plain words when there are none."""
    settings = SettingsStore(obj.engine, obj.config).effective()
    if not settings.mango.api_key or not settings.mango.api_salt.get_secret_value():
        raise click.ClickException(
            "Mango is not configured: set CALLBRIDGE_MANGO_API_KEY and CALLBRIDGE_MANGO_API_SALT "
            "(or save them in the admin panel's IP-telephony settings)"
        )
    return mango_client(settings)


@click.group("employees")
def employees_cli() -> None:
    """The employees (extensions) callbridge knows, from the PBX or the company directory."""


@employees_cli.command("import")
@click.pass_obj
def import_command(obj: AppContext) -> None:
    """Import the employees from Mango (`config/users/request`) into the store."""
    client = mango_client_for(obj)
    try:
        result = import_employees(obj.engine, client)
    except PbxError as exc:
        raise click.ClickException(f"could not get the employee list from Mango: {exc}") from None
    finally:
        client.close()
    click.echo(result.words())
    for extension in result.added:
        click.echo(f"  + {extension}")
    for extension in result.updated:
        click.echo(f"  ~ {extension}")


_LISTED = ("extension", "name", "email", "department", "position", "source", "active")


def list_employees(engine: Engine) -> list[dict[str, object]]:
    """Every employee, by extension: the listed fields (`active` a bool)."""
    with engine.connect() as conn:
        rows = conn.execute(select(*(employees.c[f] for f in _LISTED)).order_by(employees.c.extension))
        return [{**row._asdict(), "active": bool(row.active)} for row in rows]


@employees_cli.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON array instead of a table")
@click.pass_obj
def list_command(obj: AppContext, as_json: bool) -> None:
    """List the employees: extension, name, e-mail, department, position, source, active."""
    people = list_employees(obj.engine)
    if as_json:
        click.echo(json.dumps(people, ensure_ascii=False, indent=2))
        return
    rows = [[str(p[f] or "") for f in _LISTED[:-1]] + ["yes" if p["active"] else "no"] for p in people]
    click.echo(table(list(_LISTED), rows))


@employees_cli.command("sync-ldap")
@click.option("--dry-run", is_flag=True, help="show what would change, write nothing")
@click.pass_obj
def sync_ldap_command(obj: AppContext, dry_run: bool) -> None:
    """Sync the employees from the LDAP directory or Active Directory (`[ldap]`)."""
    settings = SettingsStore(obj.engine, obj.config).effective().ldap
    try:
        result = run_sync(obj.engine, settings, trigger="cli", dry_run=dry_run)
    except LdapError as exc:
        raise click.ClickException(f"directory sync failed: {exc}") from None
    click.echo(result.words())
    for mark, extensions in (("+", result.created), ("~", result.updated), ("-", result.deactivated)):
        for extension in extensions:
            click.echo(f"  {mark} {extension}")
    for dn in result.skipped:
        click.echo(f"  skipped (no extension, or one already taken): {dn}")
