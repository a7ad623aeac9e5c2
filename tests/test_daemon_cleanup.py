"""Every daemon a test starts dies with the test run, even when the run is killed (`make test` stopped):
the test process is SIGKILLed mid-test and the daemon, with its HTTP workers, is gone soon after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

HANGING_TEST = """
import time
from pathlib import Path

from tests.daemon import Daemon


def test_hangs_with_a_daemon(tmp_path):
    daemon = Daemon({url!r}, tmp_path).start()
    Path({pids!r}).write_text(str(daemon.process.pid))
    time.sleep(600)  # killed long before this ends
"""


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped counts as dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found |= {int(child)} | _descendants(int(child))
    return found


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_killed_test_run_takes_its_daemon_along(tmp_path: Path) -> None:
    pids = tmp_path / "daemon.pid"
    test_file = tmp_path / "test_hanging.py"
    test_file.write_text(HANGING_TEST.format(url=f"sqlite:///{tmp_path / 'callbridge.db'}", pids=str(pids)))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: pids.exists() and pids.read_text().strip() != "", 60, "the daemon to start")
        daemon = int(pids.read_text())
        _wait(lambda: len(_descendants(daemon)) >= 1, 30, "the daemon's HTTP workers")
        family = {daemon} | _descendants(daemon)
        run.send_signal(signal.SIGKILL)  # no teardown, no finaliser: the run just stops
        run.wait(10)
        _wait(lambda: not any(_alive(pid) for pid in family), 30, "the daemon and its workers to exit")
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(10)
