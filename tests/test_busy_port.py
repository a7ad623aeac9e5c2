"""A busy HTTP or WebSocket port stops `callbridge run` at once, naming the address; whatever already
listens there (another program, or a running callbridge) keeps serving."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from bridge.pbx.mango.signing import signed_form
from tests.daemon import API_KEY, API_SALT, CALLBRIDGE, Daemon, free_port

EVENT = {
    "entry_id": "busy-port-entry",
    "call_id": "busy-port-call",
    "timestamp": 1670060542,
    "seq": 1,
    "call_state": "Appeared",
    "location": "abonent",
    "from": {"number": "79607164646"},
    "to": {"extension": "222", "number": "79776307393"},
}


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    workdir = tmp_path_factory.mktemp("first")
    daemon = Daemon(f"sqlite:///{workdir / 'cb.db'}", workdir)
    try:
        yield daemon.start()
    finally:
        daemon.stop()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """Another program listening on a free port of 127.0.0.1."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock
    finally:
        sock.close()


def run_second(tmp_path: Path, http_port: int, ws_port: int) -> subprocess.CompletedProcess[str]:
    """`callbridge run` with its own database on the given ports; it must stop by itself."""
    env = Daemon(f"sqlite:///{tmp_path / 'second.db'}", tmp_path).env
    env.update(CALLBRIDGE_HTTP_PORT=str(http_port), CALLBRIDGE_WS_PORT=str(ws_port))
    return subprocess.run(
        [CALLBRIDGE, "run"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def assert_refused(done: subprocess.CompletedProcess[str], port: int, tmp_path: Path) -> None:
    assert done.returncode != 0, done.stdout + done.stderr
    assert f"address 127.0.0.1:{port} is already in use" in done.stderr, done.stdout + done.stderr
    assert not (tmp_path / "second.db").exists(), "it refused before touching its database"


def assert_serving(daemon: Daemon) -> None:
    assert requests.get(f"{daemon.url}/healthz", timeout=5).status_code == 200
    answer = requests.post(
        f"{daemon.mango_url}/events/call", data=signed_form(API_KEY, API_SALT, EVENT), timeout=5
    )
    assert answer.status_code == 200, answer.text
    with socket.create_connection(("127.0.0.1", int(daemon.env["CALLBRIDGE_WS_PORT"])), timeout=5):
        pass  # the first daemon's WebSocket hub still accepts connections


def test_http_port_taken_by_another_program(tmp_path: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert_refused(run_second(tmp_path, port, free_port()), port, tmp_path)


def test_websocket_port_taken_by_another_program(tmp_path: Path, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    assert_refused(run_second(tmp_path, free_port(), port), port, tmp_path)


def test_second_callbridge_on_the_same_http_port(tmp_path: Path, first: Daemon) -> None:
    assert_refused(run_second(tmp_path, first.port, free_port()), first.port, tmp_path)
    assert_serving(first)


def test_second_callbridge_on_the_same_websocket_port(tmp_path: Path, first: Daemon) -> None:
    ws_port = int(first.env["CALLBRIDGE_WS_PORT"])
    assert_refused(run_second(tmp_path, free_port(), ws_port), ws_port, tmp_path)
    assert_serving(first)
