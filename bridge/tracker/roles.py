"""Who a leg is about: the employee it rings, the employee who answered it, and transfers between legs.

Mango's shapes (mango.md §2.4, §2.5):
- incoming / internal: the employee is `to.extension` of a leg at location abonent;
- outgoing from a phone (§2.5 item 1): one leg with `from.extension` = the employee and no `to.extension`;
- click-to-call (§2.5 item 2): leg A rings the *initiator* first (`to.extension` = initiator, `command_id`,
  no `taken_from_call_id`); connecting it only means the employee picked up. Leg B then dials the target
  from the employee (`taken_from_call_id` = A): its Connected is the answer, by `from.extension`;
- transfer (§2.5 item 4): a new leg at another employee whose calling party, taken from an answered leg,
  becomes the customer instead of the first employee.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.pbx.events import LegState
from bridge.tracker.fold import TALKING_STATES, Fold, LegFold

TRANSFER_KINDS = ("blind", "consultative", "return_blind")


def is_callback_leg(leg: LegFold) -> bool:
    """Leg A of a click-to-call: the PBX rings the initiating employee before dialling the target."""
    return (
        leg.command_id is not None
        and leg.taken_from is None
        and leg.to_extension is not None
        and leg.at_employee_location
    )


def ringing_employee(leg: LegFold) -> str | None:
    """The employee whose phone this leg rings (or, for a call dialled from a phone, who dials it)."""
    if not leg.at_employee_location:
        return None
    if leg.to_extension:
        return leg.to_extension
    caller = leg.first.from_.extension
    if caller and leg.taken_from is None:
        return caller
    return None


def answering_employee(leg: LegFold) -> str | None:
    """The employee who talks on this leg once it is connected; None if it never connected or is not an
    answer (an IVR leg, or the initiator's own leg A of a click-to-call)."""
    if leg.connected_at is None or not leg.at_employee_location or is_callback_leg(leg):
        return None
    if leg.to_extension:
        return leg.to_extension
    talking = [e for e in leg.events if e.state in TALKING_STATES]
    return talking[0].from_.extension if talking else None


def answer_legs(fold: Fold) -> list[tuple[LegFold, str]]:
    """Legs answered by an employee, earliest answer first."""
    found = [(leg, answering_employee(leg)) for leg in fold.legs.values()]
    answered = [(leg, ext) for leg, ext in found if ext is not None]
    return sorted(answered, key=lambda pair: (pair[0].connected_at, pair[0].call_id))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Transfer:
    call_id: str  # the new leg
    to_extension: str
    from_extension: str | None
    kind: str
    occurred_at: int


def transfers(fold: Fold) -> list[Transfer]:
    """Transfers of an answered call to a different employee, oldest first.

    A leg L at employee E2 is a transfer when it was taken from a leg answered by E1 != E2 and either its
    calling party at some point is no longer E1 (the customer replaced the employee, §2.5 item 4) or Mango
    says so in the API v2 `transfer` field. The kind is the `transfer` field if given, else consultative when
    E1 talked to E2 on L before handing over, else blind.
    """
    found: list[Transfer] = []
    for leg in fold.legs.values():
        target = leg.to_extension
        if not target or not leg.at_employee_location:
            continue
        source = fold.legs.get(leg.taken_from) if leg.taken_from else None
        previous = answering_employee(source) if source is not None else None
        if previous is None:
            if not leg.transfer:
                continue
            previous = next((e.from_.extension for e in leg.events if e.from_.extension), None)
        if previous == target:
            continue
        handed_over = [e.timestamp for e in leg.events if e.from_.extension != previous]
        if not handed_over and not leg.transfer:
            continue
        if leg.transfer:
            kind = leg.transfer
        else:
            consulted = any(e.state in TALKING_STATES and e.from_.extension == previous for e in leg.events)
            kind = "consultative" if consulted else "blind"
        when = min(handed_over) if handed_over else min(e.timestamp for e in leg.events if e.transfer)
        found.append(Transfer(leg.call_id, target, previous, kind, when))
    return sorted(found, key=lambda t: (t.occurred_at, t.call_id))


def all_disconnected(fold: Fold) -> bool:
    return bool(fold.legs) and all(leg.state == LegState.DISCONNECTED for leg in fold.legs.values())
