"""`callback.requested` on the live popups: who a request will ring, and handing it to the hub.

The managers of a site's group are the extensions its group calls have rung (legs with `to.acd_group` =
the group's short number, from the last `window` seconds). They are read once per `ttl` per group, so a
burst of requests costs one query. A group that has never rung yet has no known managers (asked again
after `miss_ttl`): the request then goes to supervisors only (docs/realtime.md, "Who receives what").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine, select

from bridge.connector_api import CallEvent
from bridge.realtime import publish
from bridge.store.engine import reader
from bridge.store.schema import legs

log = logging.getLogger("callbridge.widget")

__all__ = ["GroupManagers", "announce"]

MAX_MANAGERS = 200


class GroupManagers:
    """The extensions a group rings, from the store's legs, cached per group for `ttl` seconds."""

    def __init__(
        self,
        *,
        ttl: float = 300.0,
        miss_ttl: float = 10.0,
        window: float = 30 * 86400,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.ttl = ttl
        self.miss_ttl = miss_ttl
        self.window = window
        self.clock = clock
        self._cache: dict[str, tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def of(self, engine: Engine, group: str) -> tuple[str, ...]:
        """The group's extensions, sorted (empty when none of its calls is on record). Reads without
        taking SQLite's write lock: call it outside a writing transaction."""
        now = self.clock()
        with self._lock:
            cached = self._cache.get(group)
        if cached is not None and cached[0] > now:
            return cached[1]
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
            found = tuple(sorted(rows))
        with self._lock:
            self._cache[group] = (now + (self.ttl if found else self.miss_ttl), found)
        return found


def announce(event: CallEvent) -> None:
    """Hand a committed `callback.requested` to this instance's hub (which adds the caller's card and
    forwards it to the other instances); best effort: a popup must never fail the request."""
    try:
        if not publish([event]):
            log.debug("widget request %s: no realtime hub in this process", event.entry_id)
    except Exception:  # noqa: BLE001 - the request is stored; only the popup is lost
        log.exception("widget request %s could not be sent to the live popups", event.entry_id)
