"""`callbridge check` against the simulated Mango command API and a real webhook receiver."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from bridge.cli import cli
from bridge.pbx.mango.simulator import CommandServer
from tests.fakes.webhook_receiver import WebhookReceiver

KEY, SALT = "check-key", "check-salt-0123456789"
SECRET = "check-webhook-secret-0123456789"


@pytest.fixture
def mango() -> Iterator[CommandServer]:
    server = CommandServer(KEY, SALT)
    server.start()
    yield server
    server.stop()


def run_check(database_url: str, **env: str) -> tuple[int, str]:
    base = {
        k: None for k in os.environ if k.startswith("CALLBRIDGE_") and not k.startswith("CALLBRIDGE_TEST")
    }
    result = CliRunner().invoke(cli, ["check"], env={**base, "CALLBRIDGE_DATABASE_URL": database_url, **env})
    return result.exit_code, result.output


def test_check_reports_success_in_plain_words(database_url: str, mango: CommandServer) -> None:
    receiver = WebhookReceiver(secret=SECRET).start()
    try:
        code, output = run_check(
            database_url,
            CALLBRIDGE_MANGO_API_KEY=KEY,
            CALLBRIDGE_MANGO_API_SALT=SALT,
            CALLBRIDGE_MANGO_API_URL=mango.url,
            CALLBRIDGE_CONNECTORS_WEBHOOK_URL=receiver.url,
            CALLBRIDGE_CONNECTORS_WEBHOOK_SECRET=SECRET,
        )
    finally:
        receiver.stop()
    assert code == 0, output
    assert "ok   mango: Connection to the server established successfully" in output
    assert "ok   webhook: The receiver at" in output


def test_check_names_a_wrong_salt(database_url: str, mango: CommandServer) -> None:
    code, output = run_check(
        database_url,
        CALLBRIDGE_MANGO_API_KEY=KEY,
        CALLBRIDGE_MANGO_API_SALT="wrong-salt",
        CALLBRIDGE_MANGO_API_URL=mango.url,
    )
    assert code == 1
    assert "FAIL mango:" in output and "3102" in output
    assert "wrong-salt" not in output
