"""The tracker's output: snapshots of a call, its legs and its recordings, shaped like the store's rows.

`CallSnapshot` maps onto the `calls` table (minus `emitted`, `last_event_at` and `updated_at`, which the
processor owns), `LegSnapshot` onto `legs`, `RecordingSnapshot` onto `recordings` (minus `updated_at`).
Times are Unix epoch seconds as floats.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from bridge.connector_api.events import CallEvent

DIRECTIONS = ("incoming", "outgoing", "internal", "unknown")
STATUSES = ("ringing", "answered", "ended", "missed", "unknown")


@dataclass(frozen=True)
class CallSnapshot:
    """One call (Mango entry) as the tracker currently understands it."""

    entry_id: str
    direction: str = "unknown"  # incoming | outgoing | internal | unknown
    status: str = "ringing"  # ringing | answered | ended | missed | unknown (no leg seen, not closed)
    customer_number: str | None = None
    line_number: str | None = None
    answered_by: str | None = None
    responsible: str | None = None
    extensions: tuple[str, ...] = ()
    missed: bool = False
    closed: bool = False
    incomplete: bool = False  # closed by callbridge's timeout before the PBX told the end
    started_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    duration: int | None = None
    talk_seconds: int | None = None
    wait_seconds: int | None = None
    disconnect_reason: int | None = None
    command_id: str | None = None

    def as_row(self) -> dict[str, Any]:
        """Column values for the `calls` table (`extensions` stays a tuple; the store serialises it)."""
        return asdict(self)


@dataclass(frozen=True)
class LegSnapshot:
    """One leg (`call_id`) folded from its `/events/call` notifications."""

    call_id: str
    entry_id: str
    state: str
    seq: int
    location: str | None = None
    from_extension: str | None = None
    from_number: str | None = None
    to_extension: str | None = None
    to_number: str | None = None
    acd_group: str | None = None
    taken_from_call_id: str | None = None
    disconnect_reason: int | None = None
    command_id: str | None = None
    appeared_at: float | None = None
    connected_at: float | None = None
    ended_at: float | None = None
    # Set on a leg that is a transfer to another employee: from whom, and blind or consultative.
    transferred_from: str | None = None
    transfer_kind: str | None = None

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RecordingSnapshot:
    """One recording, from `/events/recording` and `/events/record/added`."""

    recording_id: str
    entry_id: str
    call_id: str | None = None
    extension: str | None = None
    state: str | None = None
    completion_code: int | None = None
    ready: bool = False

    def as_row(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrackResult:
    """What one `track` call decided: the snapshots, the CallEvents to emit now, and every key decided."""

    call: CallSnapshot
    legs: list[LegSnapshot]
    recordings: list[RecordingSnapshot]
    new_events: list[CallEvent]
    emitted: frozenset[str]
