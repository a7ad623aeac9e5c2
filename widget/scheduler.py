"""The widget's background job: dial requests when the schedule opens, retry failed calls, follow calls.

The daemon runs one `WidgetScheduler.run_forever(stop)` thread per process that should do this work; any
number of them may share a database. Each pass:

1. claims due waiting requests (scheduled, queued, retry) whose site is open now and dials them; the
   claim is a conditional UPDATE, so of two schedulers (or a scheduler and the web worker that took the
   request) exactly one dials a given attempt. Due requests of a closed site wait for its next opening;
2. follows calls in progress (`WidgetService.refresh`): connected, or failed -> retry or give up;
3. hands claims that outlived `claim_seconds` (a process died while sending) to step 2, which fails the
   attempt when Mango never reports on its command;
4. now and then deletes abuse-limit hits older than any window, and used form tokens past their life.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from sqlalchemy import Engine, select, update

from bridge.connector_api import Connector
from bridge.pbx.port import PbxClientFactory
from widget import tokens
from widget.limits import prune
from widget.service import WidgetService
from widget.sites import load_site
from widget.states import CALLING, DIALLING, FAILED, SCHEDULED, WAITING
from widget.tables import widget_requests

log = logging.getLogger("callbridge.widget")

__all__ = ["WidgetScheduler", "make_widget_scheduler"]


class WidgetScheduler:
    """See the module docstring. `run_once(now)` takes the time as an argument so tests can travel."""

    def __init__(
        self,
        service: WidgetService,
        *,
        batch_size: int = 50,
        interval: float = 0.5,
        prune_every: float = 300.0,
        keep_hits_seconds: float = 8 * 86400,
    ) -> None:
        self.service = service
        self.engine: Engine = service.engine
        self.batch_size = batch_size
        self.interval = interval
        self.prune_every = prune_every
        self.keep_hits_seconds = keep_hits_seconds
        self._last_prune = 0.0

    def run_once(self, now: float | None = None) -> int:
        """One pass; returns how many requests were dialled or changed state."""
        now = self.service.clock() if now is None else now
        changed = self._release_stale_claims(now)
        changed += self._dial_due(now)
        changed += self._follow_calls(now)
        if now - self._last_prune >= self.prune_every:
            self._last_prune = now
            with self.engine.begin() as conn:
                prune(conn, now - self.keep_hits_seconds)
                tokens.prune(conn, now - tokens.FORM_TOKEN_MAX_AGE - 3600)
        return changed

    def run_forever(self, stop: threading.Event) -> None:
        """Run passes every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            try:
                busy = self.run_once()
            except Exception:
                log.exception("widget scheduler pass failed; retrying")
                busy = 0
                stop.wait(2.0)
            if not busy:
                stop.wait(self.interval)

    # ------------------------------------------------------------------------------ steps

    def _release_stale_claims(self, now: float) -> int:
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    update(widget_requests)
                    .where(widget_requests.c.status == DIALLING, widget_requests.c.claimed_until < now)
                    .values(
                        status=CALLING,
                        dialled_at=widget_requests.c.claimed_until - self.service.claim_seconds,
                        claimed_until=None,
                        updated_at=now,
                    )
                ).rowcount
                or 0
            )

    def _dial_due(self, now: float) -> int:
        with self.engine.connect() as conn:
            due = conn.execute(
                select(widget_requests.c.id, widget_requests.c.site_key)
                .where(
                    widget_requests.c.status.in_(WAITING),
                    widget_requests.c.next_attempt_at <= now,
                )
                .order_by(widget_requests.c.next_attempt_at, widget_requests.c.id)
                .limit(self.batch_size)
            ).all()
        done = 0
        sites: dict[str, object] = {}
        for row in due:
            if row.site_key not in sites:
                sites[row.site_key] = load_site(self.engine, row.site_key)
            site = sites[row.site_key]
            if site is None or not site.enabled:  # type: ignore[attr-defined]
                done += self._give_up(row.id, now)
                continue
            schedule = site.config.schedule()  # type: ignore[attr-defined]
            if schedule.is_open(now):
                done += self.service.dial(row.id, now)
            else:
                opening = schedule.next_opening(now)
                with self.engine.begin() as conn:
                    done += (
                        conn.execute(
                            update(widget_requests)
                            .where(
                                widget_requests.c.id == row.id,
                                widget_requests.c.status.in_(WAITING),
                                widget_requests.c.next_attempt_at <= now,
                            )
                            .values(
                                status=SCHEDULED,
                                next_attempt_at=opening.timestamp() if opening else None,
                                updated_at=now,
                            )
                        ).rowcount
                        or 0
                    )
        return done

    def _give_up(self, request_id: int, now: float) -> int:
        with self.engine.begin() as conn:
            return (
                conn.execute(
                    update(widget_requests)
                    .where(widget_requests.c.id == request_id, widget_requests.c.status.in_(WAITING))
                    .values(status=FAILED, failure="site_removed", finished_at=now, updated_at=now)
                ).rowcount
                or 0
            )

    def _follow_calls(self, now: float) -> int:
        with self.engine.connect() as conn:
            ids = (
                conn.execute(
                    select(widget_requests.c.id)
                    .where(widget_requests.c.status == CALLING)
                    .order_by(widget_requests.c.updated_at)
                    .limit(self.batch_size)
                )
                .scalars()
                .all()
            )
        changed = 0
        for request_id in ids:
            with self.engine.begin() as conn:
                row = conn.execute(select(widget_requests).where(widget_requests.c.id == request_id)).first()
                if row is not None and self.service.refresh(conn, row, now):
                    changed += 1
        return changed


def make_widget_scheduler(
    settings: object,
    engine: Engine,
    connectors: Mapping[str, Connector],
    mango_client_factory: PbxClientFactory,
    *,
    clock: Callable[[], float] = time.time,
) -> WidgetScheduler:
    """The scheduler the daemon runs, built like the blueprint (same arguments)."""
    from widget.blueprint import service_from_settings

    return WidgetScheduler(
        service_from_settings(settings, engine, connectors, mango_client_factory, clock=clock)
    )
