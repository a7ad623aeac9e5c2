"""`callbridge connectors list`, `... import-employees NAME` and `... setup NAME` against the contract
fakes of Bitrix24 and amoCRM and the Mango simulator, on the real store."""

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
from bridge.crm_employees import describe_import
from bridge.pbx.mango.simulator.command_server import CommandServer
from tests.fakes.amocrm import FakeAmoCrm
from tests.fakes.bitrix24 import FakeBitrix24

LLT = "llt-cli-" + "0a1b2c3d" * 6
MANGO_KEY = "cli-vpbx-key"
MANGO_SALT = "cli-vpbx-salt-0123456789"


@dataclass
class Obj:
    """What `callbridge` puts in the click context: the settings and the migrated store."""

    engine: Engine
    config: Settings


def run(engine: Engine, settings: dict[str, Any], *args: str) -> tuple[int, str]:
    obj = Obj(engine, Settings.model_validate(settings))
    result = CliRunner().invoke(connectors, list(args), obj=obj, catch_exceptions=False)
    return result.exit_code, result.output


@pytest.fixture
def bitrix() -> Iterator[FakeBitrix24]:
    with FakeBitrix24() as server:
        yield server


@pytest.fixture
def amo() -> Iterator[FakeAmoCrm]:
    with FakeAmoCrm(long_lived_token=LLT) as server:
        yield server


@pytest.fixture
def mango() -> Iterator[CommandServer]:
    with CommandServer(MANGO_KEY, MANGO_SALT, rate_limits=False) as server:
        yield server


def bitrix_section(fake: FakeBitrix24) -> dict[str, Any]:
    return {"portal": fake.url, "webhook_url": fake.webhook_url, "auto_import": False}


def mango_section(server: CommandServer) -> dict[str, Any]:
    return {"api_key": MANGO_KEY, "api_salt": MANGO_SALT, "api_url": server.url}


def test_list_shows_installed_connectors_and_their_state(engine: Engine, bitrix: FakeBitrix24) -> None:
    settings = {
        "connectors": {
            "bitrix24": bitrix_section(bitrix),
            "webhook": {"enabled": False},
            "amocrm": {"account_url": "ftp://nowhere"},
            "salesforce": {},
        }
    }
    code, out = run(engine, settings, "list")
    assert code == 0, out
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "enabled" in lines["bitrix24"] and "import-employees" in lines["bitrix24"]
    assert "disabled" in lines["webhook"] and "import-employees" not in lines["webhook"]
    assert "misconfigured: " in lines["amocrm"] and "connectors.amocrm." in lines["amocrm"]
    assert "not configured" in lines["shop"] and "lookup" in lines["shop"]
    assert "no connector called 'salesforce' is installed" in lines["salesforce"]


def test_bitrix24_import_maps_inner_numbers_and_stores_the_map(engine: Engine, bitrix: FakeBitrix24) -> None:
    settings = {"connectors": {"bitrix24": bitrix_section(bitrix)}}
    code, out = run(engine, settings, "import-employees", "bitrix24")
    assert code == 0, out
    assert "3 of 3 active users have an inner phone number" in out
    assert "  101 -> 1" in out and "  102 -> 7" in out and "  103 -> 9" in out
    assert "104" not in out  # an inactive user is never mapped
    assert len(bitrix.calls_of("user.get")) >= 1
    # stored in the connector's state: a freshly built connector (as the daemon builds it) resolves it
    fresh = load_connectors(Settings.model_validate(settings), engine)["bitrix24"]
    assert fresh.employees.user_id("102") == "7"  # type: ignore[attr-defined]


def test_amocrm_import_pairs_mango_employees_by_email(
    engine: Engine, amo: FakeAmoCrm, mango: CommandServer
) -> None:
    mango.users[2]["general"]["email"] = None  # 103 has no e-mail in Mango
    settings = {
        "mango": mango_section(mango),
        "connectors": {"amocrm": {"account_url": amo.url, "long_lived_token": LLT}},
    }
    code, out = run(engine, settings, "import-employees", "amocrm")
    assert code == 0, out
    assert "2 extension(s) matched to amoCRM users by e-mail:" in out
    assert "  101 -> 1001" in out and "  102 -> 1002" in out
    assert "no e-mail in Mango for extension(s): 103" in out
    assert [r.path for r in mango.received if r.path == "config/users/request"]
    fresh = load_connectors(Settings.model_validate(settings), engine)["amocrm"]
    assert fresh.employees.user_for("101") == "1001"  # type: ignore[attr-defined]


def test_amocrm_import_needs_mango_credentials(engine: Engine, amo: FakeAmoCrm) -> None:
    settings = {"connectors": {"amocrm": {"account_url": amo.url, "long_lived_token": LLT}}}
    code, out = run(engine, settings, "import-employees", "amocrm")
    assert code == 1
    assert "Mango is not configured: set CALLBRIDGE_MANGO_API_KEY" in out


def test_mango_refusing_is_said_plainly(engine: Engine, amo: FakeAmoCrm, mango: CommandServer) -> None:
    settings = {
        "mango": {**mango_section(mango), "api_salt": "a-wrong-salt-0123456789"},
        "connectors": {"amocrm": {"account_url": amo.url, "long_lived_token": LLT}},
    }
    code, out = run(engine, settings, "import-employees", "amocrm")
    assert code == 1
    assert "could not get the employee list from Mango:" in out
    assert "a-wrong-salt" not in out


def test_a_crm_that_refuses_is_said_plainly(engine: Engine, bitrix: FakeBitrix24) -> None:
    section = {**bitrix_section(bitrix), "webhook_url": bitrix.webhook_url.replace("/rest/", "/rest/9")}
    code, out = run(engine, {"connectors": {"bitrix24": section}}, "import-employees", "bitrix24")
    assert code == 1
    assert "the bitrix24 connector could not import its employees:" in out and "webhook URL is wrong" in out
    assert bitrix.webhook_secret not in out


@pytest.mark.parametrize(
    ("name", "settings", "message"),
    [
        ("salesforce", {}, "no connector called 'salesforce' is installed (installed: amocrm, bitrix24"),
        ("webhook", {}, "the webhook connector has no employee import (connectors that have one: amocrm"),
        ("bitrix24", {}, "the bitrix24 connector is not enabled: configure [connectors.bitrix24]"),
        (
            "bitrix24",
            {
                "connectors": {
                    "bitrix24": {
                        "portal": "https://a.bitrix24.ru",
                        "webhook_url": "https://b.bitrix24.ru/rest/1/0123456789abcdef/",
                    }
                }
            },
            "webhook_url belongs to another portal",
        ),
    ],
)
def test_clear_errors(engine: Engine, name: str, settings: dict[str, Any], message: str) -> None:
    code, out = run(engine, settings, "import-employees", name)
    assert code == 1
    assert message in out


def test_setup_names_the_connectors_that_have_something_to_register(engine: Engine) -> None:
    webhook = {"connectors": {"webhook": {"url": "https://hooks.example/calls", "secret": "s" * 20}}}
    code, out = run(engine, webhook, "setup", "webhook")
    assert code == 1
    assert (
        "the webhook connector has nothing to register in its CRM (enabled connectors that have: none)"
        in (out)
    )
    code, out = run(engine, {}, "setup", "retailcrm")
    assert code == 1 and "the retailcrm connector is not enabled: configure [connectors.retailcrm]" in out


def test_describe_import_prefers_a_full_report_then_words_and_the_mapped_extensions() -> None:
    @dataclass
    class Summary:
        mapped: dict[str, str]

        def words(self) -> str:
            return "2 mapped"

    @dataclass
    class Full:
        def report(self) -> str:
            return "line one\nline two"

    assert describe_import(Summary({"102": "7", "101": "1"})) == ["2 mapped", "  101 -> 1", "  102 -> 7"]
    assert describe_import(Full()) == ["line one", "line two"]
