"""Run one history-import job: for each chunk of the period, request the report, wait for it, store it.

Mango's rules (mango.md §3.1, §3.2) are kept: at most one month per `stats/request` (chunks are a week),
`stats/result` polled no faster than every 5 s while it answers 204, a report whose key expired (404)
requested again once, and a retryable error (rate limit, 5xx, network, a 2-minute block) retried after
the wait Mango asks for. Progress goes to the job row after every step, so the panel can show it, and
a heartbeat thread keeps the job's `updated_at` fresh every few seconds whatever the import waits on
(Mango building a report, a long download, a retry wait, a large write), so a job is only ever taken
over as stale when its process has stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import date
from typing import TypeVar

from sqlalchemy import Engine

from bridge.history import jobs
from bridge.history.periods import CHUNK_DAYS, Chunk, PeriodError, split, zone
from bridge.history.store import write_calls
from bridge.pbx.mango.client import MIN_STATS_POLL, MangoClient
from bridge.pbx.mango.errors import MangoError, MangoStatsKeyNotFound
from bridge.pbx.mango.stats import KNOWN_FIELDS, StatsResult

log = logging.getLogger("callbridge.history")

RETRIES = 3
MAX_RETRY_WAIT = 130.0  # Mango's block after repeated bad requests lasts 2 minutes
T = TypeVar("T")
SHUT_DOWN = "callbridge was shut down during the import"
CANCELLED = "the import was interrupted (Ctrl+C)"


class _Stopped(Exception):
    pass


class _TakenOver(Exception):
    """The job no longer runs here: it was taken over as stale (this process looked dead)."""


class ImportFailed(Exception):
    """The import cannot go on; the message says why in plain words."""


class HistoryImporter:
    """Imports the period of a job. `client_factory()` builds a Mango client with the settings in force."""

    def __init__(
        self,
        engine: Engine,
        client_factory: Callable[[], MangoClient],
        *,
        chunk_days: int = CHUNK_DAYS,
        poll_every: float = MIN_STATS_POLL,
        wait_timeout: float = 900.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_progress: Callable[[jobs.Job], None] | None = None,
        heartbeat_every: float = jobs.HEARTBEAT_SECONDS,
    ) -> None:
        self.engine = engine
        self.client_factory = client_factory
        self.chunk_days = chunk_days
        self.poll_every = max(MIN_STATS_POLL, poll_every)
        self.wait_timeout = wait_timeout
        self._sleep = sleep
        self._clock = clock
        self._on_progress = on_progress
        self.heartbeat_every = heartbeat_every
        self._stop: threading.Event | None = None

    def run(self, job: jobs.Job, stop: threading.Event | None = None) -> jobs.Job:
        """Run `job` (already claimed: requesting) to done or failed; returns it as stored at the end."""
        self._stop = stop
        try:
            with _Heartbeat(self.engine, job.id, self.heartbeat_every):
                self._run_to_end(job)
        except KeyboardInterrupt:
            jobs.fail(self.engine, job.id, self._interrupted(job.id, CANCELLED))
            raise
        final = jobs.get(self.engine, job.id)
        assert final is not None
        self._report(final)
        log.info(
            "history import #%s %s: %s..%s, %s calls imported, %s already known",
            final.id,
            final.state,
            final.date_from,
            final.date_to,
            final.calls_imported,
            final.calls_skipped,
        )
        return final

    def _run_to_end(self, job: jobs.Job) -> None:
        """Import, then store the outcome: done, or failed with the reason in plain words."""
        try:
            self._import(job)
            jobs.finish(self.engine, job.id)
        except _TakenOver:
            log.warning("history import #%s was taken over as stale meanwhile; left as it is", job.id)
        except _Stopped:
            jobs.fail(self.engine, job.id, self._interrupted(job.id, SHUT_DOWN))
        except (MangoError, PeriodError, ImportFailed) as exc:
            jobs.fail(self.engine, job.id, _reason(exc))
        except ValueError as exc:  # an unreadable report
            jobs.fail(self.engine, job.id, f"Mango's report could not be read: {exc}")
        except Exception as exc:
            log.exception("history import #%s failed", job.id)
            jobs.fail(self.engine, job.id, f"internal error ({type(exc).__name__}); see the service log")

    def _interrupted(self, job_id: int, what: str) -> str:
        current = jobs.get(self.engine, job_id)
        return jobs.interrupted(current, what) if current is not None else what

    # ------------------------------------------------------------------------------------------ steps

    def _import(self, job: jobs.Job) -> None:
        tz = zone(job.timezone)
        chunks = split(
            date.fromisoformat(job.date_from), date.fromisoformat(job.date_to), tz, self.chunk_days
        )
        self._update(job.id, chunks_total=len(chunks))
        try:
            client = self.client_factory()
        except ValueError as exc:  # e.g. no API key or salt saved yet
            raise ImportFailed(f"the Mango connection is not set up: {exc}") from None
        try:
            counts = {"rows_seen": 0, "calls_imported": 0, "calls_skipped": 0}
            for done, chunk in enumerate(chunks, start=1):
                result = self._fetch(job.id, client, chunk)
                self._update(job.id, state=jobs.IMPORTING)
                written = write_calls(self.engine, result.rows)
                if written.unusable:
                    log.warning(
                        "history import #%s: left out %s report rows without an entry id or a start time",
                        job.id,
                        written.unusable,
                    )
                counts["rows_seen"] += written.rows
                counts["calls_imported"] += written.imported
                counts["calls_skipped"] += written.skipped
                self._update(job.id, chunks_done=done, **counts)
        finally:
            client.close()

    def _fetch(self, job_id: int, client: MangoClient, chunk: Chunk) -> StatsResult:
        for attempt in range(2):
            self._update(job_id, state=jobs.REQUESTING)
            key = self._retrying(lambda: client.stats_request(chunk.date_from, chunk.date_to, KNOWN_FIELDS))
            self._update(job_id, state=jobs.WAITING)
            try:
                return self._wait(job_id, client, key)
            except MangoStatsKeyNotFound:
                if attempt:
                    raise
                log.warning("history import #%s: report key expired, requesting it again", job_id)
        raise AssertionError("unreachable")

    def _wait(self, job_id: int, client: MangoClient, key: str) -> StatsResult:
        deadline = self._clock() + self.wait_timeout
        while True:
            result = self._retrying(lambda: client.stats_result(key, KNOWN_FIELDS))
            if result is not None:
                return result
            if self._clock() + self.poll_every > deadline:
                raise ImportFailed(
                    f"Mango did not build the report within {self.wait_timeout:g} s; "
                    "try again later or import a shorter period"
                )
            self._update(job_id, state=jobs.WAITING)  # notices a stop or a takeover between polls
            self._pause(self.poll_every)

    def _retrying(self, call: Callable[[], T]) -> T:
        for attempt in range(1, RETRIES + 1):
            try:
                return call()
            except MangoError as exc:
                if not exc.retryable or isinstance(exc, MangoStatsKeyNotFound) or attempt == RETRIES:
                    raise
                wait = getattr(exc, "retry_after", None) or self.poll_every * attempt
                log.warning("history import: %s; retrying in %.0f s", _reason(exc), wait)
                self._pause(min(float(wait), MAX_RETRY_WAIT))
        raise AssertionError("unreachable")

    def _pause(self, seconds: float) -> None:
        if self._stop is not None:
            if self._stop.wait(seconds):
                raise _Stopped
        else:
            self._sleep(seconds)

    def _update(self, job_id: int, **values: object) -> None:
        if self._stop is not None and self._stop.is_set():
            raise _Stopped
        if not jobs.progress(self.engine, job_id, **values):
            raise _TakenOver
        if self._on_progress is not None:
            current = jobs.get(self.engine, job_id)
            if current is not None:
                self._report(current)

    def _report(self, job: jobs.Job) -> None:
        if self._on_progress is not None:
            self._on_progress(job)


class _Heartbeat:
    """Refreshes a running job's heartbeat every `every` seconds from its own thread, while the import
    waits on anything; stops once the job no longer runs."""

    def __init__(self, engine: Engine, job_id: int, every: float) -> None:
        self.engine = engine
        self.job_id = job_id
        self.every = every
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"history-heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(30)

    def _beat(self) -> None:
        while not self._done.wait(self.every):
            try:
                if not jobs.beat(self.engine, self.job_id):
                    return  # finished, or taken over: nothing left to keep alive
            except Exception:  # the database is briefly unreachable: try again on the next beat
                log.warning("history import #%s: heartbeat not written", self.job_id, exc_info=True)


def _reason(exc: Exception) -> str:
    """The client's messages already name Mango, the code and what to do."""
    return exc.message if isinstance(exc, MangoError) else str(exc)
