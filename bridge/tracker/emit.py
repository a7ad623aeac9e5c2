"""Which CallEvents a fold calls for, and which of them are new.

Every event has a key unique within the call. A key is *decided* once: either the event is emitted, or it
is dropped for good (a ringing that comes after its leg moved on, a live event after the call closed).
Decided keys go into the returned `emitted` set so that no later fold brings them back.
"""

from __future__ import annotations

from dataclasses import replace

from bridge.connector_api.events import (
    CALL_ANSWERED,
    CALL_ENDED,
    CALL_MISSED,
    CALL_RECORDING_READY,
    CALL_RINGING,
    CALL_TRANSFERRED,
    CallEvent,
)
from bridge.pbx.events import LegState
from bridge.tracker.fold import Fold
from bridge.tracker.roles import answer_legs, ringing_employee
from bridge.tracker.snapshot import Facts

_LIVE_ORDER = {CALL_RINGING: 0, CALL_ANSWERED: 1, CALL_TRANSFERRED: 2}


def _base(fold: Fold, facts: Facts, type_: str, key: str, occurred_at: float) -> CallEvent:
    call = facts.call
    return CallEvent(
        type=type_,
        entry_id=call.entry_id,
        key=key,
        occurred_at=float(occurred_at),
        direction=call.direction,
        customer_number=call.customer_number,
        line_number=call.line_number,
        extensions=call.extensions,
        started_at=call.started_at,
        command_id=call.command_id,
    )


def _live_events(fold: Fold, facts: Facts) -> list[tuple[CallEvent, bool]]:
    """ringing / answered / transferred candidates, each with whether the fold still allows emitting it."""
    out: list[tuple[CallEvent, bool]] = []
    for leg in fold.legs.values():
        employee = ringing_employee(leg)
        if employee is None:
            continue
        event = _base(fold, facts, CALL_RINGING, f"{CALL_RINGING}:{leg.call_id}", leg.appeared_at)
        extra = {"acd_group": leg.acd_group} if leg.acd_group else {}
        event = replace(event, extension=employee, call_id=leg.call_id, extra=extra)
        out.append((event, leg.state == LegState.APPEARED))  # a leg that moved on rings no more
    for leg, employee in answer_legs(fold):
        answered_at = float(leg.connected_at or 0)
        event = _base(fold, facts, CALL_ANSWERED, f"{CALL_ANSWERED}:{leg.call_id}", answered_at)
        out.append((replace(event, extension=employee, call_id=leg.call_id, answered_at=answered_at), True))
    for moved in facts.transfers:
        event = _base(fold, facts, CALL_TRANSFERRED, f"{CALL_TRANSFERRED}:{moved.call_id}", moved.occurred_at)
        event = replace(
            event,
            extension=moved.to_extension,
            transferred_from=moved.from_extension,
            transfer_kind=moved.kind,
            call_id=moved.call_id,
            answered_at=facts.call.answered_at,
        )
        out.append((event, True))
    return out


def _closing(fold: Fold, facts: Facts) -> CallEvent:
    """`call.ended` with everything known at the close."""
    call = facts.call
    known = (call.ended_at, call.started_at, fold.timed_out_at)
    occurred = next((t for t in known if t is not None), 0.0)
    recording_ids = tuple(
        r.recording_id for r in sorted(fold.recordings.values(), key=lambda r: (r.first_seen, r.recording_id))
    )
    extra: dict = {
        "status": call.status,
        "responsible": call.responsible,
        "missed": call.missed,
        "incomplete": call.incomplete,
    }
    if facts.transfers:
        extra["transferred_to"] = facts.transfers[-1].to_extension
    if fold.dtmf:
        extra["dtmf"] = [d.dtmf for d in fold.dtmf]
    event = _base(fold, facts, CALL_ENDED, CALL_ENDED, occurred)
    return replace(
        event,
        extension=call.answered_by,
        answered_at=call.answered_at,
        ended_at=call.ended_at,
        duration=call.duration,
        talk_seconds=call.talk_seconds,
        wait_seconds=call.wait_seconds,
        disconnect_reason=call.disconnect_reason,
        recording_ids=recording_ids,
        extra=extra,
    )


def new_events(fold: Fold, facts: Facts, emitted: frozenset[str]) -> tuple[list[CallEvent], frozenset[str]]:
    """The CallEvents to emit now (keys not yet decided) and the updated set of decided keys."""
    decided = set(emitted)
    closed = facts.call.closed
    live: list[CallEvent] = []
    for event, allowed in _live_events(fold, facts):
        if event.key in decided:
            continue
        decided.add(event.key)  # decided now: emitted, or dropped for good
        if allowed and not closed:
            live.append(event)
    live.sort(key=lambda e: (e.occurred_at, _LIVE_ORDER[e.type], e.key))

    closing: list[CallEvent] = []
    if closed and CALL_ENDED not in decided:
        ended = _closing(fold, facts)
        closing.append(ended)
        decided.add(CALL_ENDED)
        if facts.call.missed and CALL_MISSED not in decided:
            closing.append(
                replace(ended, type=CALL_MISSED, key=CALL_MISSED, extension=facts.call.responsible)
            )
            decided.add(CALL_MISSED)

    ready: list[CallEvent] = []
    if CALL_ENDED in decided:  # recordings are attached to a finished call only
        call = facts.call
        for rec in sorted(fold.recordings.values(), key=lambda r: (r.ready_at or 0, r.recording_id)):
            key = f"{CALL_RECORDING_READY}:{rec.recording_id}"
            if not rec.ready or key in decided:
                continue
            decided.add(key)
            event = _base(fold, facts, CALL_RECORDING_READY, key, rec.ready_at or 0)
            ready.append(
                replace(
                    event,
                    extension=rec.extension or call.answered_by,
                    call_id=rec.call_id,
                    recording_id=rec.recording_id,
                    recording_ids=(rec.recording_id,),
                    answered_at=call.answered_at,
                    ended_at=call.ended_at,
                    duration=call.duration,
                    talk_seconds=call.talk_seconds,
                )
            )
    return live + closing + ready, frozenset(decided)
