"""The store: migrations on both backends, the connector state's compare-and-set, the employee map."""

from __future__ import annotations

import threading

from click.testing import CliRunner
from sqlalchemy import Engine, inspect

from bridge.cli import cli
from bridge.connector_api.employees import EmployeeMapping, EmployeeResolver
from bridge.store.connector_state import SqlStateStore
from bridge.store.migrate import current_revision, upgrade
from bridge.store.schema import metadata


def test_migrations_create_every_table_and_are_idempotent(engine: Engine) -> None:
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    assert set(metadata.tables) <= tables
    assert current_revision(engine) is not None


def test_db_upgrade_command(database_url: str) -> None:
    result = CliRunner().invoke(cli, ["db", "upgrade"], env={"CALLBRIDGE_DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    assert "database at revision" in result.output


def test_compare_and_set_lets_exactly_one_writer_win(engine: Engine) -> None:
    store = SqlStateStore(engine, "oauth-test")
    version = store.compare_and_set("refresh_token", "first", None)
    assert version == 1
    winners: list[str] = []
    barrier = threading.Barrier(4)

    def rotate(name: str) -> None:
        barrier.wait()
        if store.compare_and_set("refresh_token", name, 1) is not None:
            winners.append(name)

    threads = [threading.Thread(target=rotate, args=(f"t{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert store.get("refresh_token") == (winners[0], 2)
    assert SqlStateStore(engine, "other").get("refresh_token") is None


def test_employee_resolver_prefers_config_then_import_then_policy(engine: Engine) -> None:
    state = SqlStateStore(engine, "crm")
    resolver = EmployeeResolver(EmployeeMapping(users={"101": "7"}, unmapped="skip"), state)
    resolver.save_imported({"101": "99", "102": "8"})
    assert resolver.user_for("101") == "7"
    assert resolver.user_for("102") == "8"
    assert resolver.user_for("103") is None
    assert resolver.extension_for("8") == "102"
    fallback = EmployeeResolver(EmployeeMapping(unmapped="default", default_user="1"), state)
    assert fallback.user_for("555") == "1"
