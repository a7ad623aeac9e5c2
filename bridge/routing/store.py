"""What routing reads from and writes to the store: the `call_routes` row of a call, the familiar employee
(the last who talked with a number), and whether an employee is on a call or inactive."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, and_, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from bridge.connector_api.phones import InvalidPhoneNumber, mango_digits, to_e164
from bridge.pbx.events import LegState
from bridge.routing.outcomes import DECIDING
from bridge.store.schema import call_routes, calls, commands, employees, legs
from bridge.store.write_lock import write_transaction

ON_A_CALL = (LegState.CONNECTED, LegState.ON_HOLD)


@dataclass(frozen=True)
class Talk:
    """The last time an employee talked with a number."""

    extension: str
    at: float
    entry_id: str


def number_forms(raw: str, region: str) -> list[str]:
    """The forms a customer's number may be stored in: as the PBX sent it, and Mango's digits."""
    forms = {raw}
    try:
        e164 = to_e164(raw, region)
    except InvalidPhoneNumber:
        return sorted(forms)
    forms.update({e164, mango_digits(e164)})
    return sorted(forms)


def claim(engine: Engine, entry_id: str, ivr_call_id: str, customer: str | None, now: float) -> bool:
    """Start the call's one decision; False when the call already has one (another IVR leg, a replay)."""
    try:
        with write_transaction(engine) as conn:
            conn.execute(
                insert(call_routes).values(
                    entry_id=entry_id,
                    ivr_call_id=ivr_call_id,
                    customer_number=customer,
                    outcome=DECIDING,
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError:
        return False
    return True


def save(engine: Engine, entry_id: str, now: float, **values: Any) -> None:
    """Update the call's routing row (outcome, employee, reason, detail, command id...)."""
    with write_transaction(engine) as conn:
        conn.execute(
            update(call_routes).where(call_routes.c.entry_id == entry_id).values(updated_at=now, **values)
        )


def last_talk(conn: Connection, numbers: Iterable[str], since: float, *, exclude: str) -> Talk | None:
    """The employee who last talked with one of `numbers` since `since` (answered calls, newest first)."""
    employee = calls.c.answered_by
    row = conn.execute(
        select(employee, calls.c.answered_at, calls.c.entry_id)
        .where(
            calls.c.customer_number.in_(list(numbers)),
            calls.c.answered_at >= since,
            employee.is_not(None),
            calls.c.entry_id != exclude,
        )
        .order_by(calls.c.answered_at.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return Talk(extension=str(row[0]), at=float(row[1]), entry_id=str(row[2]))


def on_a_call(conn: Connection, extension: str, *, exclude: str) -> bool:
    """Whether the employee has a leg talking (or on hold) in an open call other than `exclude`."""
    open_call = select(calls.c.entry_id).where(calls.c.entry_id == legs.c.entry_id, calls.c.closed.is_(False))
    return bool(
        conn.execute(
            select(
                exists().where(
                    or_(legs.c.to_extension == extension, legs.c.from_extension == extension),
                    legs.c.state.in_(ON_A_CALL),
                    legs.c.ended_at.is_(None),
                    legs.c.entry_id != exclude,
                    open_call.exists(),
                )
            )
        ).scalar()
    )


def employee(conn: Connection, extension: str) -> tuple[str | None, bool]:
    """The employee's name and whether they are active (an unknown extension: no name, active)."""
    row = conn.execute(
        select(employees.c.name, employees.c.active).where(employees.c.extension == extension)
    ).first()
    return (None, True) if row is None else (row[0], bool(row[1]))


def in_ivr(conn: Connection, call_id: str) -> bool:
    """Whether the leg still waits where a route can move it, as far as the store knows: an IVR leg until
    it ends, a ringing leg until it is answered or ends (an unknown leg: waiting)."""
    row = conn.execute(select(legs.c.state, legs.c.location).where(legs.c.call_id == call_id)).first()
    if row is None:
        return True
    state, location = row
    if state == LegState.DISCONNECTED:
        return False
    return location == "ivr" or state == LegState.APPEARED


def ringing(conn: Connection, entry_id: str) -> set[str]:
    """The employees being rung in the call now."""
    rows = conn.execute(
        select(legs.c.to_extension).where(
            legs.c.entry_id == entry_id, legs.c.state == LegState.APPEARED, legs.c.to_extension.is_not(None)
        )
    )
    return {str(r[0]) for r in rows}


def details(conn: Connection, command_ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """The employee routed to and the decision's words, by the id of the route sent for them."""
    rows = conn.execute(
        select(call_routes.c.command_id, call_routes.c.extension, call_routes.c.detail).where(
            call_routes.c.command_id.in_(list(command_ids))
        )
    )
    return {str(r[0]): (str(r[1]), str(r[2])) for r in rows if r[1] and r[2]}


def route_of(conn: Connection, entry_id: str) -> dict[str, Any] | None:
    """The call's routing for the read API: the decision, its reason and what became of the command."""
    row = conn.execute(
        select(call_routes, commands.c.status.label("command_status"), commands.c.async_result)
        .select_from(call_routes.outerjoin(commands, and_(commands.c.command_id == call_routes.c.command_id)))
        .where(call_routes.c.entry_id == entry_id)
    ).first()
    if row is None:
        return None
    found = row._asdict()
    return {
        key: found[key]
        for key in (
            "outcome",
            "extension",
            "employee_name",
            "reason",
            "source",
            "detail",
            "command_id",
            "command_status",
            "async_result",
            "decided_ms",
            "created_at",
        )
    }


__all__ = [
    "Talk",
    "claim",
    "details",
    "employee",
    "in_ivr",
    "last_talk",
    "number_forms",
    "on_a_call",
    "ringing",
    "route_of",
    "save",
]
