"""A directory sync: people from the directory into the core's `employees` table.

Each person with an extension is created or brought up to date (`source = ldap`, active); a field listed in
`ldap.keep_local` keeps a local edit (a value that differs from what the directory gave last time). Rows the
directory gave before and no longer lists with that extension (gone, moved to another extension, or without
one now) are marked inactive, never deleted: their calls keep their names. Rows imported from Mango the
directory does not list are left alone. One transaction; a dry run rolls it back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import Engine, insert, select, update

from bridge.config.model import LdapSettings
from bridge.ldap.client import DirectoryClient, LdapError
from bridge.ldap.mapping import FIELDS, DirectoryPerson, person_from_entry, wanted_attributes
from bridge.store.schema import directory_syncs, employees

__all__ = ["SyncResult", "read_directory", "run_sync", "sync_employees"]


@dataclass(frozen=True)
class SyncResult:
    """What a sync did (or, in a dry run, would do): extensions created, updated and deactivated, entries
    already up to date, and the DNs of entries left out (no extension, or an extension taken by another
    entry)."""

    created: tuple[str, ...]
    updated: tuple[str, ...]
    deactivated: tuple[str, ...]
    unchanged: int
    skipped: tuple[str, ...] = field(default=())
    dry_run: bool = False

    def words(self) -> str:
        verb = "would be" if self.dry_run else ""
        parts = [
            f"{len(self.created)} created",
            f"{len(self.updated)} updated",
            f"{len(self.deactivated)} deactivated",
            f"{self.unchanged} unchanged",
        ]
        if self.skipped:
            parts.append(f"{len(self.skipped)} without an extension skipped")
        text = ", ".join(parts)
        return f"directory sync (dry run, nothing written): {text}" if verb else f"directory sync: {text}"


def _stored_values(raw: str | None) -> dict[str, str | None]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _merge(
    current: dict[str, str | None],
    previous: dict[str, str | None],
    incoming: DirectoryPerson,
    keep_local: Sequence[str],
) -> dict[str, str | None]:
    """The values to store: the directory's, except a kept field edited locally since the last sync."""
    merged: dict[str, str | None] = {}
    for name in FIELDS:
        value = incoming.values.get(name)
        mine = current.get(name)
        edited = name in previous and mine is not None and mine != previous[name]
        merged[name] = mine if name in keep_local and edited else value
    return merged


def sync_employees(
    engine: Engine,
    people: Iterable[DirectoryPerson],
    *,
    keep_local: Sequence[str] = (),
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
) -> SyncResult:
    """Write `people` into `employees` (see the module's description)."""
    now = clock()
    chosen: dict[str, DirectoryPerson] = {}
    skipped: list[str] = []
    for person in sorted(people, key=lambda p: p.dn.lower()):
        if not person.extension or person.extension in chosen:
            skipped.append(person.dn)
            continue
        chosen[person.extension] = person
    created: list[str] = []
    new_rows: list[dict[str, object]] = []
    updated: list[str] = []
    unchanged = 0
    columns = (
        employees.c.extension,
        employees.c.source,
        employees.c.active,
        employees.c.directory_dn,
        employees.c.directory_values,
        *(employees.c[f] for f in FIELDS),
    )
    with engine.connect() as conn:
        transaction = conn.begin()
        rows = {row.extension: row for row in conn.execute(select(*columns))}
        for extension, person in sorted(chosen.items()):
            snapshot = json.dumps(dict(person.values), sort_keys=True)
            row = rows.get(extension)
            if row is None:
                new_rows.append(
                    {
                        "extension": extension,
                        "numbers": "[]",
                        "updated_at": now,
                        "source": "ldap",
                        "active": True,
                        "directory_dn": person.dn,
                        "directory_values": snapshot,
                        **person.values,
                    }
                )
                created.append(extension)
                continue
            current = {f: getattr(row, f) for f in FIELDS}
            values = _merge(current, _stored_values(row.directory_values), person, keep_local)
            if (
                values == current
                and row.source == "ldap"
                and row.active
                and row.directory_dn == person.dn
                and row.directory_values == snapshot
            ):
                unchanged += 1
                continue
            conn.execute(
                update(employees)
                .where(employees.c.extension == extension)
                .values(
                    updated_at=now,
                    source="ldap",
                    active=True,
                    directory_dn=person.dn,
                    directory_values=snapshot,
                    **values,
                )
            )
            updated.append(extension)
        if new_rows:
            conn.execute(insert(employees), new_rows)  # one batched statement
        gone = sorted(
            ext for ext, row in rows.items() if row.source == "ldap" and row.active and ext not in chosen
        )
        for extension in gone:
            conn.execute(
                update(employees)
                .where(employees.c.extension == extension)
                .values(active=False, updated_at=now)
            )
        if dry_run:
            transaction.rollback()
        else:
            transaction.commit()
    return SyncResult(
        created=tuple(created),
        updated=tuple(updated),
        deactivated=tuple(gone),
        unchanged=unchanged,
        skipped=tuple(skipped),
        dry_run=dry_run,
    )


def read_directory(settings: LdapSettings) -> list[DirectoryPerson]:
    """Every person the directory lists under the settings' base and filter (LdapError when it cannot)."""
    with DirectoryClient(settings) as client:
        return [
            person_from_entry(dn, attributes, settings.fields)
            for dn, attributes in client.entries(wanted_attributes(settings.fields))
        ]


def run_sync(
    engine: Engine,
    settings: LdapSettings,
    *,
    trigger: str,
    dry_run: bool = False,
    clock: Callable[[], float] = time.time,
) -> SyncResult:
    """Read the directory and sync, recording the run in `directory_syncs` (not for a dry run). Raises
    LdapError, after recording it, when the directory cannot be read."""
    if not settings.url:  # nothing to record: there is no directory
        raise LdapError("no directory is configured (set ldap.url)")
    if dry_run:
        return sync_employees(
            engine, read_directory(settings), keep_local=settings.keep_local, dry_run=True, clock=clock
        )
    with engine.begin() as conn:
        run_id = conn.execute(
            insert(directory_syncs)
            .values(
                started_at=clock(),
                trigger=trigger,
                state="running",
                created=0,
                updated=0,
                deactivated=0,
                skipped=0,
            )
            .returning(directory_syncs.c.id)
        ).scalar_one()
    try:
        result = sync_employees(engine, read_directory(settings), keep_local=settings.keep_local, clock=clock)
    except LdapError as exc:
        _finish(engine, run_id, clock(), state="failed", error=str(exc))
        raise
    except Exception as exc:
        _finish(engine, run_id, clock(), state="failed", error=f"{type(exc).__name__}: {exc}")
        raise
    _finish(
        engine,
        run_id,
        clock(),
        state="done",
        created=len(result.created),
        updated=len(result.updated),
        deactivated=len(result.deactivated),
        skipped=len(result.skipped),
    )
    return result


def _finish(engine: Engine, run_id: int, now: float, **values: object) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(directory_syncs).where(directory_syncs.c.id == run_id).values(finished_at=now, **values)
        )


def last_runs(engine: Engine, limit: int = 5) -> list[dict[str, object]]:
    """The latest syncs, newest first, for the panel."""
    with engine.connect() as conn:
        rows = conn.execute(select(directory_syncs).order_by(directory_syncs.c.id.desc()).limit(limit))
        return [dict(row._mapping) for row in rows]
