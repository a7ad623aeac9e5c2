"""The call tracker: a pure state machine from PBX events to call snapshots and domain CallEvents.

`track` folds every tracked event known for one entry (in any order, with duplicates) into a snapshot of
the call, its legs and recordings, and returns the CallEvents that became due and were not emitted
before. It does no I/O; the processor stores the result and the emitted keys. Rules: docs/tracker.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from bridge.pbx.events import PbxEvent
from bridge.tracker.emit import new_events
from bridge.tracker.fold import fold
from bridge.tracker.model import CallSnapshot, LegSnapshot, RecordingSnapshot, TrackResult
from bridge.tracker.roles import Transfer, transfers
from bridge.tracker.snapshot import decide, is_closed, leg_snapshots, recording_snapshots

__all__ = [
    "CallSnapshot",
    "LegSnapshot",
    "RecordingSnapshot",
    "TrackResult",
    "Transfer",
    "track",
    "transfers_of",
]


def track(
    events: Iterable[PbxEvent],
    emitted: frozenset[str],
    *,
    now: float,
    close_after: float,
    last_event_at: float | None,
) -> TrackResult:
    """Fold the events of one entry and decide what to emit.

    `events`: every tracked event of the entry known so far (CallLegEvent, SummaryEvent, RecordingEvent,
    RecordAddedEvent, DtmfEvent, CallTimeoutEvent; others are ignored), any order, duplicates allowed.
    `emitted`: keys decided by earlier calls. `now` and `last_event_at` (receive time of the entry's newest
    raw event) drive the timeout close: with no summary, a call whose legs are all Disconnected closes once
    `now - last_event_at >= close_after`; a CallTimeoutEvent closes it at once (incomplete if the events do
    not tell its end). The new CallEvents carry `last_event_at` as `received_at`: when callbridge received
    the event that made them due, by its own clock (unlike `occurred_at`).
    Raises ValueError if the events are empty or span entries.
    """
    folded = fold(events)
    closed = is_closed(folded, emitted, now, close_after, last_event_at)
    facts = decide(folded, closed=closed)
    events_now, decided = new_events(folded, facts, frozenset(emitted))
    events_now = [replace(event, received_at=last_event_at) for event in events_now]
    return TrackResult(
        call=facts.call,
        legs=leg_snapshots(folded, facts.transfers),
        recordings=recording_snapshots(folded),
        new_events=events_now,
        emitted=decided,
    )


def transfers_of(events: Iterable[PbxEvent]) -> list[Transfer]:
    """The transfers of a call (new leg, new and previous employee, kind, time), oldest first."""
    return transfers(fold(events))
