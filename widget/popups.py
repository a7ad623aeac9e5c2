"""`callback.requested` on the live popups: who a request will ring, and handing it to the hub.

The managers of a site's group are the group's operators as Mango lists them (`groups` with
`show_users`, read once per `ttl` for all groups) together with the extensions its group calls have rung
(legs with `to.acd_group` = the group's short number, from the last `window` seconds). A request waits at
most `roster_wait` seconds for Mango; a slow or failing answer leaves the legs alone (asked again after
`miss_ttl`). A group nobody is known for gets supervisors only (docs/realtime.md, "Who receives what").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from sqlalchemy import Engine, select

from bridge.connector_api import CallEvent
from bridge.realtime import publish
from bridge.store.engine import reader
from bridge.store.schema import legs

log = logging.getLogger("callbridge.widget")

__all__ = ["GroupManagers", "Rosters", "announce"]

MAX_MANAGERS = 200


Rosters = Mapping[str, tuple[str, ...]]
"""Each group's operators' extensions by the group's short number."""


class GroupManagers:
    """The extensions a group rings: Mango's roster plus the store's recent legs, cached per group."""

    def __init__(
        self,
        *,
        rosters: Callable[[], Rosters] | None = None,
        ttl: float = 300.0,
        miss_ttl: float = 10.0,
        window: float = 30 * 86400,
        roster_wait: float = 1.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl
        self.miss_ttl = miss_ttl
        self.window = window
        self.roster_wait = roster_wait
        self.clock = clock
        self._rosters = rosters
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._known: tuple[float, Rosters] | None = None  # (expires, rosters) from Mango
        self._fetching: Future[None] | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="group-rosters")
        self._lock = threading.Lock()

    def of(self, engine: Engine, group: str) -> tuple[str, ...]:
        """The group's extensions, sorted (empty when neither Mango nor the store knows any). Reads
        without taking SQLite's write lock: call it outside a writing transaction."""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(group)
        if cached is not None and cached[0] > now:
            return cached[1]
        roster, settled = self._roster(group)
        found = tuple(sorted({*roster, *self._recent_legs(engine, group, now)}))
        with self._lock:
            self._cache[group] = (now + (self.ttl if found and settled else self.miss_ttl), found)
        return found

    def _recent_legs(self, engine: Engine, group: str, now: float) -> list[str]:
        with reader(engine).connect() as conn:
            rows = conn.execute(
                select(legs.c.to_extension)
                .where(
                    legs.c.acd_group == group,
                    legs.c.to_extension.is_not(None),
                    legs.c.appeared_at >= now - self.window,
                )
                .distinct()
                .limit(MAX_MANAGERS)
            ).scalars()
            return list(rows)

    def _roster(self, group: str) -> tuple[tuple[str, ...], bool]:
        """Mango's operators of `group` and whether that answer is settled (not a timeout or failure)."""
        if self._rosters is None:
            return (), True
        with self._lock:
            known = self._known
            if known is not None and known[0] > self.clock():
                return known[1].get(group, ())[:MAX_MANAGERS], True
            if self._fetching is None or self._fetching.done():
                self._fetching = self._pool.submit(self._fetch)
            fetching = self._fetching
        try:
            fetching.result(timeout=self.roster_wait)
        except FutureTimeout:
            log.info("Mango's group list is slow; group %s goes to the managers on record meanwhile", group)
            return (), False
        with self._lock:
            known = self._known
        if known is None or known[0] <= self.clock():
            return (), False
        return known[1].get(group, ())[:MAX_MANAGERS], True

    def _fetch(self) -> None:
        assert self._rosters is not None
        try:
            rosters = dict(self._rosters())
        except Exception as exc:  # noqa: BLE001 - the legs still give the managers on record
            log.warning("Mango's group list could not be read: %s", exc)
            return
        with self._lock:
            self._known = (self.clock() + self.ttl, rosters)


def announce(event: CallEvent) -> None:
    """Hand a committed `callback.requested` to this instance's hub (which adds the caller's card and
    forwards it to the other instances); best effort: a popup must never fail the request."""
    try:
        if not publish([event]):
            log.debug("widget request %s: no realtime hub in this process", event.entry_id)
    except Exception:  # noqa: BLE001 - the request is stored; only the popup is lost
        log.exception("widget request %s could not be sent to the live popups", event.entry_id)
