"""The real daemon with the Mango command simulator behind it, on each backend, for the API tests.

`api_stack` is the body of a module-scoped fixture:
`pytest.fixture(scope="module", params=BACKENDS)(api_stack)`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator import CommandServer
from bridge.pbx.mango.simulator.poster import Poster
from tests.conftest import _pg_database
from tests.daemon import API_KEY, API_SALT, API_TOKEN, Daemon, wait_closed

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@dataclass
class ApiStack:
    daemon: Daemon
    mango: CommandServer
    backend: str

    @property
    def url(self) -> str:
        return self.daemon.url

    def get(self, path: str, params: Any = None, **kwargs: Any) -> requests.Response:
        return requests.get(f"{self.url}{path}", params=params, headers=AUTH, timeout=10, **kwargs)

    def play(self, name: str, *, seed: int, **options: Any) -> dict[str, Any]:
        """Post a simulator scenario through the receiver and wait until the read API shows it closed."""
        scenario = scenarios.build(name, seed=seed, **options)
        with Poster(self.daemon.mango_url, API_KEY, API_SALT) as poster:
            report = poster.play(scenario.notifications)
        assert not report.errors, report.errors
        return wait_closed(self.daemon, scenario.entry_id, recordings=len(scenario.expected.recording_ids))

    def tracebacks(self) -> list[str]:
        """Logged tracebacks of the daemon so far (each with the line before it)."""
        lines = self.daemon.log_path.read_text(errors="replace").splitlines()
        return [f"{lines[i - 1]}\n{line}" for i, line in enumerate(lines) if line.startswith("Traceback")]


def _start(database_url: str, workdir: Path, backend: str) -> Iterator[ApiStack]:
    mango = CommandServer(API_KEY, API_SALT, rate_limits=False).start()
    daemon = Daemon(database_url, workdir, env={"CALLBRIDGE_MANGO_API_URL": mango.url})
    try:
        daemon.start()
        mango.bridge_url = daemon.mango_url
        yield ApiStack(daemon, mango, backend)
    finally:
        daemon.stop()
        mango.stop(timeout=1)


def api_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiStack]:
    workdir = tmp_path_factory.mktemp(f"api-{request.param}")
    if request.param == "sqlite":
        yield from _start(f"sqlite:///{workdir / 'callbridge.db'}", workdir, "sqlite")
    else:
        database = _pg_database(f"cb_api_{os.getpid()}_{int(time.time() * 1000) % 10**8}")
        try:
            yield from _start(next(database), workdir, "postgresql")
        finally:
            database.close()
