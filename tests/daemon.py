"""Start and stop `callbridge run` as a real subprocess, the way a user runs it."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import requests

CALLBRIDGE = str(Path(sys.executable).parent / "callbridge")
API_KEY = "test-vpbx-key"
API_SALT = "test-vpbx-salt-0123456789"
API_TOKEN = "test-read-token-0123456789"
# For tests that save settings in the panel and wait until every process has re-read them.
SETTINGS_REFRESH = 0.5
SHORT_SETTINGS_REFRESH = {"CALLBRIDGE_DATABASE_SAVED_SETTINGS_REFRESH_SECONDS": str(SETTINGS_REFRESH)}


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` that makes the child get SIGTERM when the test process dies, however it dies (even
    SIGKILL, or an interrupted `make test`): no daemon outlives its test run. Linux's PR_SET_PDEATHSIG."""
    parent = os.getpid()

    def arm() -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Daemon:
    """A `callbridge run` process group; `kill()` is `kill -9` of the daemon and its workers."""

    def __init__(self, database_url: str, workdir: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")},
            "CALLBRIDGE_DATABASE_URL": database_url,
            "CALLBRIDGE_HTTP_PORT": str(self.port),
            "CALLBRIDGE_WS_PORT": str(free_port()),
            "CALLBRIDGE_MANGO_API_KEY": API_KEY,
            "CALLBRIDGE_MANGO_API_SALT": API_SALT,
            "CALLBRIDGE_API_TOKEN": API_TOKEN,
            "CALLBRIDGE_DISPATCHER_BASE_DELAY_SECONDS": "0.2",
            "CALLBRIDGE_DISPATCHER_MAX_DELAY_SECONDS": "2",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"daemon-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mango_url(self) -> str:
        return f"{self.url}/mango"

    def start(self, timeout: float = 30.0) -> Daemon:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [CALLBRIDGE, "run"],
            cwd=self.workdir,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"callbridge run exited early:\n{self.log_path.read_text()[-4000:]}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"callbridge run did not become healthy:\n{self.log_path.read_text()[-4000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group: no clean shutdown of any kind."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)

    def api(self, path: str, **params: str) -> requests.Response:
        return requests.get(
            f"{self.url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=10,
        )

    def create_user(
        self, username: str, password: str, role: str = "admin", *, extension: str = "", lang: str = "en"
    ) -> None:
        """`callbridge admin create-user` against this daemon's store, as an administrator would run it."""
        args = [CALLBRIDGE, "admin", "create-user", "--username", username, "--role", role]
        args += ["--password-stdin", "--lang", lang] + (["--extension", extension] if extension else [])
        done = subprocess.run(
            args,
            input=password + "\n",
            env=self.env,
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr


def wait_call(daemon: Daemon, entry_id: str, until: Callable[[dict], bool], timeout: float = 20.0) -> dict:
    """The call from `/api/calls/<entry_id>` once `until(call)` holds (polled until `timeout`)."""
    quoted = urllib.parse.quote(entry_id, safe="")
    deadline = time.monotonic() + timeout
    call: dict = {}
    while time.monotonic() < deadline:
        response = daemon.api(f"/api/calls/{quoted}")
        if response.status_code == 200:
            call = response.json()
            if until(call):
                return call
        time.sleep(0.1)
    raise AssertionError(f"call {entry_id} never matched: {call}")


def wait_closed(daemon: Daemon, entry_id: str, timeout: float = 20.0, recordings: int = 0) -> dict:
    """The call once it is closed and at least `recordings` of its recordings are ready (Mango posts a
    recording's completion after the summary, so `closed` alone does not mean the recording is in)."""

    def settled(call: dict) -> bool:
        return call["closed"] and sum(1 for r in call["recordings"] if r["ready"]) >= recordings

    return wait_call(daemon, entry_id, settled, timeout)
