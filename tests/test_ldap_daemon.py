"""`callbridge run` syncs the directory on its own: the first sync at start (none was ever run), recorded
for the Employees page, over both stores."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.store.engine import make_engine
from bridge.store.schema import directory_syncs, employees
from tests.daemon import Daemon
from tests.ldap_server import SERVICE_DN, SERVICE_PASSWORD, LdapServer, slapd  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_the_daemon_syncs_on_schedule(
    slapd: LdapServer,  # noqa: F811
    database_url: str,
    tmp_path: Path,
) -> None:
    unit = slapd.add_unit(f"daemon-{time.monotonic_ns()}")
    slapd.add_person("lena", name="Lena", extension="801", base=unit)
    env = {
        "CALLBRIDGE_LDAP_URL": slapd.ldaps_url,
        "CALLBRIDGE_LDAP_CA_FILE": slapd.ca_file,
        "CALLBRIDGE_LDAP_BIND_DN": SERVICE_DN,
        "CALLBRIDGE_LDAP_PASSWORD": SERVICE_PASSWORD,
        "CALLBRIDGE_LDAP_BASE_DN": unit,
        "CALLBRIDGE_LDAP_FILTER": "(objectClass=inetOrgPerson)",
        "CALLBRIDGE_LDAP_FIELDS": json.dumps({"extension": "telephoneNumber", "name": "displayName"}),
        "CALLBRIDGE_LDAP_SYNC_MINUTES": "60",
    }
    daemon = Daemon(database_url, tmp_path, env=env).start()
    engine = make_engine(database_url)
    try:
        deadline = time.monotonic() + 20
        runs: list = []
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                runs = conn.execute(select(directory_syncs)).all()
            if runs and runs[0].state != "running":
                break
            time.sleep(0.1)
        assert [(r.trigger, r.state, r.created) for r in runs] == [("schedule", "done", 1)]
        with engine.connect() as conn:
            row = conn.execute(select(employees).where(employees.c.extension == "801")).one()
        assert (row.name, row.source, row.active) == ("Lena", "ldap", True)
        assert SERVICE_PASSWORD not in daemon.log_path.read_text()
    finally:
        daemon.stop()
        engine.dispose()
