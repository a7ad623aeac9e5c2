"""`callbridge connectors import-employees yclients`: Mango's employees (the Mango simulator) paired with
the branch's staff in the YClients fake by name, stored in the real store (every backend)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine

from bridge.config import Settings
from bridge.connectors_cli import connectors
from bridge.connectors_runtime import load_connectors
from bridge.pbx.mango.simulator.command_server import CommandServer
from tests.fakes.yclients import FakeYClients

MANGO_KEY = "yc-cli-vpbx-key"
MANGO_SALT = "yc-cli-vpbx-salt-0123456789"
PARTNER = "partner-cli-" + "6f5e4d3c" * 4
CRM = "crm-cli-" + "2b3c4d5e" * 4


@dataclass
class Obj:
    """What `callbridge` puts in the click context: the settings and the migrated store."""

    engine: Engine
    config: Settings


@pytest.fixture
def yclients() -> Iterator[FakeYClients]:
    with FakeYClients(partner_token=PARTNER, crm_token=CRM, user_token=None, company_id=55) as fake:
        fake.staff = [
            {"id": 701, "name": "Смирнова Анна", "fired": False},
            {"id": 702, "name": "БОРИС ИВАНОВ", "fired": False},
            {"id": 703, "name": "Вера Петрова", "fired": True},
        ]
        yield fake


@pytest.fixture
def mango() -> Iterator[CommandServer]:
    with CommandServer(MANGO_KEY, MANGO_SALT, rate_limits=False) as server:
        yield server


def test_import_pairs_mango_employees_with_staff_by_name_and_stores_the_map(
    engine: Engine, yclients: FakeYClients, mango: CommandServer
) -> None:
    section: dict[str, Any] = {
        "api_url": yclients.url,
        "partner_token": PARTNER,
        "crm_token": CRM,
        "company_id": 55,
        "staff": {"105": "709"},
    }
    settings = {
        "mango": {"api_key": MANGO_KEY, "api_salt": MANGO_SALT, "api_url": mango.url},
        "connectors": {"yclients": section},
    }
    obj = Obj(engine, Settings.model_validate(settings))
    result = CliRunner().invoke(connectors, ["import-employees", "yclients"], obj=obj, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "2 extension(s) matched to YClients staff by name:" in out
    assert "  101 -> 701 (Анна Смирнова)" in out and "  102 -> 702 (Борис Иванов)" in out
    assert "no YClients staff member of the same name for extension(s): 103" in out  # 703 has left
    assert PARTNER not in out and CRM not in out
    assert [s.path for s in yclients.recorded()] == ["/api/v1/staff/55"]

    fresh = load_connectors(Settings.model_validate(settings), engine)["yclients"]
    assert fresh.mapped_users()["101"] == "701" and fresh.mapped_users()["105"] == "709"
