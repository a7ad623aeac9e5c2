"""Typed PBX events: what a PBX adapter hands to the call tracker.

These are vendor-neutral in shape but follow Mango Office's model (an *entry* is the whole call, a *leg*
one `call_id` inside it). Every event keeps the vendor's raw payload in `raw` so nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class LegState:
    """Mango `call_state` values."""

    APPEARED = "Appeared"
    CONNECTED = "Connected"
    ON_HOLD = "OnHold"
    DISCONNECTED = "Disconnected"


@dataclass(frozen=True)
class Party:
    """One side of a leg: an employee (`extension`) and/or a number (PSTN digits or a SIP URI)."""

    extension: str | None = None
    number: str | None = None
    taken_from_call_id: str | None = None
    was_transferred: bool | None = None
    hold_initiator: bool | None = None
    acd_group: str | None = None


@dataclass(frozen=True)
class CallLegEvent:
    """`/events/call`: one leg changed state."""

    entry_id: str
    call_id: str
    seq: int
    timestamp: int
    state: str
    location: str | None
    from_: Party
    to: Party
    line_number: str | None = None
    disconnect_reason: int | None = None
    command_id: str | None = None
    task_id: int | None = None
    callback_initiator: str | None = None
    transfer: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class SummaryEvent:
    """`/events/summary`: the final record of the whole call (entry)."""

    entry_id: str
    direction: int  # 0 internal, 1 incoming, 2 outgoing
    from_: Party
    to: Party
    line_number: str | None
    create_time: int
    forward_time: int
    talk_time: int  # 0 if not answered
    end_time: int
    entry_result: int  # 1 talked, 0 missed
    disconnect_reason: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def answered(self) -> bool:
        """Answered only when Mango says so *and* gives an answer time.

        The doc's IVR example has `entry_result` 1 with `talk_time` 0: that call was not answered.
        """
        return self.entry_result == 1 and self.talk_time > 0


@dataclass(frozen=True)
class RecordingEvent:
    """`/events/recording`: a recording Started, Continued or Completed."""

    entry_id: str
    call_id: str | None
    recording_id: str
    state: str
    seq: int
    timestamp: int
    extension: str | None = None
    completion_code: int | None = None
    recipient: str | None = None
    command_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def stored_in_cloud(self) -> bool:
        """True when this event says the recording is saved in Mango's cloud and can be fetched."""
        return (
            self.state == "Completed"
            and self.completion_code == 1000
            and "Cloud" in (self.recipient or "Cloud")
        )


@dataclass(frozen=True)
class RecordAddedEvent:
    """`/events/record/added`: the recording is in the cloud and downloadable."""

    entry_id: str
    recording_id: str
    timestamp: int
    product_id: int | None = None
    user_id: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class DtmfEvent:
    """`/events/dtmf`: digits collected in the IVR."""

    entry_id: str
    call_id: str
    seq: int
    timestamp: int
    dtmf: str
    location: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    line_number: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class SmsEvent:
    """`/events/sms`: an SMS delivery status."""

    command_id: str
    timestamp: int
    reason: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class CommandResultEvent:
    """`/result/<command>`: the asynchronous result of a command we sent."""

    command: str  # "callback", "callback_group", "call/hangup", "route", ...
    command_id: str
    result: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class StatReadyEvent:
    """`/result/stat`: a requested statistics report is ready."""

    key: str
    request_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class PingEvent:
    """`/ping`: the cabinet's "check connection" button."""

    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class CallTimeoutEvent:
    """Written by callbridge itself (not the PBX) when a call saw no event for the longest a call may
    last: no more events are expected, so the tracker closes the call as incomplete. `at` is callbridge's
    clock."""

    entry_id: str
    at: float
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


PbxEvent = (
    CallLegEvent
    | SummaryEvent
    | RecordingEvent
    | RecordAddedEvent
    | DtmfEvent
    | SmsEvent
    | CommandResultEvent
    | StatReadyEvent
    | PingEvent
    | CallTimeoutEvent
)

# Events the call tracker folds into a call; the others are stored and routed elsewhere.
TRACKED_EVENT_TYPES = (
    CallLegEvent,
    SummaryEvent,
    RecordingEvent,
    RecordAddedEvent,
    DtmfEvent,
    CallTimeoutEvent,
)
