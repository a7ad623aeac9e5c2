"""What callbridge sends to ``POST /api/v1/voip/integration`` for a CallEvent: pure functions, no I/O.

The field names follow yclients.md to the letter: one endpoint switched by ``command`` (``setup``,
``event``, ``history``) and ``type``; every body carries the network's ``crm_token``. `connector.py`
decides which of these to send and remembers what was sent.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bridge.connector_api import CallEvent

VOIP_PATH = "/api/v1/voip/integration"
TYPES = frozenset({"incoming", "outgoing", "internal"})
SUCCESS = "success"
MISSED = "missed"


def answered(event: CallEvent) -> bool:
    """Someone talked to the other party (the tracker's answer, not one leg's)."""
    return event.answered_at is not None and not event.extra.get("missed")


def digits(number: str | None) -> str | None:
    """A number as YClients' own examples write it: digits only (``79161234567``); None when empty."""
    text = "".join(ch for ch in str(number or "") if ch.isdigit())
    return text or None


def setup_body(crm_token: str, enable: bool) -> dict[str, Any]:
    """Switch the integration on (opens YClients' routing settings) or off (events are then ignored)."""
    return {"command": "setup", "type": "enable" if enable else "disable", "crm_token": crm_token}


def event_body(crm_token: str, *, phone: str, diversion: str | None, user: str | None) -> dict[str, Any]:
    """``event`` ``incoming``: the popup, shown to the staff YClients' routing settings choose (``user``,
    the ringing extension, wins over ``diversion``, the line called)."""
    body: dict[str, Any] = {"command": "event", "type": "incoming", "crm_token": crm_token, "phone": phone}
    if diversion:
        body["diversion"] = diversion
    if user:
        body["user"] = user
    return body


def who_took_it(event: CallEvent) -> str | None:
    """The extension the row names: the tracker's responsible employee (who answered, or after a transfer
    the last one it went to; for a missed call the first it rang; for an outgoing call the caller), else
    the employee the event is about."""
    responsible = event.extra.get("responsible")
    return str(responsible) if responsible else event.extension


def other_party(event: CallEvent, user: str | None) -> str | None:
    """The ``phone`` of the row: the customer's number, or for an internal call the other extension."""
    if event.direction != "internal":
        return None
    for extension in event.extensions:
        if extension and extension != user:
            return digits(extension)
    return None


def duration(event: CallEvent) -> int:
    """Seconds of conversation (0 when nobody answered)."""
    return max(0, int(event.talk_seconds or 0)) if answered(event) else 0


def iso_date(event: CallEvent) -> str:
    """When the call started, ISO 8601 with its offset (UTC)."""
    started = event.started_at if event.started_at is not None else event.occurred_at
    return datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds")


def recording_link(event: CallEvent, recording_url: Callable[[str], str | None] | None) -> str | None:
    """callbridge's signed link to the call's first recording, or None: no recording, nobody answered, or
    the core gives no link (no public URL, linking switched off)."""
    if recording_url is None or not event.recording_ids or not answered(event):
        return None
    return recording_url(event.recording_ids[0])


def history_body(
    event: CallEvent,
    crm_token: str,
    *,
    phone: str,
    user: str | None,
    link: str | None,
) -> dict[str, Any]:
    """``history``: the call's one row in the network's and the branch's call history."""
    body: dict[str, Any] = {
        "command": "history",
        "type": event.direction,
        "crm_token": crm_token,
        "phone": phone,
        "call_id": event.entry_id,
        "status": SUCCESS if answered(event) else MISSED,
        "duration": duration(event),
        "date": iso_date(event),
    }
    diversion = digits(event.line_number)
    if diversion:
        body["diversion"] = diversion
    if user:
        body["user"] = user
    if link:
        body["link"] = link
    return body
