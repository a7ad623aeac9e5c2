"""History-import jobs: queue, claim (one running at a time), progress, finish, fail, read.

A job is `queued` until a runner claims it; it is then `requesting` (asking Mango for a report),
`waiting` (Mango builds it), `importing` (writing calls), and ends `done` or `failed` with the reason.
Only one job runs at a time per database: a claim happens in one transaction that first checks no job
is running (under the SQLite write lock, or a PostgreSQL advisory lock). A running job's `updated_at`
is its heartbeat, refreshed every few seconds by the process running it (`beat`); a job silent for
`STALE_SECONDS` (its process was killed or lost the database) is taken over: failed with a message that
says how far it got, so the next job can run. It is not resumed: the process that ran it is gone (a
command-line run belongs to its terminal), and starting it again is safe, as calls already in the store
are skipped. Every write to a job is conditional on it still running, so a taken-over job stays failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, text, update

from bridge.store.engine import reader
from bridge.store.schema import history_imports
from bridge.store.write_lock import write_transaction

log = logging.getLogger("callbridge.history")

QUEUED, REQUESTING, WAITING, IMPORTING, DONE, FAILED = (
    "queued",
    "requesting",
    "waiting",
    "importing",
    "done",
    "failed",
)
STATES = (QUEUED, REQUESTING, WAITING, IMPORTING, DONE, FAILED)
RUNNING = (REQUESTING, WAITING, IMPORTING)
FINISHED = (DONE, FAILED)
STALE_SECONDS = 60.0
"""A running job whose heartbeat is older than this is taken over (setting `history.stale_seconds`)."""
HEARTBEAT_SECONDS = 5.0
"""How often a running job's heartbeat is refreshed (at most; see `heartbeat_every`)."""
_PG_LOCK_KEY = 0x63624849  # "cbHI": serialises claims between instances on PostgreSQL


class JobConflict(Exception):
    """The job cannot be queued or started now; the message says why."""

    def __init__(self, message: str, job: Job | None = None) -> None:
        super().__init__(message)
        self.job = job


@dataclass(frozen=True)
class Job:
    """One import job as stored."""

    id: int
    state: str
    date_from: str
    date_to: str
    timezone: str
    chunks_total: int
    chunks_done: int
    rows_seen: int
    calls_imported: int
    calls_skipped: int
    error: str | None
    started_by: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float

    @property
    def running(self) -> bool:
        return self.state in RUNNING

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def percent(self) -> int:
        """Progress 0..100: finished chunks out of all (a finished job is 100)."""
        if self.state == DONE:
            return 100
        if not self.chunks_total:
            return 0
        return min(100, int(100 * self.chunks_done / self.chunks_total))

    def as_json(self) -> dict[str, Any]:
        data = {c.name: getattr(self, c.name) for c in history_imports.columns}
        data.update(percent=self.percent, running=self.running, finished=self.finished)
        return data


def _job(row: Any) -> Job:
    return Job(**dict(row._mapping))


def heartbeat_every(stale_after: float) -> float:
    """The heartbeat period for a stale time: a few beats fit in it, so one slow write is no takeover."""
    return min(HEARTBEAT_SECONDS, stale_after / 4)


def interrupted(job: Job, what: str = "callbridge stopped during the import") -> str:
    """Why `job` ended unfinished, with how far it got; starting it again is safe."""
    done = (
        f"{job.chunks_done} of {job.chunks_total} parts of the period were imported"
        if job.chunks_total
        else "nothing was imported yet"
    )
    return f"{what} ({done}); start it again: calls already imported are kept and skipped"


def _serialise(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})


def _running(conn: Connection) -> Job | None:
    row = conn.execute(
        select(history_imports).where(history_imports.c.state.in_(RUNNING)).order_by(history_imports.c.id)
    ).first()
    return _job(row) if row is not None else None


def _fail_stale(conn: Connection, now: float, stale_after: float) -> list[Job]:
    """Fail the running jobs whose heartbeat is older than `stale_after`; returns them as they were."""
    silent = (history_imports.c.state.in_(RUNNING), history_imports.c.updated_at < now - stale_after)
    stale: list[Job] = []
    for row in conn.execute(select(history_imports).where(*silent)).all():
        job = _job(row)
        failed = conn.execute(
            update(history_imports)
            .where(history_imports.c.id == job.id, *silent)  # a beat in between keeps it running
            .values(state=FAILED, error=interrupted(job), finished_at=now, updated_at=now)
        )
        if failed.rowcount != 1:
            continue
        stale.append(job)
        log.warning(
            "history import #%s (%s..%s) had no heartbeat for %.0f s: its process stopped; marked failed",
            job.id,
            job.date_from,
            job.date_to,
            now - job.updated_at,
        )
    return stale


def _insert(
    conn: Connection, state: str, first: date, last: date, tz: str, by: str | None, now: float
) -> int:
    values = {
        "state": state,
        "date_from": first.isoformat(),
        "date_to": last.isoformat(),
        "timezone": tz,
        "chunks_total": 0,
        "chunks_done": 0,
        "rows_seen": 0,
        "calls_imported": 0,
        "calls_skipped": 0,
        "started_by": by,
        "created_at": now,
        "started_at": now if state != QUEUED else None,
        "updated_at": now,
    }
    return int(conn.execute(insert(history_imports).values(**values)).inserted_primary_key[0])


@contextmanager
def _serialised(engine: Engine) -> Iterator[Connection]:
    """A write transaction over the job table, serialised between processes and instances."""
    with write_transaction(engine) as conn:
        assert isinstance(conn, Connection)
        _serialise(conn)
        yield conn


@contextmanager
def _jobs_transaction(engine: Engine, now: float, stale_after: float) -> Iterator[Connection]:
    """A serialised write transaction over the job table, with stale running jobs failed first."""
    with _serialised(engine) as conn:
        _fail_stale(conn, now, stale_after)
        yield conn


def take_over_stale(
    engine: Engine, *, now: float | None = None, stale_after: float = STALE_SECONDS
) -> list[Job]:
    """Fail the running jobs whose process stopped (no heartbeat for `stale_after`); returns them failed."""
    now = time.time() if now is None else now
    with _serialised(engine) as conn:
        stale = _fail_stale(conn, now, stale_after)
    return [job for job in (get(engine, s.id) for s in stale) if job is not None]


def queue(
    engine: Engine,
    first: date,
    last: date,
    timezone: str,
    started_by: str | None,
    *,
    now: float | None = None,
    stale_after: float = STALE_SECONDS,
) -> Job:
    """Queue an import of `first`..`last`; JobConflict if the same period is already queued or running."""
    now = time.time() if now is None else now
    with _jobs_transaction(engine, now, stale_after) as conn:
        same = conn.execute(
            select(history_imports).where(
                history_imports.c.state.in_((QUEUED, *RUNNING)),
                history_imports.c.date_from == first.isoformat(),
                history_imports.c.date_to == last.isoformat(),
            )
        ).first()
        if same is not None:
            job = _job(same)
            raise JobConflict(
                f"an import of {job.date_from}..{job.date_to} is already {job.state} (job #{job.id})", job
            )
        job_id = _insert(conn, QUEUED, first, last, timezone, started_by, now)
    return get(engine, job_id)  # type: ignore[return-value]


def start_now(
    engine: Engine,
    first: date,
    last: date,
    timezone: str,
    started_by: str | None,
    *,
    now: float | None = None,
    stale_after: float = STALE_SECONDS,
) -> Job:
    """Create a job already running (the CLI runs it itself); JobConflict while another one runs."""
    now = time.time() if now is None else now
    with _jobs_transaction(engine, now, stale_after) as conn:
        other = _running(conn)
        if other is not None:
            raise JobConflict(
                f"another import is running (job #{other.id}, {other.date_from}..{other.date_to}, "
                f"started by {other.started_by or 'unknown'}, last heartbeat {now - other.updated_at:.0f} s "
                f"ago); wait for it to finish (if its process stopped, it is marked failed once silent for "
                f"{stale_after:g} s)",
                other,
            )
        job_id = _insert(conn, REQUESTING, first, last, timezone, started_by, now)
    return get(engine, job_id)  # type: ignore[return-value]


def claim_next(engine: Engine, *, now: float | None = None, stale_after: float = STALE_SECONDS) -> Job | None:
    """Start the oldest queued job, unless one is running; None when there is nothing to start."""
    now = time.time() if now is None else now
    with _jobs_transaction(engine, now, stale_after) as conn:
        if _running(conn) is not None:
            return None
        row = conn.execute(
            select(history_imports.c.id)
            .where(history_imports.c.state == QUEUED)
            .order_by(history_imports.c.id)
            .limit(1)
        ).first()
        if row is None:
            return None
        claimed = conn.execute(
            update(history_imports)
            .where(history_imports.c.id == row.id, history_imports.c.state == QUEUED)
            .values(state=REQUESTING, started_at=now, updated_at=now)
        )
        if claimed.rowcount != 1:
            return None
        job_id = row.id
    return get(engine, job_id)


def progress(engine: Engine, job_id: int, **values: Any) -> bool:
    """Update a running job's state or counters and its heartbeat; False if it no longer runs (it was
    taken over as stale, so this process must let it be)."""
    with write_transaction(engine) as conn:
        assert isinstance(conn, Connection)
        updated = conn.execute(
            update(history_imports)
            .where(history_imports.c.id == job_id, history_imports.c.state.in_(RUNNING))
            .values(**values, updated_at=time.time())
        )
        return updated.rowcount == 1


def beat(engine: Engine, job_id: int) -> bool:
    """Refresh a running job's heartbeat; False if it no longer runs."""
    return progress(engine, job_id)


def finish(engine: Engine, job_id: int) -> bool:
    now = time.time()
    return progress(engine, job_id, state=DONE, error=None, finished_at=now)


def fail(engine: Engine, job_id: int, reason: str) -> bool:
    now = time.time()
    return progress(engine, job_id, state=FAILED, error=reason[:2000], finished_at=now)


def get(engine: Engine, job_id: int) -> Job | None:
    with reader(engine).connect() as conn:
        row = conn.execute(select(history_imports).where(history_imports.c.id == job_id)).first()
    return _job(row) if row is not None else None


def recent(engine: Engine, limit: int = 20) -> list[Job]:
    """The newest jobs first."""
    with reader(engine).connect() as conn:
        rows = conn.execute(select(history_imports).order_by(history_imports.c.id.desc()).limit(limit))
        return [_job(row) for row in rows]
