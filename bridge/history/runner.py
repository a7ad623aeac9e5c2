"""The daemon's history-import thread: runs queued jobs, one at a time, with the settings in force."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine

from bridge.config import Settings
from bridge.history import jobs
from bridge.history.importer import HistoryImporter
from bridge.pbx.mango.client import MangoClient
from bridge.pbx.select import mango_client
from bridge.settings_store import SettingsStore

log = logging.getLogger("callbridge.history")


class HistoryRunner:
    """Claims the oldest queued job when none runs, and imports it; checks every `interval` seconds.
    A running job with no heartbeat for `stale_after` seconds (its process stopped) is failed first."""

    def __init__(
        self, importer: HistoryImporter, *, interval: float = 2.0, stale_after: float = jobs.STALE_SECONDS
    ) -> None:
        self.importer = importer
        self.interval = interval
        self.stale_after = stale_after

    def run_once(self, stop: threading.Event | None = None) -> jobs.Job | None:
        """Run one queued job if it may start now; returns it finished, or None."""
        job = jobs.claim_next(self.importer.engine, stale_after=self.stale_after)
        if job is None:
            return None
        log.info("history import #%s started: %s..%s", job.id, job.date_from, job.date_to)
        return self.importer.run(job, stop)

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                ran = self.run_once(stop)
            except Exception:
                log.exception("history import runner pass failed; retrying")
                ran = None
            if ran is None:
                stop.wait(self.interval)


def effective_client_factory(
    settings: Settings, engine: Engine, store: SettingsStore | None = None
) -> Callable[[], MangoClient]:
    """Builds a Mango client from the effective settings (values saved in the panel apply at once)."""
    saved = store or SettingsStore(engine, settings)
    return lambda: mango_client(saved.effective())


def make_history_runner(settings: Settings, engine: Engine) -> HistoryRunner:
    """The daemon's runner over `engine`, with the effective Mango settings."""
    stale_after = settings.history.stale_seconds
    importer = HistoryImporter(
        engine, effective_client_factory(settings, engine), heartbeat_every=jobs.heartbeat_every(stale_after)
    )
    return HistoryRunner(importer, stale_after=stale_after)
