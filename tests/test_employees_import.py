"""The core's employee import (`bridge.employees`) from the Mango simulator's `config/users/request`:
the service, `callbridge employees import`, and the admin panel's button, all on the real store."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, select, update

from bridge.cli import cli
from bridge.employees import import_employees
from bridge.pbx.mango.client import MangoClient
from bridge.pbx.mango.simulator.command_server import CommandServer
from bridge.store.schema import employees

KEY = "employees-vpbx-key"
SALT = "employees-vpbx-salt-0123456789"


@pytest.fixture
def mango() -> Iterator[CommandServer]:
    with CommandServer(KEY, SALT, rate_limits=False) as server:
        yield server


def rows(engine: Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {r.extension: r._asdict() for r in conn.execute(select(employees))}


def test_import_adds_then_updates_and_reports_what_it_did(engine: Engine, mango: CommandServer) -> None:
    mango.users.append({"general": {"name": "Reception desk"}, "telephony": {"numbers": []}})
    with MangoClient(KEY, SALT, mango.url) as client:
        first = import_employees(engine, client, clock=lambda: 1000.0)
    assert first.added == ("101", "102", "103") and first.updated == () and first.skipped == 1
    stored = rows(engine)
    assert sorted(stored) == ["101", "102", "103"]
    assert stored["101"]["email"] == "user101@example.com"
    assert stored["101"]["updated_at"] == 1000.0
    assert json.loads(stored["101"]["numbers"])  # the employee's ringing numbers, as Mango lists them

    mango.users[0]["general"]["name"] = "Renamed"
    removed = mango.users.pop(2)
    with engine.begin() as conn:  # a row Mango never listed: kept, reported
        conn.execute(update(employees).where(employees.c.extension == "103").values(name="Old"))
    with MangoClient(KEY, SALT, mango.url) as client:
        second = import_employees(engine, client, clock=lambda: 2000.0)
    assert second.added == () and second.updated == ("101",) and second.unchanged == 1  # 102: as it was
    assert second.stale == (str(removed["telephony"]["extension"]),)
    assert second.total == 1
    stored = rows(engine)
    assert stored["101"]["name"] == "Renamed" and stored["101"]["updated_at"] == 2000.0
    assert stored["102"]["updated_at"] == 1000.0  # nothing changed, nothing written
    assert stored["103"]["name"] == "Old"
    assert "0 new and 1 changed employee(s) imported from Mango; 1 already up to date" in second.words()
    assert "no longer in Mango (kept): 103" in second.words()

    with MangoClient(KEY, SALT, mango.url) as client:
        third = import_employees(engine, client, clock=lambda: 3000.0)
    assert (third.added, third.updated, third.unchanged) == ((), (), 2)
    assert third.words().startswith("nothing to import from Mango; 2 already up to date")
    assert {row["updated_at"] for row in rows(engine).values()} == {1000.0, 2000.0}


def invoke(database_url: str, *args: str, **env: str) -> tuple[int, str]:
    base = {"CALLBRIDGE_DATABASE_URL": database_url, "CALLBRIDGE_CONFIG": ""}
    result = CliRunner().invoke(cli, list(args), env={**base, **env}, catch_exceptions=False)
    return result.exit_code, result.output


def test_cli_command_imports_into_the_store(engine: Engine, database_url: str, mango: CommandServer) -> None:
    code, out = invoke(
        database_url,
        "employees",
        "import",
        CALLBRIDGE_MANGO_API_KEY=KEY,
        CALLBRIDGE_MANGO_API_SALT=SALT,
        CALLBRIDGE_MANGO_API_URL=mango.url,
    )
    assert code == 0, out
    assert out.splitlines()[0] == "3 new and 0 changed employee(s) imported from Mango."
    assert "  + 101" in out and "  + 103" in out
    assert sorted(rows(engine)) == ["101", "102", "103"]
    assert SALT not in out


def test_cli_command_says_what_is_missing_or_wrong(
    engine: Engine, database_url: str, mango: CommandServer
) -> None:
    code, out = invoke(
        database_url, "employees", "import", CALLBRIDGE_MANGO_API_KEY="", CALLBRIDGE_MANGO_API_SALT=""
    )
    assert code == 1 and "Mango is not configured" in out
    code, out = invoke(
        database_url,
        "employees",
        "import",
        CALLBRIDGE_MANGO_API_KEY=KEY,
        CALLBRIDGE_MANGO_API_SALT="the-wrong-salt-0123456789",
        CALLBRIDGE_MANGO_API_URL=mango.url,
    )
    assert code == 1 and "could not get the employee list from Mango:" in out
    assert "the-wrong-salt" not in out
    assert rows(engine) == {}
