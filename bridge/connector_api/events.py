"""Domain CallEvents: the clean call lifecycle that the tracker emits and connectors consume."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

CALL_RINGING = "call.ringing"
CALL_ANSWERED = "call.answered"
CALL_TRANSFERRED = "call.transferred"
CALL_ENDED = "call.ended"
CALL_MISSED = "call.missed"
CALL_RECORDING_READY = "call.recording_ready"
CALLBACK_REQUESTED = "callback.requested"
# A missed call was followed up: an employee reached the customer, or the customer got through later. On
# the missed call's `entry_id`; `extension` is who talked, `extra` has `by_entry_id` and `how`.
CALL_CALLED_BACK = "call.called_back"

CALL_EVENT_TYPES: tuple[str, ...] = (
    CALL_RINGING,
    CALL_ANSWERED,
    CALL_TRANSFERRED,
    CALL_ENDED,
    CALL_MISSED,
    CALL_RECORDING_READY,
    CALLBACK_REQUESTED,
    CALL_CALLED_BACK,
)


@dataclass(frozen=True)
class CallEvent:
    """One thing that happened to a call, as connectors see it.

    `key` is unique within the call (`entry_id`) and stable across redelivery and re-folding, e.g.
    ``call.ringing:<call_id>`` or ``call.ended``; the outbox builds its idempotency key from it.
    Times are Unix epoch seconds (UTC); `occurred_at` and the call's times are the PBX's, `received_at`
    is callbridge's. `customer_number` is the external party as the PBX gave it
    (digits or a SIP URI); connectors normalise it with `bridge.connector_api.phones`.
    """

    type: str
    entry_id: str
    key: str
    occurred_at: float
    direction: str = "unknown"  # "incoming" | "outgoing" | "internal" | "unknown"
    customer_number: str | None = None
    line_number: str | None = None
    extension: str | None = None  # the employee this event is about (ringing at, answered by, responsible)
    extensions: tuple[str, ...] = ()  # every employee involved so far (ringing group)
    call_id: str | None = None
    started_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    duration: int | None = None  # seconds from start to end
    talk_seconds: int | None = None
    wait_seconds: int | None = None
    disconnect_reason: int | None = None
    recording_id: str | None = None
    recording_ids: tuple[str, ...] = ()
    command_id: str | None = None
    transferred_from: str | None = None
    transfer_kind: str | None = None
    # When callbridge received the PBX event that made this CallEvent due, by callbridge's own clock (None
    # when not from a live notification). Measure an event's age from this, not from `occurred_at`, which
    # is the PBX's clock and may be off from ours.
    received_at: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        data = asdict(self)
        data["extensions"] = list(self.extensions)
        data["recording_ids"] = list(self.recording_ids)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CallEvent:
        """The inverse of `to_dict`; unknown keys are ignored so old rows stay readable."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["extensions"] = tuple(values.get("extensions") or ())
        values["recording_ids"] = tuple(values.get("recording_ids") or ())
        return cls(**values)
