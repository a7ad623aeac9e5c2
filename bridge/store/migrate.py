"""Alembic migrations, applied programmatically on start and by `callbridge db upgrade`.

The core's revisions live in `bridge/store/migrations/versions`; each add-on brings its own branch (a
versions directory and a branch label, `bridge.addons.Migrations`), found through its registration.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, column, insert, inspect, table
from sqlalchemy.types import String

from bridge.addons import AddOn, load_addons

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_alembic_version = table("alembic_version", column("version_num", String(32)))


def alembic_config(engine: Engine, addons: Sequence[AddOn] | None = None) -> Config:
    """Alembic's configuration for `engine`: the core's revisions and every add-on's branch."""
    addons = load_addons() if addons is None else addons
    locations = [MIGRATIONS_DIR / "versions"] + [a.migrations.versions for a in addons if a.migrations]
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(str(p) for p in locations))
    config.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "heads", addons: Sequence[AddOn] | None = None) -> None:
    """Bring the database to `revision` (default: the newest of every branch)."""
    addons = load_addons() if addons is None else addons
    record_split_branches(engine, addons)
    command.upgrade(alembic_config(engine, addons), revision)


def current_heads(engine: Engine) -> set[str]:
    """The applied revisions at the tip of each branch (empty for a new database)."""
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads())


def current_revision(engine: Engine) -> str | None:
    """The applied revision (several joined by commas, one per branch), or None."""
    return ",".join(sorted(current_heads(engine))) or None


def record_split_branches(engine: Engine, addons: Sequence[AddOn]) -> None:
    """Record an add-on branch's base as applied where the core's history implied it.

    Before the add-ons' revisions became branches of their own, they sat in the core's line, so a
    database at one of those revisions (`Migrations.implied_by`) may have applied an add-on's base
    without Alembic's table saying so under the new history; the base's table (`base_table`) tells.
    """
    heads = current_heads(engine)
    if not heads:
        return
    script = ScriptDirectory.from_config(alembic_config(engine, addons))
    applied = {rev.revision for head in heads for rev in script.iterate_revisions(head, "base")}
    tables = set(inspect(engine).get_table_names())
    missing = [
        branch.base
        for branch in (addon.migrations for addon in addons)
        if branch is not None
        and branch.base is not None
        and branch.base not in applied
        and branch.base_table in tables
        and not heads.isdisjoint(branch.implied_by)
    ]
    if missing:
        with engine.begin() as conn:
            conn.execute(insert(_alembic_version), [{"version_num": rev} for rev in missing])
