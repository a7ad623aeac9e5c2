"""Panel sign-in with directory accounts against a real slapd (`ldap.login`): each of Mango's roles from
its group, enforced on the pages (403 otherwise); no mapped group, a wrong or empty password refused; a
local user of the same name keeps their own account; a user taken out of their group loses access at the
next sync; the Employees page shows who has which role and where it came from, and "Sync now"."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, select

from admin_module.directory_sync import DirectorySync
from admin_module.tables import admin_users
from admin_module.users import create_user, set_teams
from bridge.config.model import LdapSettings
from bridge.ldap.sync import last_runs
from bridge.pbx.port import PbxGroup
from tests.ldap_server import SERVICE_DN, SERVICE_PASSWORD, LdapServer, slapd  # noqa: F401
from tests.test_admin_support import PASSWORD, add_call, csrf_of, login, make_app

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
_units = itertools.count(1)
USER_PASSWORD = "directory pass 1"

# Which pages each role may open (200) and which it may not (403).
ACCESS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "admin": (("/admin/calls", "/admin/settings", "/admin/employees", "/admin/widget"), ()),
    "employee": (
        ("/admin/calls", "/admin/missed", "/admin/callbacks"),
        ("/admin/stats", "/admin/widget", "/admin/settings", "/admin/employees"),
    ),
    "team_leader": (
        ("/admin/calls", "/admin/stats", "/admin/callbacks"),
        ("/admin/widget", "/admin/settings", "/admin/employees", "/admin/connectors"),
    ),
    "marketer": (
        ("/admin/stats", "/admin/callbacks", "/admin/widget"),
        (
            "/admin/calls",
            "/admin/missed",
            "/admin/settings",
            "/admin/history",
            "/admin/employees",
            "/admin/recordings/any",
            "/admin/quarantine",
        ),
    ),
    "accountant": (
        ("/admin/calls", "/admin/stats", "/admin/callbacks"),
        ("/admin/widget", "/admin/settings", "/admin/employees"),
    ),
}


@dataclass
class Directory:
    server: LdapServer
    unit: str
    groups: dict[str, str]  # role -> group DN
    people: dict[str, str]  # uid -> DN

    def settings(self, **overrides: Any) -> dict[str, Any]:
        values: dict[str, Any] = {
            "url": self.server.ldaps_url,
            "ca_file": self.server.ca_file,
            "bind_dn": SERVICE_DN,
            "password": SERVICE_PASSWORD,
            "base_dn": self.unit,
            "filter": "(objectClass=inetOrgPerson)",
            "fields": {"extension": "telephoneNumber", "name": "displayName"},
            "login": True,
            "roles": {dn: role for role, dn in self.groups.items()},
        }
        values.update(overrides)
        return values


@pytest.fixture(scope="module")
def directory(slapd: LdapServer) -> Directory:  # noqa: F811
    unit = slapd.add_unit("login")
    groups_unit = slapd.add_unit("login-groups", parent=unit.split(",", 1)[1].split(",", 1)[1])
    people = {}
    for number, role in enumerate(ACCESS, start=1):
        uid = f"d-{role.replace('_', '-')}"
        people[uid] = slapd.add_person(
            uid, name=f"{role.title()} Person", extension=f"20{number}", password=USER_PASSWORD, base=unit
        )
    people["d-nogroup"] = slapd.add_person("d-nogroup", name="No Group", password=USER_PASSWORD, base=unit)
    groups = {}
    for role in ACCESS:
        dn = f"cn=cb-{role},{groups_unit}"
        with slapd.admin() as conn:
            conn.add(
                dn, ["groupOfNames"], {"cn": f"cb-{role}", "member": [people[f"d-{role.replace('_', '-')}"]]}
            )
        groups[role] = dn
    return Directory(slapd, unit, groups, people)


class _Roster:
    """Mango's groups for the team leader: group 10 has 201 and 203, group 20 has 204."""

    def groups(self) -> list[PbxGroup]:
        return [PbxGroup("10", "Sales", "510", ("201", "203")), PbxGroup("20", "Support", "520", ("204",))]

    def close(self) -> None:
        pass


@pytest.fixture
def app(engine: Engine, directory: Directory) -> Iterator[Flask]:
    application = make_app(
        engine, sections={"ldap": directory.settings()}, client_factory=lambda settings: _Roster()
    )
    application.config["TESTING"] = False
    yield application


def test_each_role_from_its_group(app: Flask, engine: Engine) -> None:
    for role, (allowed, refused) in ACCESS.items():
        client = app.test_client()
        done = login(client, f"d-{role.replace('_', '-')}", USER_PASSWORD)
        assert done.status_code == 302, (role, done.text)
        for path in allowed:
            assert client.get(path).status_code == 200, (role, path)
        for path in refused:
            assert client.get(path).status_code == 403, (role, path)
    with engine.connect() as conn:
        rows = {r.username: r for r in conn.execute(select(admin_users))}
    assert rows["d-team-leader"].role == "team_leader" and rows["d-team-leader"].source == "ldap"


def test_refused_without_a_group_or_the_password(app: Flask, engine: Engine) -> None:
    client = app.test_client()
    assert login(client, "d-nogroup", USER_PASSWORD).status_code == 401
    assert login(client, "d-admin", "wrong password").status_code == 401
    assert login(client, "d-admin", "").status_code in (400, 401)
    assert login(client, "nobody-here", USER_PASSWORD).status_code == 401
    with engine.connect() as conn:
        names = {r.username for r in conn.execute(select(admin_users.c.username))}
    assert "d-nogroup" not in names and "nobody-here" not in names


def test_local_users_keep_working_and_win(app: Flask, engine: Engine) -> None:
    create_user(engine, "d-admin", PASSWORD, "manager", lang="en", extension="109")  # the old role name
    client = app.test_client()
    assert login(client, "d-admin", USER_PASSWORD).status_code == 401  # not taken over by the directory
    assert login(client, "d-admin", PASSWORD).status_code == 302
    assert client.get("/admin/calls").status_code == 200
    assert client.get("/admin/settings").status_code == 403  # `manager` is an employee


def test_directory_sign_in_off(engine: Engine, directory: Directory) -> None:
    app = make_app(engine, sections={"ldap": directory.settings(login=False)})
    assert login(app.test_client(), "d-admin", USER_PASSWORD).status_code == 401


def test_directory_down_is_said_in_words(engine: Engine, directory: Directory) -> None:
    from tests.daemon import free_port

    app = make_app(engine, sections={"ldap": directory.settings(url=f"ldaps://127.0.0.1:{free_port()}")})
    page = login(app.test_client(), "d-admin", USER_PASSWORD)
    assert page.status_code == 503 and "Каталог компании недоступен" in page.text
    assert SERVICE_PASSWORD not in page.text


def test_a_team_leader_sees_their_groups_calls(app: Flask, engine: Engine) -> None:
    add_call(engine, "team-own", answered_by="205", extensions=["205"])
    add_call(engine, "team-member", answered_by="201", extensions=["201"])
    add_call(engine, "team-other", answered_by="299", extensions=["299"])
    client = app.test_client()
    assert login(client, "d-team-leader", USER_PASSWORD).status_code == 302
    set_teams(engine, "d-team-leader", ["Sales"])
    assert client.get("/admin/calls/team-member").status_code == 200
    assert client.get("/admin/calls/team-other").status_code == 403
    assert "team-member" in client.get("/admin/calls?employee=201").text
    assert "team-other" not in client.get("/admin/calls?employee=299").text
    missed = client.get("/admin/missed")
    assert missed.status_code == 200


def test_losing_the_group_ends_access_at_the_next_sync(
    engine: Engine,
    directory: Directory,
    slapd: LdapServer,  # noqa: F811
) -> None:
    app = make_app(engine, sections={"ldap": directory.settings()})
    client = app.test_client()
    assert login(client, "d-marketer", USER_PASSWORD).status_code == 302
    assert client.get("/admin/stats").status_code == 200
    settings = LdapSettings.model_validate(directory.settings())
    slapd.set_members(directory.groups["marketer"], [])
    try:
        DirectorySync(engine, lambda: settings).run("schedule")
        assert client.get("/admin/stats").status_code == 302  # the session ended: back to the login form
        assert login(app.test_client(), "d-marketer", USER_PASSWORD).status_code == 401
        with engine.connect() as conn:
            row = conn.execute(select(admin_users).where(admin_users.c.username == "d-marketer")).one()
        assert row.disabled and row.role_source == ""
    finally:
        slapd.set_members(directory.groups["marketer"], [directory.people["d-marketer"]])
    assert login(app.test_client(), "d-marketer", USER_PASSWORD).status_code == 302  # back in the group
    assert last_runs(engine)[0]["state"] == "done"


def test_the_employees_page(app: Flask, engine: Engine) -> None:
    client = app.test_client()
    assert login(client, "d-employee", USER_PASSWORD).status_code == 302
    create_user(engine, "local-admin", PASSWORD, "admin", lang="en")
    admin = app.test_client()
    assert login(admin, "local-admin").status_code == 302
    page = admin.get("/admin/employees")
    assert page.status_code == 200
    assert 'data-user="d-employee" data-role="employee"' in page.text
    assert "directory group cn=cb-employee" in page.text and "set in callbridge" in page.text
    started = admin.post(
        "/admin/employees/sync-ldap",
        data={"csrf_token": csrf_of(page.text)},
        headers={"Accept": "application/json"},
    )
    assert started.status_code in (202, 409)
    for _ in range(200):
        status = admin.get("/admin/employees/sync-ldap.json").get_json()
        if not status["running"] and status["last"] and status["last"]["state"] != "running":
            break
        time.sleep(0.05)
    assert status["last"]["state"] == "done" and status["last"]["created"] == 5
    page = admin.get("/admin/employees").text
    assert 'id="directory-runs"' in page and 'data-extension="201"' in page
    assert client.get("/admin/employees/sync-ldap.json").status_code == 403
    tested = admin.post(
        "/admin/employees/test-ldap", data={"csrf_token": csrf_of(page)}, follow_redirects=True
    ).text
    assert f"as {SERVICE_DN}: 6 entries" in tested
    assert login(app.test_client(), "d-employee", USER_PASSWORD).status_code == 302  # the synced extension
    with engine.connect() as conn:
        extension = conn.execute(
            select(admin_users.c.extension).where(admin_users.c.username == "d-employee")
        )
        assert extension.scalar() == "202"


def test_the_operator_page_takes_directory_accounts(engine: Engine, directory: Directory) -> None:
    from bridge.config import Settings
    from bridge.ingest.writer import GroupCommitWriter
    from bridge.ldap.sync import run_sync
    from bridge.web.app import create_app

    run_sync(engine, LdapSettings.model_validate(directory.settings()), trigger="cli")  # the extensions
    settings = Settings.model_validate({"security": {"secret_key": "s" * 48}, "ldap": directory.settings()})
    writer = GroupCommitWriter(engine)
    try:
        client = create_app(settings, engine, writer).test_client()
        answer = client.post("/operator/login", data={"username": "d-employee", "password": USER_PASSWORD})
        assert answer.status_code == 303
        identity = client.get("/operator/api/session").json["identity"]
        assert (identity["role"], identity["extension"]) == ("employee", "202")
        refused = client.post("/operator/login", data={"username": "d-nogroup", "password": USER_PASSWORD})
        assert refused.status_code == 401
    finally:
        writer.stop()
