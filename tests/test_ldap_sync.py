"""Employees from a real OpenLDAP slapd: the first sync, a change, a removal, a dry run, a local edit kept,
people without an extension skipped, LDAPS and StartTLS, and the errors in plain words (never the
password). The command line: `callbridge employees sync-ldap [--dry-run]` and `employees list [--json]`."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from bridge.cli import cli
from bridge.config.model import LdapSettings
from bridge.employees import list_employees
from bridge.ldap import DirectoryClient, LdapError
from bridge.ldap.sync import last_runs, read_directory, run_sync, sync_employees
from tests.ldap_server import SERVICE_DN, SERVICE_PASSWORD, LdapServer, slapd  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
_units = itertools.count(1)

FIELDS = {
    "extension": "telephoneNumber",
    "name": "displayName",
    "email": "mail",
    "department": "departmentNumber",
    "position": "title",
}


@pytest.fixture
def unit(slapd: LdapServer) -> str:  # noqa: F811
    """A unit of its own under ou=people for one test."""
    return slapd.add_unit(f"sync{next(_units)}")


def settings_for(slapd: LdapServer, base: str, **overrides: object) -> LdapSettings:  # noqa: F811
    values: dict[str, object] = {
        "url": slapd.ldaps_url,
        "ca_file": slapd.ca_file,
        "bind_dn": SERVICE_DN,
        "password": SERVICE_PASSWORD,
        "base_dn": base,
        "filter": "(objectClass=inetOrgPerson)",
        "fields": FIELDS,
        "page_size": 2,  # several pages even for a handful of people
    }
    values.update(overrides)
    return LdapSettings.model_validate(values)


def by_extension(engine: Engine) -> dict[str, dict[str, object]]:
    return {str(row["extension"]): row for row in list_employees(engine)}


def test_first_sync_change_and_removal(slapd: LdapServer, unit: str, engine: Engine) -> None:  # noqa: F811
    anna = slapd.add_person(
        "anna",
        name="Anna Smirnova",
        extension="101",
        email="anna@example.com",
        department="Sales",
        position="Manager",
        base=unit,
    )
    slapd.add_person("boris", name="Boris Ivanov", extension="102", base=unit)
    nobody = slapd.add_person("clara", name="Clara No-Phone", base=unit)
    settings = settings_for(slapd, unit)

    first = run_sync(engine, settings, trigger="cli")
    assert first.created == ("101", "102") and not first.updated and not first.deactivated
    assert first.skipped == (nobody,)
    people = by_extension(engine)
    assert people["101"] == {
        "extension": "101",
        "name": "Anna Smirnova",
        "email": "anna@example.com",
        "department": "Sales",
        "position": "Manager",
        "source": "ldap",
        "active": True,
    }

    slapd.modify(anna, title="Head of sales")
    slapd.modify(f"uid=boris,{unit}", telephoneNumber=None)  # no extension any more
    second = run_sync(engine, settings, trigger="cli")
    assert second.updated == ("101",) and second.deactivated == ("102",) and not second.created
    people = by_extension(engine)
    assert people["101"]["position"] == "Head of sales"
    assert people["102"]["active"] is False and people["102"]["name"] == "Boris Ivanov"  # kept, not deleted

    slapd.delete(anna)
    third = run_sync(engine, settings, trigger="cli")
    assert third.deactivated == ("101",)
    assert by_extension(engine)["101"]["active"] is False

    runs = last_runs(engine)
    assert [r["state"] for r in runs] == ["done", "done", "done"]
    assert (runs[0]["deactivated"], runs[2]["created"], runs[2]["skipped"]) == (1, 2, 1)


def test_no_changes_write_nothing_and_dry_run(slapd: LdapServer, unit: str, engine: Engine) -> None:  # noqa: F811
    slapd.add_person("dima", name="Dima", extension="201", base=unit)
    settings = settings_for(slapd, unit)
    dry = run_sync(engine, settings, trigger="cli", dry_run=True)
    assert dry.created == ("201",) and dry.dry_run and "dry run" in dry.words()
    assert list_employees(engine) == [] and last_runs(engine) == []
    run_sync(engine, settings, trigger="cli")
    again = run_sync(engine, settings, trigger="cli")
    assert (again.created, again.updated, again.deactivated, again.unchanged) == ((), (), (), 1)


def test_a_local_edit_wins_where_the_settings_say(slapd: LdapServer, unit: str, engine: Engine) -> None:  # noqa: F811
    from sqlalchemy import update

    from bridge.store.schema import employees

    dn = slapd.add_person("egor", name="Egor", extension="301", position="Clerk", base=unit)
    settings = settings_for(slapd, unit, keep_local=["name"])
    run_sync(engine, settings, trigger="cli")
    with engine.begin() as conn:
        conn.execute(
            update(employees).where(employees.c.extension == "301").values(name="Egor (night shift)")
        )
    slapd.modify(dn, displayName="Egor Petrov", title="Senior clerk")
    run_sync(engine, settings, trigger="cli")
    row = by_extension(engine)["301"]
    assert (row["name"], row["position"]) == ("Egor (night shift)", "Senior clerk")
    run_sync(engine, settings_for(slapd, unit), trigger="cli")  # not kept: the directory wins
    assert by_extension(engine)["301"]["name"] == "Egor Petrov"


def test_mango_rows_are_taken_over_and_others_left(slapd: LdapServer, unit: str, engine: Engine) -> None:  # noqa: F811
    from bridge.employees import store_employees
    from bridge.pbx.port import PbxUser

    store_employees(
        engine,
        [
            PbxUser(
                user_id="1",
                name="Old name",
                extension="401",
                email=None,
                department=None,
                position=None,
                numbers=(),
            ),
            PbxUser(
                user_id="2",
                name="Mango only",
                extension="402",
                email=None,
                department=None,
                position=None,
                numbers=(),
            ),
        ],
    )
    slapd.add_person("fedor", name="Fedor", extension="401", base=unit)
    result = sync_employees(engine, read_directory(settings_for(slapd, unit)))
    assert result.updated == ("401",) and not result.deactivated
    people = by_extension(engine)
    assert (people["401"]["name"], people["401"]["source"]) == ("Fedor", "ldap")
    assert (people["402"]["source"], people["402"]["active"]) == ("mango", True)


def test_starttls_and_ldaps(slapd: LdapServer, unit: str) -> None:  # noqa: F811
    slapd.add_person("gleb", name="Gleb", extension="501", base=unit)
    for settings in (
        settings_for(slapd, unit),
        settings_for(slapd, unit, url=slapd.url, start_tls=True),
    ):
        assert [p.extension for p in read_directory(settings)] == ["501"]
        with DirectoryClient(settings) as client:
            assert client.check().endswith(": 1 entries")


def test_errors_in_plain_words(slapd: LdapServer, unit: str) -> None:  # noqa: F811
    from tests.daemon import free_port

    cases = [
        (settings_for(slapd, unit, password="wrong-password-42"), f"bind refused for {SERVICE_DN}"),
        (settings_for(slapd, unit, ca_file=""), "TLS certificate of " + slapd.ldaps_url + " is not trusted"),
        (settings_for(slapd, unit, url=slapd.url, start_tls=True, ca_file=""), "not trusted"),
        (
            settings_for(slapd, unit, url=f"ldaps://127.0.0.1:{free_port()}"),
            "cannot reach the directory server",
        ),
        (settings_for(slapd, unit, url=slapd.url), "is not encrypted"),
        (
            settings_for(slapd, unit, filter="(objectClass=inetOrgPerson"),
            "filter '(objectClass=inetOrgPerson' is invalid",
        ),
        (settings_for(slapd, unit, base_dn=f"ou=nowhere,{unit}"), "searching ou=nowhere"),
    ]
    for settings, words in cases:
        with pytest.raises(LdapError) as caught:
            read_directory(settings)
        message = str(caught.value)
        assert words in message, message
        assert settings.password.get_secret_value() not in message


def test_plain_ldap_when_allowed(slapd: LdapServer, unit: str) -> None:  # noqa: F811
    slapd.add_person("hana", name="Hana", extension="601", base=unit)
    settings = settings_for(slapd, unit, url=slapd.url, allow_plain=True, ca_file="")
    assert [p.extension for p in read_directory(settings)] == ["601"]


@pytest.fixture
def cli_env(slapd: LdapServer, unit: str, database_url: str) -> Iterator[dict[str, str]]:  # noqa: F811
    yield {
        "CALLBRIDGE_DATABASE_URL": database_url,
        "CALLBRIDGE_LDAP_URL": slapd.ldaps_url,
        "CALLBRIDGE_LDAP_CA_FILE": slapd.ca_file,
        "CALLBRIDGE_LDAP_BIND_DN": SERVICE_DN,
        "CALLBRIDGE_LDAP_PASSWORD": SERVICE_PASSWORD,
        "CALLBRIDGE_LDAP_BASE_DN": unit,
        "CALLBRIDGE_LDAP_FILTER": "(objectClass=inetOrgPerson)",
        "CALLBRIDGE_LDAP_FIELDS": json.dumps(FIELDS),
    }


def test_the_command_line(slapd: LdapServer, unit: str, cli_env: dict[str, str]) -> None:  # noqa: F811
    slapd.add_person("ira", name="Ira", extension="701", email="ira@example.com", base=unit)
    slapd.add_person("kim", name="Kim", base=unit)
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"], env=cli_env).exit_code == 0

    dry = runner.invoke(cli, ["employees", "sync-ldap", "--dry-run"], env=cli_env)
    assert dry.exit_code == 0, dry.output
    assert "dry run, nothing written): 1 created" in dry.output and "+ 701" in dry.output
    listed = runner.invoke(cli, ["employees", "list", "--json"], env=cli_env)
    assert json.loads(listed.output) == []

    done = runner.invoke(cli, ["employees", "sync-ldap"], env=cli_env)
    assert done.exit_code == 0, done.output
    assert "directory sync: 1 created, 0 updated, 0 deactivated" in done.output
    assert f"uid=kim,{unit}" in done.output
    listed = runner.invoke(cli, ["employees", "list", "--json"], env=cli_env)
    assert json.loads(listed.output) == [
        {
            "extension": "701",
            "name": "Ira",
            "email": "ira@example.com",
            "department": None,
            "position": None,
            "source": "ldap",
            "active": True,
        }
    ]
    table = runner.invoke(cli, ["employees", "list"], env=cli_env).output
    assert table.splitlines()[0].split() == [
        "extension",
        "name",
        "email",
        "department",
        "position",
        "source",
        "active",
    ]
    assert "ira@example.com" in table and "ldap" in table

    unset = runner.invoke(cli, ["employees", "sync-ldap"], env={**cli_env, "CALLBRIDGE_LDAP_URL": ""})
    assert unset.exit_code == 1 and "no directory is configured (set ldap.url)" in unset.output

    refused = runner.invoke(
        cli, ["employees", "sync-ldap"], env={**cli_env, "CALLBRIDGE_LDAP_PASSWORD": "not-the-password"}
    )
    assert refused.exit_code == 1
    assert f"directory sync failed: bind refused for {SERVICE_DN}" in refused.output
    assert "not-the-password" not in refused.output
