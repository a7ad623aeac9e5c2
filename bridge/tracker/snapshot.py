"""Decide the call's facts from a fold: direction, parties, answered or missed, times, closed.

The summary (`/events/summary`) is Mango's final word where it speaks; the legs fill in before it comes
and where it is silent. See docs/tracker.md for the rules in prose.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bridge.connector_api.events import CALL_ENDED
from bridge.tracker.fold import Fold, LegFold
from bridge.tracker.model import CallSnapshot, LegSnapshot, RecordingSnapshot
from bridge.tracker.roles import (
    Transfer,
    all_disconnected,
    answer_legs,
    is_callback_leg,
    ringing_employee,
    transfers,
)

_SUMMARY_DIRECTIONS = {0: "internal", 1: "incoming", 2: "outgoing"}


@dataclass(frozen=True)
class Facts:
    """The snapshot plus what the emission rules need beside it."""

    call: CallSnapshot
    transfers: tuple[Transfer, ...]
    answered: bool


def _root_leg(fold: Fold) -> LegFold | None:
    """The leg the call started with: the earliest leg not taken from another known leg."""
    legs = fold.ordered_legs()
    roots = [leg for leg in legs if leg.taken_from is None or leg.taken_from not in fold.legs]
    candidates = roots or legs
    return candidates[0] if candidates else None


def direction_of(fold: Fold) -> str:
    summary = fold.summary
    if summary is not None:
        return _SUMMARY_DIRECTIONS.get(summary.direction, "unknown")
    root = _root_leg(fold)
    if root is None:
        return "unknown"
    if is_callback_leg(root):
        # click-to-call: `from` is the dialled target; an extension there means an employee was dialled
        return "internal" if any(e.from_.extension for e in root.events) else "outgoing"
    if root.first.from_.extension:
        return "internal" if root.to_extension else "outgoing"
    if root.first.from_.number or root.to_extension or root.location:
        return "incoming"
    return "unknown"


def _customer_number(fold: Fold, direction: str) -> str | None:
    summary = fold.summary
    events = fold.leg_events()
    if direction == "internal":
        return None
    if direction == "outgoing":
        # the dialled party: the side without an extension (summary `to`, else a leg's `to`)
        if summary is not None:
            for party in (summary.to, summary.from_):
                if party.number and not party.extension:
                    return party.number
        for e in events:
            if not e.to.extension and e.to.number:
                return e.to.number
        root = _root_leg(fold)  # click-to-call before leg B is known: leg A shows the target as `from`
        if root is not None and is_callback_leg(root) and root.first.from_.number:
            return root.first.from_.number
        return None
    if direction == "incoming" and summary is not None and summary.from_.number:
        return summary.from_.number
    for e in events:
        if not e.from_.extension and e.from_.number:
            return e.from_.number
    return next((d.from_number for d in fold.dtmf if d.from_number), None)


def _line_number(fold: Fold) -> str | None:
    if fold.summary is not None and fold.summary.line_number:
        return fold.summary.line_number
    found = next((e.line_number for e in fold.leg_events() if e.line_number), None)
    return found or next((d.line_number for d in fold.dtmf if d.line_number), None)


def _extensions(fold: Fold) -> tuple[str, ...]:
    found: set[str] = set()
    for leg in fold.legs.values():
        for e in leg.events:
            found.update(x for x in (e.from_.extension, e.to.extension) if x)
    if fold.summary is not None:
        found.update(x for x in (fold.summary.from_.extension, fold.summary.to.extension) if x)
    return tuple(sorted(found))


def _initiator(fold: Fold) -> str | None:
    """The employee who started an outgoing or internal call."""
    if fold.summary is not None and fold.summary.from_.extension:
        return fold.summary.from_.extension
    root = _root_leg(fold)
    if root is None:
        return None
    return root.to_extension if is_callback_leg(root) else root.first.from_.extension


def _earliest_ringing(fold: Fold) -> str | None:
    for leg in fold.ordered_legs():
        employee = ringing_employee(leg)
        if employee:
            return employee
    return None


def _seconds(later: float | None, earlier: float | None) -> int | None:
    if later is None or earlier is None:
        return None
    return max(0, int(later - earlier))


def is_closed(
    fold: Fold, emitted: frozenset[str], now: float, close_after: float, last_event_at: float | None
) -> bool:
    """Closed by the summary, by an earlier close (`call.ended` already emitted), by callbridge's timeout
    event (the call outlived the longest a call may last), or by the timeout: every leg Disconnected and
    nothing new for `close_after` seconds."""
    if fold.summary is not None or CALL_ENDED in emitted or fold.timed_out_at is not None:
        return True
    return all_disconnected(fold) and last_event_at is not None and now - last_event_at >= close_after


def _last_known_time(fold: Fold) -> float | None:
    """The newest PBX time of any event of the call (legs, DTMF, recordings)."""
    times = [e.timestamp for e in fold.leg_events()] + [d.timestamp for d in fold.dtmf]
    for rec in fold.recordings.values():
        times += [e.timestamp for e in rec.events] + [a.timestamp for a in rec.added]
    return float(max(times)) if times else None


def is_incomplete(fold: Fold) -> bool:
    """Closed by callbridge's timeout while the events still do not tell the end: no summary, and a leg
    that never ended (or no leg at all). Final events that arrive later make the call complete again."""
    return fold.timed_out_at is not None and fold.summary is None and not all_disconnected(fold)


def decide(fold: Fold, *, closed: bool) -> Facts:
    summary = fold.summary
    direction = direction_of(fold)
    answers = answer_legs(fold)
    moved = tuple(transfers(fold))
    summary_answered = summary is not None and summary.answered
    answered = summary_answered or bool(answers)
    incomplete = closed and is_incomplete(fold)

    answered_by: str | None = None
    answered_at: float | None = None
    if summary_answered:
        assert summary is not None
        if direction == "outgoing":  # the employee who made the call (or, group callback, who took it)
            answered_by = summary.from_.extension or summary.to.extension
        else:
            answered_by = summary.to.extension
        if answers and answered_by in {t.to_extension for t in moved}:
            answered_by = None  # the summary names a transfer target: the first answerer stays
        answered_at = float(summary.talk_time)
    if answers:
        first_leg, first_employee = answers[0]
        answered_by = answered_by or first_employee
        answered_at = answered_at if answered_at is not None else float(first_leg.connected_at or 0)

    leg_times = [e.timestamp for e in fold.leg_events()] + [d.timestamp for d in fold.dtmf]
    started_at: float | None
    if summary is not None:
        started_at = float(summary.create_time)
    else:
        started_at = float(min(leg_times)) if leg_times else None

    ended_at: float | None = None
    disconnect_reason: int | None = None
    if closed:
        if summary is not None:
            ended_at = float(summary.end_time)
            disconnect_reason = summary.disconnect_reason
        elif incomplete:  # the end is unknown: the last moment the PBX told us anything
            ended_at = _last_known_time(fold)
        ended_legs = [leg for leg in fold.legs.values() if leg.ended_at is not None]
        if ended_at is None:
            ends = [leg.ended_at for leg in ended_legs if leg.ended_at is not None]
            ended_at = float(max(ends or leg_times)) if (ends or leg_times) else started_at
        if disconnect_reason is None and ended_legs:
            answered_ids = {leg.call_id for leg, _ in answers}
            last = max(ended_legs, key=lambda leg: (leg.ended_at, leg.call_id in answered_ids, leg.call_id))
            disconnect_reason = last.disconnect_reason

    # An incomplete call is not called missed: its answer may be among the events that never came.
    missed = closed and direction == "incoming" and not answered and not incomplete
    if missed:
        responsible = (summary.to.extension if summary is not None else None) or _earliest_ringing(fold)
    elif answered:
        responsible = moved[-1].to_extension if moved else answered_by
    elif direction in ("outgoing", "internal"):
        responsible = _initiator(fold)
    else:
        responsible = None

    if missed:
        status = "missed"
    elif closed:
        status = "ended"
    elif answered:
        status = "answered"
    elif fold.legs:
        status = "ringing"
    else:  # only a recording or DTMF of a call we never saw ringing: nothing rings, nothing is live
        status = "unknown"

    talk = wait = duration = None
    if answered:
        wait = _seconds(answered_at, started_at)
    if closed:
        duration = _seconds(ended_at, started_at)
        talk = _seconds(ended_at, answered_at) if answered else 0
        if not answered:
            wait = _seconds(ended_at, started_at)

    command_id = next((leg.command_id for leg in fold.ordered_legs() if leg.command_id), None)
    call = CallSnapshot(
        entry_id=fold.entry_id,
        direction=direction,
        status=status,
        customer_number=_customer_number(fold, direction),
        line_number=_line_number(fold),
        answered_by=answered_by,
        responsible=responsible,
        extensions=_extensions(fold),
        missed=missed,
        closed=closed,
        incomplete=incomplete,
        started_at=started_at,
        answered_at=answered_at,
        ended_at=ended_at,
        duration=duration,
        talk_seconds=talk,
        wait_seconds=wait,
        disconnect_reason=disconnect_reason,
        command_id=command_id,
    )
    return Facts(call=call, transfers=moved, answered=answered)


def leg_snapshots(fold: Fold, moves: Sequence[Transfer] = ()) -> list[LegSnapshot]:
    """The legs as stored; a leg that is one of the call's transfers (`moves`) says from whom and how."""
    by_leg = {move.call_id: move for move in moves}
    return [
        LegSnapshot(
            call_id=leg.call_id,
            entry_id=fold.entry_id,
            state=leg.state,
            seq=leg.seq,
            location=leg.location,
            from_extension=leg.from_.extension,
            from_number=leg.from_.number,
            to_extension=leg.to_extension,
            to_number=leg.to_number,
            acd_group=leg.acd_group,
            taken_from_call_id=leg.taken_from,
            disconnect_reason=leg.disconnect_reason,
            command_id=leg.command_id,
            appeared_at=float(leg.appeared_at),
            connected_at=None if leg.connected_at is None else float(leg.connected_at),
            ended_at=None if leg.ended_at is None else float(leg.ended_at),
            transferred_from=by_leg[leg.call_id].from_extension if leg.call_id in by_leg else None,
            transfer_kind=by_leg[leg.call_id].kind if leg.call_id in by_leg else None,
        )
        for leg in fold.ordered_legs()
    ]


def recording_snapshots(fold: Fold) -> list[RecordingSnapshot]:
    ordered = sorted(fold.recordings.values(), key=lambda r: (r.first_seen, r.recording_id))
    return [
        RecordingSnapshot(
            recording_id=rec.recording_id,
            entry_id=fold.entry_id,
            call_id=rec.call_id,
            extension=rec.extension,
            state=rec.state,
            completion_code=rec.completion_code,
            ready=rec.ready,
        )
        for rec in ordered
    ]
