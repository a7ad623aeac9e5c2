"""Migrations: the core's line and one Alembic branch per add-on, on SQLite and PostgreSQL.

A new database gets every table the code defines; the core alone migrates without its add-ons; and
databases migrated while the add-ons' first revisions were still in the core's line (at any point of it)
upgrade to the branched history without touching what they have.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, delete, inspect

from bridge.addons import load_addon_tables
from bridge.store.engine import make_engine
from bridge.store.migrate import Migrations, _alembic_version, addon_branches, current_heads, upgrade
from bridge.store.schema import admin_settings, metadata

HEADS = {"0012", "a003", "w002"}
WIDGET_TABLES = {"widget_sites", "widget_requests", "widget_hits", "widget_blocklist", "widget_form_tokens"}
ADMIN_TABLES = {"admin_users", "admin_login_failures", "admin_sessions", "admin_login_limits"}


@pytest.fixture
def empty(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _indexes(engine: Engine, table: str) -> set[str]:
    return {index["name"] for index in inspect(engine).get_indexes(table)}


def _schema_differences(engine: Engine) -> list[object]:
    load_addon_tables()
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn), metadata))


def _branches() -> list[Migrations]:
    branches = addon_branches()
    assert {b.base for b in branches} == {"a001", "w001"}
    return branches


def test_a_new_database_gets_every_table_and_index_the_code_defines(empty: Engine) -> None:
    upgrade(empty)
    assert current_heads(empty) == HEADS
    assert _schema_differences(empty) == []
    upgrade(empty)  # again: nothing to do
    assert current_heads(empty) == HEADS


def test_instances_starting_together_migrate_one_after_the_other(empty: Engine, database_url: str) -> None:
    """Two callbridge instances on one PostgreSQL database start at the same moment: both come up and the
    schema is made once."""
    if empty.dialect.name != "postgresql":
        pytest.skip("instances share a database on PostgreSQL only (SQLite is the single-process mode)")
    engines = [make_engine(database_url) for _ in range(2)]
    start = threading.Barrier(len(engines))
    failures: list[BaseException] = []

    def migrate(engine: Engine) -> None:
        start.wait()
        try:
            upgrade(engine)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=migrate, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for engine in engines:
        engine.dispose()
    assert failures == []
    assert current_heads(empty) == HEADS
    assert _schema_differences(empty) == []


def test_the_core_migrates_without_its_add_ons_and_they_join_later(empty: Engine) -> None:
    upgrade(empty, branches=[])
    assert current_heads(empty) == {"0012"}
    tables = _tables(empty)
    assert "admin_settings" in tables and "ix_legs_command" in _indexes(empty, "legs")
    assert not tables & (WIDGET_TABLES | ADMIN_TABLES)
    with empty.begin() as conn:  # the core's saved settings work without the panel
        conn.execute(admin_settings.insert().values(key="mango.api_url", value='"x"', updated_at=1.0))
    upgrade(empty, branches=_branches())
    assert current_heads(empty) == HEADS
    assert _tables(empty) >= WIDGET_TABLES | ADMIN_TABLES
    assert _schema_differences(empty) == []


def _as_before_the_split(engine: Engine, applied: list[str], recorded: set[str]) -> None:
    """A database as the single-line history left it: `applied` revisions run (and what the add-ons'
    first revisions made for the core then), with only `recorded` in Alembic's table."""
    for revision in applied:
        upgrade(engine, revision, branches=_branches())
    if {"w001", "w002"} & set(applied):
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE INDEX ix_legs_command ON legs (command_id)")
    if {"a001", "a002"} & set(applied):
        admin_settings.create(engine)
    with engine.begin() as conn:
        conn.execute(delete(_alembic_version))
        conn.execute(_alembic_version.insert(), [{"version_num": rev} for rev in sorted(recorded)])


@pytest.mark.parametrize(
    ("applied", "recorded"),
    [
        (["h001", "w001", "a001"], {"h001"}),  # 0001 0002 w001 a001 h001, one line
        (["a001", "w001"], {"a001"}),
        (["w001"], {"w001"}),
        (["0004", "w001", "a001"], {"0004"}),
        (["0006", "0005", "w002", "a002"], {"0006", "0005", "w002", "a002"}),  # the last heads before
    ],
    ids=["at-h001", "at-a001", "at-w001", "at-0004", "at-the-old-heads"],
)
def test_a_database_from_before_the_split_upgrades_in_place(
    empty: Engine, applied: list[str], recorded: set[str]
) -> None:
    _as_before_the_split(empty, applied, recorded)
    saved = [("admin.softphone", "true", 1.0)] if "admin_settings" in _tables(empty) else []
    with empty.begin() as conn:
        for key, value, at in saved:
            conn.execute(admin_settings.insert().values(key=key, value=value, updated_at=at))
    upgrade(empty)
    assert current_heads(empty) == HEADS
    assert _schema_differences(empty) == []
    with empty.connect() as conn:  # nothing it had was dropped or made again
        assert conn.execute(admin_settings.select()).all() == saved
