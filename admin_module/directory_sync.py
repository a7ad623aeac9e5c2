"""Directory syncs run by the panel: on schedule in the daemon (`ldap.sync_minutes`), and "Sync now" on the
Employees page (in a thread of the web worker). Each run is recorded in `directory_syncs` by
`bridge.ldap.sync.run_sync`; after it the directory users' roles are re-checked (`ldap.login`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, select

from admin_module import directory_users
from bridge.config.model import LdapSettings
from bridge.ldap import LdapError
from bridge.ldap.sync import run_sync
from bridge.store.schema import directory_syncs

log = logging.getLogger("callbridge.admin")

__all__ = ["DirectorySync"]

STALE_SECONDS = 15 * 60  # a run "running" for longer than this died with its process
CHECK_SECONDS = 30.0


class DirectorySync:
    """Starts directory syncs, never two at once from one database's point of view (a run still marked
    running, and younger than `STALE_SECONDS`, makes another wait)."""

    def __init__(
        self, engine: Engine, settings: Callable[[], LdapSettings], clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock

    def _latest(self) -> tuple[float, str] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(directory_syncs.c.started_at, directory_syncs.c.state)
                .order_by(directory_syncs.c.id.desc())
                .limit(1)
            ).first()
        return None if row is None else (row.started_at, row.state)

    def busy(self) -> bool:
        latest = self._latest()
        return latest is not None and latest[1] == "running" and self.clock() - latest[0] < STALE_SECONDS

    def due(self) -> bool:
        settings = self.settings()
        if not settings.url or settings.sync_minutes <= 0:
            return False
        latest = self._latest()
        if latest is None:
            return True
        started, state = latest
        if state == "running" and self.clock() - started < STALE_SECONDS:
            return False
        return self.clock() - started >= settings.sync_minutes * 60

    def run(self, trigger: str) -> None:
        """One sync and the role re-check; failures are recorded and logged, never raised."""
        settings = self.settings()
        try:
            result = run_sync(self.engine, settings, trigger=trigger)
            log.info("directory %s", result.words())
            if settings.login:
                directory_users.recheck(self.engine, settings)
        except LdapError as exc:
            log.warning("directory sync failed: %s", exc)
        except Exception:
            log.exception("directory sync failed")

    def start(self, trigger: str) -> bool:
        """Run a sync in a thread unless one is running; whether it started."""
        if self.busy() or not self.settings().url:
            return False
        threading.Thread(target=self.run, args=(trigger,), name="directory-sync", daemon=True).start()
        return True

    def run_forever(self, stop: threading.Event) -> None:
        """The daemon's schedule: a sync whenever `ldap.sync_minutes` have passed since the last start."""
        while not stop.is_set():
            try:
                if self.due():
                    self.run("schedule")
            except Exception:
                log.exception("directory schedule check failed")
            stop.wait(CHECK_SECONDS)
