"""A report's legs into the call, legs and recordings the live tracker would have stored.

Each CSV row (one leg) becomes the leg events Mango would have sent: Appeared at `start`, Connected at
`answer` when answered, Disconnected at `finish` with its reason; each id in `records` becomes a
recording completed in Mango's cloud. The real tracker then folds them, so direction, status,
answered_by, missed, extensions and times follow the same rules as for live calls (docs/tracker.md).
The report has no leg ids, so what links legs is inferred from the parties: a later leg from an employee
who answered an earlier leg, to another employee, is a transfer; leg A ringing employee E for number N
followed by a leg dialling N from E is a click-to-call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

from bridge.pbx.events import CallLegEvent, LegState, Party, PbxEvent, RecordingEvent
from bridge.pbx.mango.stats import StatsRow
from bridge.tracker import TrackResult, track

CLOUD_OK = 1000  # recording completion code: saved
_CALLBACK_MARK = "history-callback"


def leg_id(entry_id: str, index: int) -> str:
    """A stable id for the `index`-th leg of an imported call (the report has no `call_id`); ids of one
    call sort in report order, as the tracker breaks ties between legs by id."""
    digest = hashlib.sha256(entry_id.encode()).hexdigest()[:32]
    return f"hist-{index:03d}-{digest}"


@dataclass(frozen=True)
class _Leg:
    """A report row with what the report implies about its place in the call."""

    row: StatsRow
    call_id: str
    start: int
    taken_from: str | None = None  # the leg it was transferred or dialled from
    customer: Party | None = None  # who the employee talks to once a transfer completes
    command_id: str | None = None  # set on leg A of a click-to-call (then removed from the result)


def _at_employee(row: StatsRow) -> bool:
    return not (row.location or "").startswith(("ivr", "queue"))


def _relate(legs: list[_Leg]) -> list[_Leg]:
    """Mark transfers (a later leg from an employee who answered an earlier one, to another employee)
    and click-to-call (leg A rings employee E for number N, a later leg dials N from E)."""
    related: list[_Leg] = []
    for index, leg in enumerate(legs):
        row = leg.row
        earlier = related[:index]
        if row.from_extension and _at_employee(row):
            if row.to_extension and row.to_extension != row.from_extension:
                source = next(
                    (
                        p
                        for p in reversed(earlier)
                        if p.row.answer and p.row.to_extension == row.from_extension
                    ),
                    None,
                )
                if source is not None:
                    customer = source.customer or Party(number=source.row.from_number)
                    leg = replace(leg, taken_from=source.call_id, customer=customer if row.answer else None)
            elif not row.to_extension and earlier:
                root = earlier[0]
                if (
                    root.taken_from is None
                    and not root.row.from_extension
                    and root.row.to_extension == row.from_extension
                    and root.row.from_number == row.to_number
                ):
                    related[0] = replace(root, command_id=_CALLBACK_MARK)
                    leg = replace(leg, taken_from=root.call_id)
        related.append(leg)
    return related


def _leg_events(entry_id: str, leg: _Leg) -> list[PbxEvent]:
    row, start = leg.row, leg.start
    finish = max(start, row.finish if row.finish is not None else start)
    caller = Party(extension=row.from_extension, number=row.from_number, taken_from_call_id=leg.taken_from)
    callee = Party(extension=row.to_extension, number=row.to_number)

    def event(seq: int, at: int, state: str, reason: int | None = None) -> CallLegEvent:
        talking = leg.customer if (leg.customer is not None and seq > 1) else caller
        return CallLegEvent(
            entry_id=entry_id,
            call_id=leg.call_id,
            seq=seq,
            timestamp=at,
            state=state,
            location=row.location,
            from_=talking,
            to=callee,
            line_number=row.line_number,
            disconnect_reason=reason,
            command_id=leg.command_id,
        )

    events: list[PbxEvent] = [event(1, start, LegState.APPEARED)]
    if row.answer:
        events.append(event(2, min(max(row.answer, start), finish), LegState.CONNECTED))
    events.append(event(3, finish, LegState.DISCONNECTED, row.disconnect_reason))
    employee = row.to_extension or row.from_extension
    for n, recording_id in enumerate(row.records, start=1):
        events.append(
            RecordingEvent(
                entry_id=entry_id,
                call_id=leg.call_id,
                recording_id=recording_id,
                state="Completed",
                seq=n,
                timestamp=finish,
                extension=employee,
                completion_code=CLOUD_OK,
                recipient="Cloud",
            )
        )
    return events


def usable(row: StatsRow) -> bool:
    """A row can be imported when it names its call and says when the leg started."""
    return bool(row.entry_id) and (row.start is not None or row.create is not None)


def _start(row: StatsRow) -> int:
    return row.start if row.start is not None else int(row.create or 0)


def fold_history(entry_id: str, rows: Sequence[StatsRow], *, now: float) -> TrackResult:
    """The tracker's result for one call from its report rows (use `usable` rows only); closed."""
    ordered = sorted(rows, key=lambda r: (_start(r), r.line_no))
    if not ordered:
        raise ValueError(f"call {entry_id!r} has no usable rows")
    legs = _relate([_Leg(row, leg_id(entry_id, i), _start(row)) for i, row in enumerate(ordered)])
    events = [event for leg in legs for event in _leg_events(entry_id, leg)]
    last = max(max(leg.start, leg.row.finish or 0) for leg in legs)
    result = track(events, frozenset(), now=now, close_after=0.0, last_event_at=float(last))
    # The click-to-call mark only told the tracker what leg A was; no command of ours placed the call.
    return replace(
        result,
        call=replace(result.call, command_id=None),
        legs=[replace(leg, command_id=None) for leg in result.legs],
    )
