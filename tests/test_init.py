"""`callbridge init`: a commented settings file with generated secrets, the Mango check against the
simulator, the address for Mango's cabinet, and `callbridge run` starting from the file it wrote."""

from __future__ import annotations

import os
import stat
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bridge.pbx.mango.signing import signed_form
from bridge.pbx.mango.simulator import CommandServer
from tests.daemon import CALLBRIDGE, free_port

KEY, SALT = "init-key", "init-salt-0123456789"


@pytest.fixture
def mango() -> Iterator[CommandServer]:
    with CommandServer(KEY, SALT, rate_limits=False) as server:
        yield server


def _env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")}, **extra}


def _init(tmp_path: Path, mango: CommandServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = _env(CALLBRIDGE_MANGO_API_URL=mango.url)  # the simulator stands in for Mango
    command = [CALLBRIDGE, "init", "callbridge.toml", "--mango-key", KEY, *args]
    return subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)


def test_init_writes_a_private_commented_file_checks_mango_and_names_the_address(
    tmp_path: Path, mango: CommandServer
) -> None:
    done = _init(tmp_path, mango, "--mango-salt", SALT, "--public-url", "https://calls.example.com/")
    assert done.returncode == 0, done.stderr
    assert "ok   mango:" in done.stdout
    assert "external system address:\n    https://calls.example.com/mango\n" in done.stdout
    assert SALT not in done.stdout + done.stderr
    file = tmp_path / "callbridge.toml"
    assert stat.S_IMODE(file.stat().st_mode) == 0o600
    text = file.read_text(encoding="utf-8")
    assert "# the cabinet's signature key (`vpbx_api_salt`); never logged or shown\napi_salt =" in text
    written = tomllib.loads(text)
    assert (written["mango"]["api_key"], written["mango"]["api_salt"]) == (KEY, SALT)
    assert len(written["api"]["token"]) >= 40 and len(written["security"]["secret_key"]) >= 60

    again = _init(tmp_path, mango, "--mango-salt", SALT)
    assert again.returncode == 1 and "exists; give --force" in again.stderr
    forced = _init(tmp_path, mango, "--mango-salt", SALT, "--force", "--no-check")
    assert forced.returncode == 0, forced.stderr
    rewritten = tomllib.loads(file.read_text(encoding="utf-8"))
    assert rewritten["api"]["token"] != written["api"]["token"]  # fresh secrets every time
    assert "Set http.public_url" in forced.stdout


def test_a_wrong_salt_is_reported_and_the_file_still_starts_callbridge(
    tmp_path: Path, mango: CommandServer
) -> None:
    done = _init(tmp_path, mango, "--mango-salt", "not-the-salt", "--public-url", "https://calls.example.com")
    assert done.returncode == 1
    assert "FAIL mango:" in done.stdout and "not-the-salt" not in done.stdout + done.stderr

    port = free_port()
    env = _env(CALLBRIDGE_HTTP_PORT=str(port), CALLBRIDGE_WS_PORT=str(free_port()))
    command = [CALLBRIDGE, "--config", "callbridge.toml", "run"]
    with subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as daemon:
        try:
            ping = _wait_for_ping(f"http://127.0.0.1:{port}/mango/ping", daemon)
            assert ping.status_code == 200 and ping.json() == {"success": True}
        finally:
            daemon.terminate()
            daemon.wait(15)


def _wait_for_ping(url: str, daemon: subprocess.Popen[bytes], timeout: float = 30.0) -> requests.Response:
    """Mango's "Check connection", signed with the salt the file holds, once the daemon answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert daemon.poll() is None, "callbridge run exited"
        try:
            return requests.post(url, data=signed_form(KEY, "not-the-salt", {}), timeout=5)
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError(f"{url} never answered")
