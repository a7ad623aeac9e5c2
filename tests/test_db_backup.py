"""`callbridge db backup FILE`: a consistent SQLite copy taken while `callbridge run` receives events, a
refusal to overwrite without `--force`, and the `pg_dump` command (password hidden, exit 2) for PostgreSQL."""

from __future__ import annotations

import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import select

from bridge.pbx.mango import scenarios
from bridge.pbx.mango.simulator.poster import Poster, SendRecord
from bridge.store.engine import make_engine
from bridge.store.migrate import current_revision
from bridge.store.schema import calls, raw_events
from tests.daemon import API_KEY, API_SALT, CALLBRIDGE, Daemon
from tests.waiting import wait_until


def cli(workdir: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`callbridge ...` as an administrator runs it on the server, with the daemon's database."""
    env = {"PATH": "/usr/bin:/bin", "CALLBRIDGE_DATABASE_URL": database_url}
    return subprocess.run(
        [CALLBRIDGE, *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
    )


@dataclass
class Traffic:
    """Mango keeps posting calls from a thread; every acknowledged notification is kept with its time."""

    poster: Poster
    acked: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        seed = 0
        while not self.stop.is_set():
            seed += 1
            scenario = scenarios.build("incoming_answered", seed=seed, extensions=("101",), run="77")
            self.poster.play(scenario.notifications, on_send=self.record)

    def record(self, send: SendRecord) -> None:
        if send.acked:
            with self.lock:
                self.acked.append((time.time(), str(send.notification.payload.get("entry_id"))))

    def entries_acked(self, before: float = float("inf"), after: float = 0.0) -> set[str]:
        with self.lock:
            return {entry for at, entry in self.acked if after < at < before}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    instance = Daemon(f"sqlite:///{tmp_path / 'callbridge.db'}", tmp_path).start()
    yield instance
    instance.stop()


def closed_entries(daemon: Daemon) -> set[str]:
    answer = daemon.api("/api/calls", limit="200")
    assert answer.status_code == 200, answer.text
    return {call["entry_id"] for call in answer.json()["items"] if call["closed"]}


def test_a_backup_taken_while_events_arrive_holds_everything_committed_before_it(
    daemon: Daemon, tmp_path: Path
) -> None:
    url = daemon.env["CALLBRIDGE_DATABASE_URL"]
    traffic = Traffic(Poster(daemon.mango_url, API_KEY, API_SALT))
    sender = threading.Thread(target=traffic.run, daemon=True)
    sender.start()
    try:
        folded = wait_until(
            lambda: (found := closed_entries(daemon)) and len(found) >= 5 and found, "5 calls"
        )
        started = time.time()
        done = cli(tmp_path, url, "db", "backup", str(tmp_path / "copy.db"))
        finished = time.time()
        assert done.returncode == 0, done.stdout + done.stderr
        assert "integrity check ok" in done.stdout
        # Mango's notifications kept being acknowledged while the copy was made, and after it.
        wait_until(lambda: traffic.entries_acked(after=finished), "notifications after the backup")
    finally:
        traffic.stop.set()
        sender.join(30)
        traffic.poster.close()
    assert traffic.entries_acked(after=started, before=finished), "no notification arrived during the backup"

    copy = tmp_path / "copy.db"
    assert not list(tmp_path.glob("copy.db-*")) and not list(tmp_path.glob(".copy.db.*")), "one file only"
    with sqlite3.connect(copy) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    opened = cli(tmp_path, f"sqlite:///{copy}", "db", "upgrade")  # callbridge opens it as its store
    assert opened.returncode == 0 and "database at revision" in opened.stdout, opened.stderr
    original, restored = make_engine(url), make_engine(f"sqlite:///{copy}")
    try:
        assert current_revision(restored) == current_revision(original)
        with restored.connect() as conn:
            stored_calls = set(conn.execute(select(calls.c.entry_id).where(calls.c.closed)).scalars())
            stored_events = set(conn.execute(select(raw_events.c.entry_id)).scalars())
        assert folded <= stored_calls, "a call folded before the backup is missing from it"
        assert traffic.entries_acked(before=started) <= stored_events, "an acknowledged event is missing"
    finally:
        original.dispose()
        restored.dispose()


def test_an_existing_file_is_kept_unless_forced(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'callbridge.db'}"
    assert cli(tmp_path, url, "db", "upgrade").returncode == 0
    target = tmp_path / "nightly.db"
    target.write_bytes(b"yesterday's backup")
    refused = cli(tmp_path, url, "db", "backup", str(target))
    assert refused.returncode == 1 and "exists: give --force" in refused.stderr
    assert target.read_bytes() == b"yesterday's backup"
    itself = cli(tmp_path, url, "db", "backup", "--force", str(tmp_path / "callbridge.db"))
    assert itself.returncode == 1 and "the database itself" in itself.stderr
    forced = cli(tmp_path, url, "db", "backup", "--force", str(target))
    assert forced.returncode == 0, forced.stderr
    with sqlite3.connect(target) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("SELECT count(*) FROM calls").fetchone()[0] == 0


def test_postgresql_is_pointed_at_pg_dump_without_the_password(tmp_path: Path) -> None:
    url = "postgresql+psycopg://callbridge:s3cret-pw@db.internal:5433/calls"
    done = cli(tmp_path, url, "db", "backup", str(tmp_path / "calls.dump"))
    assert done.returncode == 2
    expected = (
        "pg_dump --format=custom --file=" + str(tmp_path / "calls.dump")
        + " --host=db.internal --port=5433 --username=callbridge calls"
    )  # fmt: skip
    assert expected in done.stderr
    assert "s3cret-pw" not in done.stderr + done.stdout
    assert not (tmp_path / "calls.dump").exists()
