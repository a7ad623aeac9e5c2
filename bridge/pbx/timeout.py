"""The synthetic "no more events will come" notification that callbridge writes for a call itself.

It is stored in `raw_events` like a Mango notification (path `callbridge/timeout`), so the processor folds
it through the same tracker and transaction as every other event, and it is stored at most once per call
(`dedup_key`). The Mango receiver never accepts this path: it is not a Mango notification.
"""

from __future__ import annotations

import json
from typing import Any

from bridge.pbx.events import CallTimeoutEvent

TIMEOUT_PATH = "callbridge/timeout"


class TimeoutPayloadError(ValueError):
    """A stored `callbridge/timeout` payload is malformed."""


def timeout_payload(entry_id: str, at: float) -> str:
    """The stored JSON of the synthetic event for call `entry_id`, decided at `at` (callbridge's clock)."""
    return json.dumps({"entry_id": entry_id, "at": at}, separators=(",", ":"))


def parse_timeout(payload: dict[str, Any]) -> CallTimeoutEvent:
    """The typed event of a stored payload."""
    entry_id = payload.get("entry_id")
    at = payload.get("at")
    if not isinstance(entry_id, str) or not entry_id:
        raise TimeoutPayloadError("field 'entry_id' must be a non-empty string")
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise TimeoutPayloadError("field 'at' must be a number")
    return CallTimeoutEvent(entry_id=entry_id, at=float(at), raw=payload)


def timeout_dedup_key(entry_id: str) -> str:
    """One synthetic timeout per call, however often it is decided (restarts, several instances)."""
    return f"timeout:{entry_id}"
