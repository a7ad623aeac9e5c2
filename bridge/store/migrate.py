"""Alembic migrations, applied programmatically on start and by `callbridge db upgrade`.

The core's revisions live in `bridge/store/migrations/versions`. Each add-on brings its own branch (a
versions directory whose revisions carry the add-on's branch label): a `Migrations` registered under the
entry point group ``callbridge.migrations``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, column, insert, inspect, table, text
from sqlalchemy.types import String

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
ENTRY_POINT_GROUP = "callbridge.migrations"
_alembic_version = table("alembic_version", column("version_num", String(32)))


@dataclass(frozen=True)
class Migrations:
    """An add-on's Alembic branch: the directory of its revision scripts, labelled with its own branch.

    `base`, `base_table` and `implied_by` are for databases migrated while the branch's first revision was
    still part of the core's line: where a head is one of the revisions in `implied_by` and `base_table`
    (a table `base` creates) exists, `base` was applied, and `record_split_branches` records it so.
    """

    versions: Path
    base: str | None = None
    base_table: str | None = None
    implied_by: frozenset[str] = frozenset()


def addon_branches() -> list[Migrations]:
    """Every installed add-on's branch, by entry point name."""
    found: dict[str, Migrations] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        value = ep.load()
        if not isinstance(value, Migrations):
            raise TypeError(f"{ENTRY_POINT_GROUP} entry point {ep.name!r} ({ep.value}) is not a Migrations")
        found.setdefault(ep.name, value)
    return [found[name] for name in sorted(found)]


def alembic_config(engine: Engine, branches: Sequence[Migrations] | None = None) -> Config:
    """Alembic's configuration for `engine`: the core's revisions and every add-on's branch."""
    branches = addon_branches() if branches is None else branches
    locations = [MIGRATIONS_DIR / "versions"] + [branch.versions for branch in branches]
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(str(p) for p in locations))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    config.attributes["engine"] = engine
    return config


# pg_advisory_lock key taken while migrating (an arbitrary constant: "callbridge" in ASCII, folded).
MIGRATION_LOCK_KEY = 0x63616C6C62726964


def upgrade(engine: Engine, revision: str = "heads", branches: Sequence[Migrations] | None = None) -> None:
    """Bring the database to `revision` (default: the newest of every branch; `branches=[]`: the core's).

    On PostgreSQL, instances starting together take turns (an advisory lock): the second finds the work
    done instead of creating the same tables at the same time."""
    branches = addon_branches() if branches is None else branches
    with _migration_lock(engine):
        record_split_branches(engine, branches)
        command.upgrade(alembic_config(engine, branches), revision)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Held while migrating: a session-level advisory lock on PostgreSQL; SQLite has one process."""
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as conn:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})


def current_heads(engine: Engine) -> set[str]:
    """The applied revisions at the tip of each branch (empty for a new database)."""
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def current_revision(engine: Engine) -> str | None:
    """The applied revision (several joined by commas, one per branch), or None."""
    return ",".join(sorted(current_heads(engine))) or None


def record_split_branches(engine: Engine, branches: Sequence[Migrations]) -> None:
    """Record an add-on branch's base as applied where the core's history implied it.

    Before the add-ons' revisions became branches of their own, they sat in the core's line, so a
    database at one of those revisions (`Migrations.implied_by`) may have applied an add-on's base
    without Alembic's table saying so under the new history; the base's table (`base_table`) tells.
    """
    heads = current_heads(engine)
    if not heads:
        return
    script = ScriptDirectory.from_config(alembic_config(engine, branches))
    applied = {rev.revision for head in heads for rev in script.iterate_revisions(head, "base")}
    tables = set(inspect(engine).get_table_names())
    missing = [
        branch.base
        for branch in branches
        if branch.base is not None
        and branch.base not in applied
        and branch.base_table in tables
        and not heads.isdisjoint(branch.implied_by)
    ]
    if missing:
        with engine.begin() as conn:
            conn.execute(insert(_alembic_version), [{"version_num": rev} for rev in missing])
