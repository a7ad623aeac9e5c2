"""`callbridge db backup`: a consistent copy of the SQLite store while the daemon runs.

SQLite's online backup API copies the database as one snapshot (a read transaction: in WAL mode the
daemon's writers go on meanwhile, and every commit made before the copy began, including those still in
the WAL file, is in it). The copy is written beside the target and renamed into place only once it is
whole and passes `PRAGMA integrity_check`, so a failed backup never leaves a half-written file behind.
PostgreSQL is backed up with its own tool, `pg_dump`: `pg_dump_command` builds the command.
"""

from __future__ import annotations

import os
import shlex
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy.engine import make_url


class BackupError(Exception):
    """The backup was not made; the message says why in plain words."""


class UsePgDump(BackupError):
    """The store is PostgreSQL: `command` is the `pg_dump` invocation to run instead (no password)."""

    def __init__(self, command: str) -> None:
        super().__init__(f"the store is PostgreSQL: back it up with pg_dump:\n  {command}")
        self.command = command


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for any other backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        raise BackupError("the SQLite store is in memory: there is no file to back up")
    return Path(parsed.database)


def pg_dump_command(url: str, target: str) -> str:
    """The `pg_dump` command (custom format, restorable with `pg_restore`) for `url`, password hidden."""
    parsed = make_url(url)
    args = ["pg_dump", "--format=custom", f"--file={target}"]
    if parsed.host:
        args.append(f"--host={parsed.host}")
    if parsed.port:
        args.append(f"--port={parsed.port}")
    if parsed.username:
        args.append(f"--username={parsed.username}")
    args.append(parsed.database or "postgres")
    command = shlex.join(args)
    if parsed.password:
        command = "PGPASSWORD='<the password in database.url>' " + command
    return command


def backup(url: str, target: Path, *, force: bool = False) -> int:
    """Copy the store at `url` into `target`; the copy's size in bytes.

    Refuses an existing `target` unless `force`, and the database file itself always. Raises `UsePgDump`
    for PostgreSQL and `BackupError` for anything else that stops the backup.
    """
    source = sqlite_path(url)
    if source is None:
        raise UsePgDump(pg_dump_command(url, str(target)))
    if not source.is_file():
        raise BackupError(f"no database file at {source}")
    if target.exists():
        if target.resolve() == source.resolve():
            raise BackupError(f"{target} is the database itself: choose another file")
        if not force:
            raise BackupError(f"{target} exists: give --force to overwrite it")
        if target.is_dir():
            raise BackupError(f"{target} is a directory: give a file name")
    if not target.parent.is_dir():
        raise BackupError(f"no directory {target.parent}")
    handle, partial = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    os.close(handle)
    try:
        _copy(source, Path(partial))
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.unlink(partial)
    return target.stat().st_size


def _copy(source: Path, partial: Path) -> None:
    """One-step online backup of `source` into `partial`, then its integrity check."""
    src = sqlite3.connect(source, timeout=30)
    try:
        src.execute("PRAGMA busy_timeout=30000")
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)  # every page in one step: one consistent snapshot
            # A backup is one self-contained file: no -wal or -shm beside it is needed to read it.
            dst.execute("PRAGMA journal_mode=DELETE")
            verdict = dst.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"the backup failed: {exc}") from None
    finally:
        src.close()
    if verdict != "ok":
        raise BackupError(f"the copy failed its integrity check: {verdict}")
