"""The decision: which employee a caller waiting in the IVR is put through to, and why.

Reasons are tried in `routing.order`: `familiar` (the employee who last talked with the number within
`familiar_window_hours`, from our own store) and `crm_responsible` (the responsible employee the CRM
connectors name through `responsible_for`, asked in parallel; the first usable answer wins). An employee
who is inactive, outside `routing.groups` or (with `skip_busy`) on a call is passed over and the next
reason is tried. Everything happens before the deadline; a CRM that has not answered by then is ignored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from bridge.config.model import RoutingSettings
from bridge.connector_api import Capability, Connector, Employee
from bridge.connector_api.phones import InvalidPhoneNumber, to_e164
from bridge.routing import store
from bridge.routing.outcomes import CRM_RESPONSIBLE, FAMILIAR
from bridge.store.engine import reader

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decision:
    """The employee chosen and why, with the words shown on the call's page."""

    extension: str
    name: str | None
    reason: str  # familiar | crm_responsible
    detail: str
    source: str | None = None  # the connector that named the responsible


@dataclass(frozen=True)
class Verdict:
    """A decision, or None with why nothing was chosen (`notes`)."""

    decision: Decision | None
    notes: tuple[str, ...]

    @property
    def detail(self) -> str:
        if self.decision is not None:
            return "; ".join((self.decision.detail, *self.notes))
        return "not routed: " + "; ".join(self.notes or ("no reason applies",))


def _who(extension: str, name: str | None) -> str:
    return f"{name} ({extension})" if name else extension


def _ago(seconds: float) -> str:
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min ago"
    if seconds < 48 * 3600:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} days ago"


class Decider:
    """Makes routing decisions; see the module docstring. Thread-safe."""

    def __init__(
        self,
        engine: Engine,
        connectors: Callable[[], Mapping[str, Connector]],
        pool: Executor,
        *,
        region: str = "RU",
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`connectors()`: the connectors now; `pool` runs the CRMs' `responsible_for` calls."""
        self._reader = reader(engine)
        self._connectors = connectors
        self._pool = pool
        self._region = region
        self._clock = clock

    def decide(
        self,
        entry_id: str,
        customer: str,
        settings: RoutingSettings,
        deadline: float,
        *,
        allowed: frozenset[str] | None = None,
    ) -> Verdict:
        """The decision for the caller `customer` of call `entry_id`, before `deadline` (time.monotonic);
        `allowed`: the extensions routing may choose (None = anyone)."""
        notes: list[str] = []
        for reason in settings.order:
            if time.monotonic() >= deadline:
                notes.append(f"no decision within {settings.decide_within_ms} ms")
                break
            if reason == FAMILIAR:
                decision = self._familiar(entry_id, customer, settings, allowed, notes)
            else:
                decision = self._responsible(entry_id, customer, settings, deadline, allowed, notes)
            if decision is not None:
                return Verdict(decision, tuple(notes))
        return Verdict(None, tuple(notes))

    def _familiar(
        self,
        entry_id: str,
        customer: str,
        settings: RoutingSettings,
        allowed: frozenset[str] | None,
        notes: list[str],
    ) -> Decision | None:
        now = self._clock()
        since = now - settings.familiar_window_hours * 3600
        with self._reader.connect() as conn:
            talk = store.last_talk(conn, store.number_forms(customer, self._region), since, exclude=entry_id)
            if talk is None:
                notes.append(
                    f"no one talked with the customer in the last {settings.familiar_window_hours:g} h"
                )
                return None
            name, why_not = self._check(conn, talk.extension, entry_id, settings, allowed)
        who = _who(talk.extension, name)
        if why_not:
            notes.append(f"the familiar employee {who} {why_not}")
            return None
        detail = f"put through to {who}: spoke with the customer {_ago(now - talk.at)}"
        return Decision(talk.extension, name, FAMILIAR, detail)

    def _responsible(
        self,
        entry_id: str,
        customer: str,
        settings: RoutingSettings,
        deadline: float,
        allowed: frozenset[str] | None,
        notes: list[str],
    ) -> Decision | None:
        crms = {name: c for name, c in self._connectors().items() if Capability.RESPONSIBLE in c.capabilities}
        if not crms:
            notes.append("no CRM that names responsibles is enabled")
            return None
        try:
            number = to_e164(customer, self._region)
        except InvalidPhoneNumber:
            notes.append("the caller's number is not one a CRM can look up")
            return None
        asked: dict[Future[Employee | None], str] = {
            self._pool.submit(crm.responsible_for, number): name for name, crm in crms.items()
        }
        for name, employee in self._answers(asked, deadline, notes, settings.decide_within_ms):
            extension = employee.extension
            who = employee.name or "the responsible"
            if not extension:
                notes.append(f"{name}: {who} has no extension")
                continue
            with self._reader.connect() as conn:
                stored_name, why_not = self._check(conn, extension, entry_id, settings, allowed)
            who = _who(extension, employee.name or stored_name)
            if why_not:
                notes.append(f"{name}'s responsible {who} {why_not}")
                continue
            detail = f"put through to {who}: the customer's responsible in {name}"
            return Decision(extension, employee.name or stored_name, CRM_RESPONSIBLE, detail, source=name)
        return None

    @staticmethod
    def _answers(
        asked: Mapping[Future[Employee | None], str], deadline: float, notes: list[str], budget_ms: int
    ) -> Iterable[tuple[str, Employee]]:
        """The CRMs' named responsibles as they come, until every CRM answered or the deadline."""
        pending = set(asked)
        while pending:
            done, pending = wait(
                pending, timeout=max(0.0, deadline - time.monotonic()), return_when=FIRST_COMPLETED
            )
            if not done:
                names = ", ".join(sorted(asked[f] for f in pending))
                notes.append(f"no answer from {names} within {budget_ms} ms")
                for future in pending:
                    future.cancel()
                return
            for future in done:
                name = asked[future]
                try:
                    employee = future.result()
                except Exception as exc:  # a failing CRM is one missing answer
                    log.warning("routing: %s could not name the responsible: %s", name, type(exc).__name__)
                    notes.append(f"{name} failed to answer")
                    continue
                if employee is None:
                    notes.append(f"{name} names no responsible")
                    continue
                yield name, employee

    def _check(
        self,
        conn: Connection,
        extension: str,
        entry_id: str,
        settings: RoutingSettings,
        allowed: frozenset[str] | None,
    ) -> tuple[str | None, str | None]:
        """The employee's stored name, and why they cannot take the call (None when they can)."""
        name, active = store.employee(conn, extension)
        if not active:
            return name, "is inactive"
        if allowed is not None and extension not in allowed:
            return name, "is in none of the routed groups"
        if settings.skip_busy and store.on_a_call(conn, extension, exclude=entry_id):
            return name, "is on a call"
        return name, None


__all__ = ["Decider", "Decision", "Verdict"]
