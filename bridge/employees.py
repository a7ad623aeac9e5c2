"""The core's `employees` table, filled from Mango's `config/users/request`.

Used by `callbridge employees import` and by the admin panel's "Import from Mango" button. Every Mango
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
from bridge.pbx.port import PbxCommands, PbxError, PbxUser
from bridge.settings_store import SettingsStore
from bridge.store.schema import employees

__all__ = ["EmployeeImport", "employees_cli", "import_employees", "mango_client_for", "store_employees"]


@dataclass(frozen=True)
class EmployeeImport:
    """What an import did: extensions added and updated, users skipped, rows Mango no longer lists."""

    added: tuple[str, ...]
    updated: tuple[str, ...]
    skipped: int  # Mango users without an extension
    stale: tuple[str, ...]

    @property
    def total(self) -> int:
        return len(self.added) + len(self.updated)

    def words(self) -> str:
        """A plain-words summary for a person."""
        text = (
            f"{self.total} employee(s) imported from Mango: "
            f"{len(self.added)} new, {len(self.updated)} updated"
        )
        if self.skipped:
            text += f"; {self.skipped} without an extension left out"
        if self.stale:
            text += f"; no longer in Mango (kept): {', '.join(self.stale)}"
        return text + "."


def store_employees(
    engine: Engine, users: Iterable[PbxUser], *, clock: Callable[[], float] = time.time
) -> EmployeeImport:
    """Upsert every user that has an extension into `employees`, in one transaction."""
    users = list(users)
    with_extension = {u.extension: u for u in users if u.extension}
    now = clock()
    added: list[str] = []
    updated: list[str] = []
    with engine.begin() as conn:
        for extension, user in sorted(with_extension.items()):
            values = {
                "name": user.name,
                "email": user.email,
                "department": user.department,
                "position": user.position,
                "mango_user_id": user.user_id,
                "numbers": json.dumps([n.number for n in user.numbers]),
                "updated_at": now,
            }
            done = conn.execute(
                update(employees).where(employees.c.extension == extension).values(**values)
            ).rowcount
            if done:
                updated.append(extension)
            else:
                conn.execute(insert(employees).values(extension=extension, **values))
                added.append(extension)
        known = conn.execute(select(employees.c.extension)).scalars().all()
    return EmployeeImport(
        added=tuple(added),
        updated=tuple(updated),
        skipped=len(users) - sum(1 for u in users if u.extension),
        stale=tuple(sorted(set(known) - set(with_extension))),
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
    """The employees (extensions) callbridge knows, from the PBX."""


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
