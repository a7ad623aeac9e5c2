"""A history import whose process stops: the heartbeat, the takeover of a stale job, and what runs next.

The daemon and the command line are real processes killed with SIGKILL mid-import (Mango's report never
gets ready while they run); the Mango simulator is the PBX. The stale time is shortened to 10 s through
`CALLBRIDGE_HISTORY_STALE_SECONDS`; the default is 60 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
import requests
from sqlalchemy import Engine

from bridge.config import Settings
from bridge.history import jobs
from bridge.history.importer import HistoryImporter
from bridge.pbx.mango import scenarios
from bridge.pbx.mango.client import MangoClient
from bridge.pbx.mango.simulator.command_server import CommandServer, ReceivedCommand
from tests.daemon import API_KEY, API_SALT, CALLBRIDGE, Daemon
from tests.test_admin_support import PASSWORD, csrf_of, panel_session

MSK = ZoneInfo("Europe/Moscow")
DAY = datetime.now(MSK).date() - timedelta(days=2)
FIRST, LAST = DAY - timedelta(days=1), DAY + timedelta(days=1)  # one request to Mango
T0 = int(datetime.combine(DAY, dt_time(10, 0), MSK).timestamp())
NAMES = ("incoming_answered", "incoming_missed", "outgoing_answered")
STALE = 10.0
IMPORT = [CALLBRIDGE, "import-history", "--from", FIRST.isoformat(), "--to", LAST.isoformat()]
T = TypeVar("T")
NEVER = 10**9  # `stats/result` answers "not ready" this many times: a report that never comes


@pytest.fixture
def simulator() -> Iterator[CommandServer]:
    """Mango with three calls two days ago in its history, whose reports never get ready."""
    server = CommandServer(API_KEY, API_SALT, rate_limits=False).start()
    for i, name in enumerate(NAMES):
        server.play(scenarios.build(name, seed=11, start=T0 + i * 900).notifications)
    assert server.wait_idle(5)
    server.stats_polls_before_ready = NEVER
    yield server
    server.stop(timeout=1)


def wait_for(what: str, check: Callable[[], T], timeout: float = 60.0, every: float = 0.2) -> T:
    """`check()` once it is truthy; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def queue_import(http: requests.Session, daemon: Daemon) -> None:
    page = http.get(f"{daemon.url}/admin/history", timeout=10)
    data = {"csrf_token": csrf_of(page.text), "date_from": FIRST.isoformat(), "date_to": LAST.isoformat()}
    assert http.post(f"{daemon.url}/admin/history", data=data, timeout=10).status_code == 200


def job_json(http: requests.Session, daemon: Daemon, job_id: int) -> dict[str, Any]:
    return http.get(f"{daemon.url}/admin/history/{job_id}.json", timeout=10).json()


def test_a_killed_daemon_s_import_is_failed_within_the_stale_time_and_the_next_one_runs(
    database_url: str, tmp_path: Path, simulator: CommandServer
) -> None:
    env = {"CALLBRIDGE_MANGO_API_URL": simulator.url, "CALLBRIDGE_HISTORY_STALE_SECONDS": f"{STALE:g}"}
    first = Daemon(database_url, tmp_path, env=env).start()
    second = Daemon(database_url, tmp_path, env=env)
    try:
        first.create_user("admin", PASSWORD)
        http = panel_session(first.url)
        queue_import(http, first)
        wait_for("Mango to be asked", lambda: job_json(http, first, 1)["state"] == jobs.WAITING)
        # Mango keeps preparing the report for longer than the stale time; the job's heartbeat stays fresh.
        watch_until = time.monotonic() + STALE * 1.5
        while time.monotonic() < watch_until:
            alive = job_json(http, first, 1)
            assert alive["state"] == jobs.WAITING and time.time() - alive["updated_at"] < STALE, alive
            time.sleep(0.5)

        first.kill()
        killed_at = time.monotonic()
        second.start()
        http = panel_session(second.url)
        failed = wait_for(
            "the stopped import to be failed",
            lambda: (job := job_json(http, second, 1))["state"] == jobs.FAILED and job,
            timeout=STALE + 50,
        )
        recovered_after = time.monotonic() - killed_at
        assert str(failed["error"]).startswith("callbridge stopped during the import (0 of 1 parts")
        assert "start it again" in str(failed["error"]) and failed["finished"] is True
        assert recovered_after < 60, recovered_after  # the second daemon's start included
        page = http.get(f"{second.url}/admin/history", timeout=10).text
        assert "callbridge stopped during the import" in page and 'data-state="failed"' in page

        simulator.stats_polls_before_ready = 0
        queue_import(http, second)  # the same period again: the failed job no longer blocks it
        done = wait_for(
            "the new import to finish", lambda: (job := job_json(http, second, 2))["finished"] and job
        )
        assert (done["state"], done["calls_imported"], done["error"]) == (jobs.DONE, len(NAMES), None), done
        entries = [
            scenarios.build(name, seed=11, start=T0 + i * 900).entry_id for i, name in enumerate(NAMES)
        ]
        for entry_id in entries:
            assert second.api(f"/api/calls/{quote(entry_id, safe='')}").status_code == 200
        print(
            f"stale import failed {recovered_after:.1f} s after the daemon's SIGKILL (stale time {STALE:g} s)"
        )
    finally:
        first.kill()
        second.stop()


def cli_env(database_url: str, simulator: CommandServer) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("CALLBRIDGE_")},
        "CALLBRIDGE_DATABASE_URL": database_url,
        "CALLBRIDGE_MANGO_API_URL": simulator.url,
        "CALLBRIDGE_MANGO_API_KEY": API_KEY,
        "CALLBRIDGE_MANGO_API_SALT": API_SALT,
        "CALLBRIDGE_HISTORY_STALE_SECONDS": f"{STALE:g}",
    }


def import_history(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(IMPORT, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_a_killed_command_line_import_is_reported_and_the_next_one_runs(
    database_url: str, engine: Engine, tmp_path: Path, simulator: CommandServer
) -> None:
    env = cli_env(database_url, simulator)
    process = subprocess.Popen(
        IMPORT,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for("Mango to be asked", lambda: [j.state for j in jobs.recent(engine)] == [jobs.WAITING])
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    with pytest.raises(jobs.JobConflict, match=r"another import is running \(job #1"):
        jobs.start_now(engine, FIRST, LAST, "Europe/Moscow", "cli", stale_after=STALE)  # it may be alive
    wait_for(
        "the heartbeat to go stale", lambda: time.time() - jobs.recent(engine)[-1].updated_at > STALE + 0.5
    )

    simulator.stats_polls_before_ready = 0
    again = import_history(env, tmp_path)
    assert again.returncode == 0, again.stderr
    lines = again.stdout.strip().splitlines()
    assert lines[0].startswith(f"job #1 ({FIRST}..{LAST}) failed: callbridge stopped during the import"), (
        lines
    )
    assert lines[-1].endswith(f"{len(NAMES)} calls imported, 0 already known") and "#2 done" in lines[-1]
    stopped, finished = sorted(jobs.recent(engine), key=lambda j: j.id)
    assert stopped.state == jobs.FAILED and "start it again" in (stopped.error or "")
    assert finished.state == jobs.DONE


def mango(simulator: CommandServer, timeout: float = 10.0) -> Callable[[], MangoClient]:
    """The importer's client factory: clients of the simulator."""
    return lambda: MangoClient(API_KEY, API_SALT, simulator.url, timeout=timeout)


def test_the_heartbeat_keeps_a_job_alive_through_a_download_longer_than_the_stale_time(
    engine: Engine, simulator: CommandServer
) -> None:
    """Mango takes 2.5 stale times to send the report; another process looking for stale jobs meanwhile
    finds none, and the import finishes."""
    stale = 5.0  # in-process, so shorter than the setting allows
    slow = stale * 2.5

    def slow_download(command: ReceivedCommand) -> None:
        if command.path == "stats/result" and command.status == 200:
            time.sleep(slow)

    simulator.stats_polls_before_ready = 0
    simulator.on_command = slow_download
    job = jobs.start_now(engine, FIRST, LAST, "Europe/Moscow", "test")
    importer = HistoryImporter(
        engine, mango(simulator, timeout=slow * 2), heartbeat_every=jobs.heartbeat_every(stale)
    )

    taken_over: list[jobs.Job] = []
    started = time.monotonic()
    result: list[jobs.Job] = []
    worker = threading.Thread(target=lambda: result.append(importer.run(job)))
    worker.start()
    while worker.is_alive():
        taken_over += jobs.take_over_stale(engine, stale_after=stale)
        worker.join(0.5)
    assert time.monotonic() - started >= slow
    assert taken_over == []
    assert result[0].state == jobs.DONE and result[0].calls_imported == len(NAMES)


def test_a_job_taken_over_meanwhile_is_left_failed(engine: Engine, simulator: CommandServer) -> None:
    """Its process only looked dead (e.g. the database was unreachable): it finds the job failed at its
    next step and leaves it so, rather than finishing it over the takeover."""
    simulator.stats_polls_before_ready = 0
    job = jobs.start_now(engine, FIRST, LAST, "Europe/Moscow", "test")

    def take_over_once(current: jobs.Job) -> None:
        if current.state == jobs.WAITING:
            jobs.take_over_stale(engine, now=time.time() + 3600)

    final = HistoryImporter(engine, mango(simulator), on_progress=take_over_once).run(job)
    assert final.state == jobs.FAILED and final.calls_imported == 0
    assert (final.error or "").startswith("callbridge stopped during the import (0 of 1 parts")


def test_ctrl_c_fails_the_job_at_once(engine: Engine, simulator: CommandServer) -> None:
    job = jobs.start_now(engine, FIRST, LAST, "Europe/Moscow", "cli")

    def interrupt(current: jobs.Job) -> None:
        if current.state == jobs.WAITING:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        HistoryImporter(engine, mango(simulator), on_progress=interrupt).run(job)
    stopped = jobs.get(engine, job.id)
    assert stopped is not None and stopped.state == jobs.FAILED
    assert (stopped.error or "").startswith("the import was interrupted (Ctrl+C) (0 of 1 parts")
    assert jobs.start_now(engine, FIRST, LAST, "Europe/Moscow", "cli").state == jobs.REQUESTING


def test_the_default_stale_time_is_a_minute_with_a_beat_every_five_seconds() -> None:
    assert Settings().history.stale_seconds == jobs.STALE_SECONDS == 60.0
    assert jobs.heartbeat_every(jobs.STALE_SECONDS) == 5.0
    assert jobs.heartbeat_every(STALE) == 2.5
