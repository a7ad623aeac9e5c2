"""The routing service: from a leg that appeared in the IVR to a decision, stored, and a paced route.

With `routing.intercept`, a leg ringing at an employee through a ring group is considered too (for
schemes without an IVR step): it is moved only when the employee chosen is not rung already.

`on_events` is given the processor's newly folded events (in its thread, so it only filters and hands
work to a pool). For each incoming leg that `Appeared` in the IVR on a routed line, one worker claims the
call's routing row (one decision per call), decides under `routing.decide_within_ms`, stores the verdict
and, when an employee was chosen in time, queues the route. No decision in time: nothing is sent.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from sqlalchemy import Engine

from bridge.config import Settings
from bridge.config.model import RoutingSettings
from bridge.connector_api import CallEvent, Connector
from bridge.connector_api.events import CALL_RINGING
from bridge.pbx.events import CallLegEvent, LegState, PbxEvent
from bridge.pbx.port import PbxClientFactory, PbxError
from bridge.routing import outcomes, store
from bridge.routing.decide import Decider
from bridge.routing.queue import ROUTE_PREFIX, PendingRoute, RouteQueue

log = logging.getLogger(__name__)

IVR = "ivr"
ABONENT = "abonent"
TOO_OLD = 60.0  # an IVR leg that appeared longer ago than this (a replayed backlog) is not routed
GROUPS_TTL = 300.0


def _intercepted(event: CallLegEvent, settings: RoutingSettings) -> bool:
    """A leg ringing at an employee through a ring group that `routing.intercept` may move (mango.md §5:
    route also takes a leg ringing at A to B)."""
    group = event.to.acd_group
    if not (settings.intercept and event.location == ABONENT and group and event.to.extension):
        return False
    return not settings.groups or group in settings.groups


class RoutingService:
    """See the module docstring."""

    def __init__(
        self,
        engine: Engine,
        settings: Callable[[], Settings],
        connectors: Callable[[], Mapping[str, Connector]],
        client_factory: PbxClientFactory,
        *,
        workers: int = 8,
        clock: Callable[[], float] = time.time,
        queue: RouteQueue | None = None,
    ) -> None:
        """`settings()`: the settings in force (the panel's saved values applied); `client_factory()`: a
        PBX client for a route or a group listing."""
        self._engine = engine
        self._settings = settings
        self._clock = clock
        self._client_factory = client_factory
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="routing")
        self._crm_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="routing-crm")
        region = settings().phones.default_region
        self.decider = Decider(engine, connectors, self._crm_pool, region=region, clock=clock)
        self.queue = queue or RouteQueue(engine, client_factory, clock=clock)
        self._region = region
        self._groups: tuple[float, tuple[str, ...], frozenset[str]] | None = None
        self._groups_lock = threading.Lock()

    def on_events(self, events: Sequence[PbxEvent]) -> None:
        """Start a decision for each leg that waits in the IVR on a routed line."""
        settings = self._settings().routing
        if not settings.enabled:
            return
        for event in events:
            if self._wanted(event, settings):
                deadline = time.monotonic() + settings.decide_within_ms / 1000.0
                self._pool.submit(self._route, event, settings, deadline)  # type: ignore[arg-type]

    def _wanted(self, event: PbxEvent, settings: RoutingSettings) -> bool:
        if not isinstance(event, CallLegEvent) or event.state != LegState.APPEARED:
            return False
        if event.location != IVR and not _intercepted(event, settings):
            return False
        if not event.from_.number or event.from_.extension:  # a customer's call, not an employee's
            return False
        if self._clock() - event.timestamp > TOO_OLD:
            return False
        if settings.lines:
            line = event.line_number or event.to.number or ""
            wanted = {form for raw in settings.lines for form in store.number_forms(raw, self._region)}
            return bool(wanted & set(store.number_forms(line, self._region))) if line else False
        return True

    def _route(self, event: CallLegEvent, settings: RoutingSettings, deadline: float) -> None:
        try:
            self._decide_and_queue(event, settings, deadline)
        except Exception:
            log.exception("routing: the decision for call %s failed; the IVR goes on", event.entry_id)

    def _decide_and_queue(self, event: CallLegEvent, settings: RoutingSettings, deadline: float) -> None:
        customer = event.from_.number or ""
        started = time.monotonic()
        if not store.claim(self._engine, event.entry_id, event.call_id, customer, self._clock()):
            return
        allowed = self._allowed(settings)
        verdict = self.decider.decide(event.entry_id, customer, settings, deadline, allowed=allowed)
        took = round((time.monotonic() - started) * 1000)
        decision = verdict.decision
        if decision is not None and time.monotonic() > deadline:  # chosen, but too late to be useful
            decision, detail = None, f"not routed: no decision within {settings.decide_within_ms} ms"
        elif decision is not None and event.location != IVR and self._rung(event, decision.extension):
            decision, detail = None, f"not moved: {decision.extension} is already being rung"
        else:
            detail = verdict.detail
        if decision is None:
            store.save(
                self._engine,
                event.entry_id,
                self._clock(),
                outcome=outcomes.UNDECIDED,
                detail=detail,
                decided_ms=took,
            )
            return
        store.save(
            self._engine,
            event.entry_id,
            self._clock(),
            outcome=outcomes.QUEUED,
            extension=decision.extension,
            employee_name=decision.name,
            reason=decision.reason,
            source=decision.source,
            detail=verdict.detail,
            decided_ms=took,
        )
        self.queue.put(PendingRoute(event.entry_id, event.call_id, decision.extension, time.monotonic()))

    def annotate(self, events: Sequence[CallEvent]) -> list[CallEvent]:
        """The CallEvents with the routing decision (`extra["routing"]`, in plain words) on the ringing of
        a leg a route made, so the employee's popup says why the call came to them."""
        routed = [
            e for e in events if e.type == CALL_RINGING and (e.command_id or "").startswith(ROUTE_PREFIX)
        ]
        if not routed:
            return list(events)
        with self._engine.connect() as conn:
            details = store.details(conn, {e.command_id for e in routed if e.command_id})
        return [
            replace(e, extra={**e.extra, "routing": details[e.command_id][1]})
            if e.type == CALL_RINGING and e.command_id in details and e.extension == details[e.command_id][0]
            else e
            for e in events
        ]

    def _rung(self, event: CallLegEvent, extension: str) -> bool:
        """Whether the call already rings at `extension` (intercepting would only take it from there)."""
        if event.to.extension == extension:
            return True
        with self._engine.connect() as conn:
            return extension in store.ringing(conn, event.entry_id)

    def _allowed(self, settings: RoutingSettings) -> frozenset[str] | None:
        """The operators of `routing.groups` (listed by the PBX, kept for 5 minutes); None = anyone."""
        if not settings.groups:
            return None
        wanted = tuple(settings.groups)
        with self._groups_lock:
            cached = self._groups
            if cached is not None and cached[1] == wanted and time.monotonic() - cached[0] < GROUPS_TTL:
                return cached[2]
            try:
                client = self._client_factory()
                try:
                    groups = client.groups()
                finally:
                    client.close()
            except (PbxError, ValueError) as exc:
                log.warning("routing: the PBX's ring groups cannot be listed: %s", exc)
                return cached[2] if cached is not None and cached[1] == wanted else frozenset()
            names = set(wanted)
            members = frozenset(
                operator
                for group in groups
                if names & {group.group_id, group.extension or "", group.name or ""}
                for operator in group.operators
            )
            self._groups = (time.monotonic(), wanted, members)
            return members

    def run_forever(self, stop: threading.Event) -> None:
        """Send the queued routes until `stop`; then let the decisions in flight end."""
        try:
            self.queue.run_forever(stop)
        finally:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._crm_pool.shutdown(wait=False, cancel_futures=True)


__all__ = ["RoutingService"]
