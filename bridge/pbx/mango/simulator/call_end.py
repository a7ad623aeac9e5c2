"""What Mango posts when a call the simulator knows comes to an end by a command (hangup, transfer):
the `Disconnected` of its live legs, the entry's `/events/summary` (mango.md §2.2) and the completion of its
recordings (§2.3). Pure functions over the `/events/call` payloads seen so far for one entry.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from bridge.pbx.mango.scenarios import Notification, recording_completed, summary_notification

BY_EXTERNAL_COMMAND = 1181  # mango.md §4: "external-system command"
INCOMING, OUTGOING, INTERNAL = 1, 2, 0

# Fields that only belong to the state they came with (API v2, mango.md §2.1).
_TRANSIENT = ("hold_initiator",)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _party(payload: Mapping[str, Any], side: str) -> dict[str, Any]:
    value = payload.get(side)
    return dict(value) if isinstance(value, Mapping) else {}


def _ordered(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return sorted(events, key=lambda e: (_int(e.get("timestamp")), _int(e.get("seq"))))


def last_moment(events: Iterable[Mapping[str, Any]]) -> int:
    """The newest timestamp among `events` (0 if none)."""
    return max((_int(e.get("timestamp")) for e in events), default=0)


def disconnect(leg: Mapping[str, Any], ts: int, reason: int) -> Notification:
    """The `Disconnected` that ends `leg` (its newest payload) at `ts`: the next seq, same parties."""
    payload = {k: v for k, v in leg.items() if k != "disconnect_reason"}
    for side in ("from", "to"):
        payload[side] = {k: v for k, v in _party(leg, side).items() if k not in _TRANSIENT}
    payload.update(
        timestamp=ts, seq=_int(leg.get("seq")) + 1, call_state="Disconnected", disconnect_reason=reason
    )
    if "dct" in payload:  # keep `dct` last, as the other events have it
        payload["dct"] = payload.pop("dct")
    return Notification("events/call", payload)


def direction(events: Sequence[Mapping[str, Any]]) -> int:
    """1 incoming, 2 outgoing (an employee dials a number), 0 internal (employee to employee)."""
    ordered = _ordered(events)
    if not ordered:
        return INCOMING
    first_from, first_to = _party(ordered[0], "from"), _party(ordered[0], "to")
    if first_from.get("extension") and first_to.get("extension") and not first_from.get("taken_from_call_id"):
        return INTERNAL
    if any(_party(e, "from").get("extension") and not _party(e, "to").get("extension") for e in ordered):
        return OUTGOING
    return INCOMING


def _customer_side(event: Mapping[str, Any], call_direction: int) -> bool:
    """Whether the leg joins the customer (not an employee-to-employee consultation)."""
    if call_direction == INTERNAL:
        return True
    if call_direction == OUTGOING:
        return not _party(event, "to").get("extension")
    return not _party(event, "from").get("extension")


def summary(entry_id: str, events: Sequence[Mapping[str, Any]], *, end: int, reason: int) -> Notification:
    """The `/events/summary` of the entry whose `/events/call` payloads are `events`, ended at `end`."""
    ordered = _ordered(events)
    kind = direction(ordered)
    first = ordered[0] if ordered else {}
    create = _int(first.get("timestamp")) or end
    customer_legs = [e for e in ordered if _customer_side(e, kind)]
    talked = next((e for e in customer_legs if e.get("call_state") == "Connected"), None)
    talk = _int(talked.get("timestamp")) if talked else 0
    if kind == OUTGOING:
        dialled = next(e for e in ordered if not _party(e, "to").get("extension"))
        caller = _party(dialled, "from")
        from_ = {k: caller[k] for k in ("extension", "number") if caller.get(k)}
        to: dict[str, Any] = {"number": _party(dialled, "to").get("number")}
        line = caller.get("line_number")
        forward = create
    elif kind == INTERNAL:
        from_ = {k: v for k, v in _party(first, "from").items() if k in ("extension", "number")}
        to = {k: v for k, v in _party(first, "to").items() if k in ("extension", "number")}
        line = None
        forward = create
    else:
        from_ = {"number": _party(first, "from").get("number")}
        line = _party(first, "to").get("line_number") or _party(first, "from").get("line_number")
        at_employee = [e for e in customer_legs if _party(e, "to").get("extension")]
        forward = _int(at_employee[0].get("timestamp")) if at_employee else create
        named = talked or (at_employee[0] if at_employee else None)
        if named is None:
            to = {"number": line}
        else:
            party = _party(named, "to")
            to = {"extension": party.get("extension")}
            if talked or not party.get("acd_group"):  # no `number` for a failed group call (§2.2)
                to["number"] = party.get("number")
    return summary_notification(
        entry_id,
        direction=kind,
        from_=from_,
        to=to,
        line=line,
        times=(create, forward, talk, end),
        result=1 if talk else 0,
        reason=reason,
    )


def finished_recordings(open_recordings: Iterable[Mapping[str, Any]], ts: int) -> list[Notification]:
    """`Completed` and `/events/record/added` for every recording still running (its newest payload)."""
    notes: list[Notification] = []
    for started in open_recordings:
        notes += recording_completed(
            recording_id=str(started["recording_id"]),
            entry_id=str(started.get("entry_id", "")),
            call_id=str(started.get("call_id", "")),
            extension=str(started.get("extension", "")),
            seq=_int(started.get("seq")) + 1,
            ts=ts + 1,
            added_ts=ts + 2,
        )
    return notes
