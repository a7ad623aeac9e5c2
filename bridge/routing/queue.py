"""Sending `commands/route` within Mango's limit of one per 2 s per product.

Decided routes wait in a FIFO queue; one is sent per `interval`. Before sending, a route whose leg has left
the IVR (the store saw it end) or that has waited longer than `max_wait` (the IVR step has most likely
moved on) is dropped, so a burst never turns into a train of late commands. Every route goes through the
command journal; a refused or failed one simply leaves the call to the IVR scheme.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine

from bridge.commands.journal import ACCEPTED, FAILED, SENT, CommandJournal, new_command_id
from bridge.pbx.port import PbxClientFactory, PbxError, PbxRateLimited, PbxTransportError
from bridge.routing import outcomes, store
from bridge.store.engine import reader

log = logging.getLogger(__name__)

PATH = "commands/route"
MANGO_INTERVAL = 2.0  # Mango: commands/route, 1 request per 2 s per product (mango.md §3.2, §5)
MARGIN = 0.1  # keeps network jitter from bringing two requests closer than 2 s at Mango
ROUTE_PREFIX = "rt-"  # the command ids of routes (Mango echoes them on the legs they make)
MAX_WAIT = 10.0  # the IVR step Mango's documentation suggests holds the caller about 10 s


@dataclass(frozen=True)
class PendingRoute:
    """A decided route waiting for its turn."""

    entry_id: str
    call_id: str  # the leg in the IVR
    extension: str
    queued_at: float  # time.monotonic()


class RouteQueue:
    """Paced sending of routes; `put` from any thread, `run_forever` in one."""

    def __init__(
        self,
        engine: Engine,
        client_factory: PbxClientFactory,
        *,
        journal: CommandJournal | None = None,
        interval: float = MANGO_INTERVAL + MARGIN,
        max_wait: float = MAX_WAIT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._client_factory = client_factory
        self._journal = journal or CommandJournal(engine, clock=clock)
        self.interval = interval
        self.max_wait = max_wait
        self._clock = clock
        self._items: collections.deque[PendingRoute] = collections.deque()
        self._cond = threading.Condition()
        self._next_at = 0.0  # time.monotonic() when the next route may go
        self.sent_at: list[float] = []  # monotonic send times of the last routes (for tests and benchmarks)

    def put(self, item: PendingRoute) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def run_forever(self, stop: threading.Event) -> None:
        """Send queued routes, one per `interval`, until `stop` is set."""
        while not stop.is_set():
            try:
                self.run_once(stop)
            except Exception:  # a store hiccup must not end routing
                log.exception("routing: sending a route failed")
                stop.wait(0.5)

    def run_once(self, stop: threading.Event) -> bool:
        """Wait for a route and its slot, then send it (or drop it); False when nothing was waiting."""
        with self._cond:
            if not self._items:
                self._cond.wait(0.2)
            if not self._items:
                return False
        while (wait := self._next_at - time.monotonic()) > 0 and not stop.is_set():
            self._drop_stale()
            stop.wait(min(wait, 0.2))
        if stop.is_set():
            return False
        self._drop_stale()
        with self._cond:
            if not self._items:
                return False
            item = self._items.popleft()
        with self._reader.connect() as conn:
            waiting = store.in_ivr(conn, item.call_id)
        if not waiting:
            self._drop(item, "the caller left the IVR before the route's turn")
            return True
        self._send(item)
        return True

    def _drop_stale(self) -> None:
        limit = time.monotonic() - self.max_wait
        with self._cond:
            stale = [i for i in self._items if i.queued_at < limit]
            for item in stale:
                self._items.remove(item)
        for item in stale:
            self._drop(item, f"waited over {self.max_wait:g} s for Mango's route limit")

    def _drop(self, item: PendingRoute, why: str) -> None:
        log.info("routing: route of %s to %s dropped: %s", item.entry_id, item.extension, why)
        store.save(self._engine, item.entry_id, self._clock(), outcome=outcomes.DROPPED, detail=why)

    def _send(self, item: PendingRoute) -> None:
        command_id = new_command_id(ROUTE_PREFIX[:-1])
        self._journal.record(
            PATH, {"call_id": item.call_id, "to_number": item.extension}, command_id=command_id
        )
        # On the call before it is sent: the legs Mango makes for it may be folded before its answer comes.
        store.save(self._engine, item.entry_id, self._clock(), command_id=command_id)
        status, result, outcome = FAILED, None, outcomes.FAILED
        client = None
        try:
            client = self._client_factory()
            # The pace counts from the moment the request goes out, not from the work before it.
            self._next_at = time.monotonic() + self.interval
            self.sent_at = [*self.sent_at[-99:], time.monotonic()]
            accepted = client.route(item.call_id, item.extension, command_id=command_id)
            status, result, outcome = ACCEPTED, accepted.result, outcomes.SENT
        except PbxRateLimited as exc:
            result = exc.code
            self._next_at = time.monotonic() + max(self.interval, exc.retry_after or 0.0)
            log.warning("routing: Mango refused route %s over its limit", command_id)
        except PbxTransportError as exc:
            if exc.maybe_delivered:
                status, outcome = SENT, outcomes.SENT
            log.warning("routing: route %s got no answer: %s", command_id, exc.message)
        except PbxError as exc:  # 4101 and the like: the IVR scheme goes on
            result = exc.code
            log.info("routing: Mango refused route %s: %s", command_id, exc.message)
        except ValueError as exc:  # no credentials configured
            log.warning("routing: cannot send route %s: %s", command_id, exc)
        finally:
            self._journal.sent(command_id, status, result)
            if client is not None:
                client.close()
        store.save(self._engine, item.entry_id, self._clock(), outcome=outcome, command_id=command_id)


__all__ = ["MANGO_INTERVAL", "MAX_WAIT", "PATH", "ROUTE_PREFIX", "PendingRoute", "RouteQueue"]
