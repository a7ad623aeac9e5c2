"""Fold a set of PBX events into legs, recordings, a summary and DTMF input.

The fold is a pure function of the *set* of events: duplicates collapse, arrival order does not matter.
A leg's events are ordered by `seq` (ties broken by state, then time), so a stale event never moves a leg
back; the times a leg appeared, connected and ended are taken from all its events, whatever their order.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from bridge.pbx.events import (
    CallLegEvent,
    CallTimeoutEvent,
    DtmfEvent,
    LegState,
    Party,
    RecordAddedEvent,
    RecordingEvent,
    SummaryEvent,
)

_LEG_STATE_RANK = {
    LegState.APPEARED: 0,
    LegState.CONNECTED: 1,
    LegState.ON_HOLD: 2,
    LegState.DISCONNECTED: 3,
}
_RECORDING_STATE_RANK = {"Started": 0, "Continued": 1, "Completed": 2}
TALKING_STATES = (LegState.CONNECTED, LegState.ON_HOLD)  # OnHold implies the leg was connected
T = TypeVar("T")


@dataclass(frozen=True)
class LegFold:
    """Everything known about one leg. `events` are in seq order; the last one is the leg's state."""

    call_id: str
    events: tuple[CallLegEvent, ...]
    appeared_at: int
    connected_at: int | None
    ended_at: int | None
    disconnect_reason: int | None
    taken_from: str | None
    to_extension: str | None
    to_number: str | None
    acd_group: str | None
    location: str | None
    line_number: str | None
    command_id: str | None
    transfer: str | None

    @property
    def latest(self) -> CallLegEvent:
        return self.events[-1]

    @property
    def state(self) -> str:
        return self.latest.state

    @property
    def seq(self) -> int:
        return self.latest.seq

    @property
    def from_(self) -> Party:
        """The calling party as of the newest event (after a transfer the customer replaces the employee)."""
        return self.latest.from_

    @property
    def first(self) -> CallLegEvent:
        return self.events[0]

    @property
    def at_employee_location(self) -> bool:
        """Not in the IVR or a queue (`location` is often absent in the doc's examples: treat as abonent)."""
        location = self.location
        return location is None or not location.startswith(("ivr", "queue"))


@dataclass(frozen=True)
class RecordingFold:
    recording_id: str
    events: tuple[RecordingEvent, ...]
    added: tuple[RecordAddedEvent, ...]
    call_id: str | None
    extension: str | None
    completion_code: int | None
    ready: bool
    ready_at: int | None
    first_seen: int

    @property
    def state(self) -> str | None:
        return self.events[-1].state if self.events else None


@dataclass(frozen=True)
class Fold:
    entry_id: str
    legs: dict[str, LegFold]  # by call_id
    summary: SummaryEvent | None
    recordings: dict[str, RecordingFold]  # by recording_id
    dtmf: tuple[DtmfEvent, ...]
    timed_out_at: float | None = None  # callbridge decided no more events will come (CallTimeoutEvent)

    def ordered_legs(self) -> list[LegFold]:
        """Legs by the time they appeared (ties by call_id)."""
        return sorted(self.legs.values(), key=lambda leg: (leg.appeared_at, leg.call_id))

    def leg_events(self) -> list[CallLegEvent]:
        """Every leg event, oldest first (by time, then seq, then call_id)."""
        events = [e for leg in self.legs.values() for e in leg.events]
        return sorted(events, key=lambda e: (e.timestamp, e.seq, e.call_id, _LEG_STATE_RANK.get(e.state, 9)))


def _leg_key(event: CallLegEvent) -> tuple:
    return (event.seq, _LEG_STATE_RANK.get(event.state, 9), event.timestamp, repr(event))


def _latest_value(values: Iterable[T | None]) -> T | None:
    """The last non-empty value of a sequence already in seq order."""
    found = None
    for value in values:
        if value not in (None, ""):
            found = value
    return found


def _fold_leg(call_id: str, events: Iterable[CallLegEvent]) -> LegFold:
    ordered = tuple(sorted(set(events), key=_leg_key))
    appeared = [e.timestamp for e in ordered if e.state == LegState.APPEARED]
    talking = [e.timestamp for e in ordered if e.state in TALKING_STATES]
    ended = [e for e in ordered if e.state == LegState.DISCONNECTED]
    return LegFold(
        call_id=call_id,
        events=ordered,
        appeared_at=min(appeared) if appeared else min(e.timestamp for e in ordered),
        connected_at=min(talking) if talking else None,
        ended_at=min(e.timestamp for e in ended) if ended else None,
        disconnect_reason=_latest_value(e.disconnect_reason for e in ended),
        taken_from=_latest_value(e.from_.taken_from_call_id for e in ordered),
        to_extension=_latest_value(e.to.extension for e in ordered),
        to_number=_latest_value(e.to.number for e in ordered),
        acd_group=_latest_value(e.to.acd_group for e in ordered),
        location=_latest_value(e.location for e in ordered),
        line_number=_latest_value(e.line_number for e in ordered),
        command_id=_latest_value(e.command_id for e in ordered),
        transfer=_latest_value(e.transfer for e in ordered),
    )


def _fold_recording(
    recording_id: str, events: Iterable[RecordingEvent], added: Iterable[RecordAddedEvent]
) -> RecordingFold:
    ordered = tuple(
        sorted(
            set(events),
            key=lambda e: (e.seq, _RECORDING_STATE_RANK.get(e.state, 9), e.timestamp, repr(e)),
        )
    )
    added_t = tuple(sorted(set(added), key=lambda e: (e.timestamp, repr(e))))
    ready_times = [e.timestamp for e in ordered if e.stored_in_cloud] + [e.timestamp for e in added_t]
    completed = [e.completion_code for e in ordered if e.state == "Completed"]
    return RecordingFold(
        recording_id=recording_id,
        events=ordered,
        added=added_t,
        call_id=_latest_value(e.call_id for e in ordered),
        extension=_latest_value(e.extension for e in ordered),
        completion_code=completed[-1] if completed else None,
        ready=bool(ready_times),
        ready_at=min(ready_times) if ready_times else None,
        first_seen=min([e.timestamp for e in ordered] + [e.timestamp for e in added_t]),
    )


def fold(events: Iterable[object]) -> Fold:
    """Fold the tracked events of one entry. Untracked event types are ignored.

    Raises ValueError when there is no tracked event or the events belong to more than one entry.
    """
    legs: dict[str, list[CallLegEvent]] = defaultdict(list)
    summaries: set[SummaryEvent] = set()
    rec_events: dict[str, list[RecordingEvent]] = defaultdict(list)
    rec_added: dict[str, list[RecordAddedEvent]] = defaultdict(list)
    dtmf: set[DtmfEvent] = set()
    timeouts: list[float] = []
    entry_ids: set[str] = set()
    for event in events:
        match event:
            case CallLegEvent():
                legs[event.call_id].append(event)
            case SummaryEvent():
                summaries.add(event)
            case RecordingEvent():
                rec_events[event.recording_id].append(event)
            case RecordAddedEvent():
                rec_added[event.recording_id].append(event)
            case DtmfEvent():
                dtmf.add(event)
            case CallTimeoutEvent():
                timeouts.append(event.at)
            case _:
                continue
        entry_ids.add(event.entry_id)
    if not entry_ids:
        raise ValueError("track() needs at least one call, summary, recording or DTMF event")
    if len(entry_ids) > 1:
        raise ValueError(f"track() got events of several entries: {sorted(entry_ids)[:5]}")
    summary = max(summaries, key=lambda s: (s.end_time, repr(s))) if summaries else None
    recording_ids = set(rec_events) | set(rec_added)
    return Fold(
        entry_id=entry_ids.pop(),
        legs={cid: _fold_leg(cid, evs) for cid, evs in legs.items()},
        summary=summary,
        recordings={
            rid: _fold_recording(rid, rec_events.get(rid, ()), rec_added.get(rid, ()))
            for rid in recording_ids
        },
        dtmf=tuple(sorted(dtmf, key=lambda e: (e.timestamp, e.seq, repr(e)))),
        timed_out_at=min(timeouts) if timeouts else None,
    )
