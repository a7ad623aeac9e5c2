"""The JSON messages the hub sends (documented in docs/realtime.md), and who may receive each.

Pure functions: a CallEvent (plus its caller card) in, a dict out. The hub adds the `id`.
"""

from __future__ import annotations

import functools
from typing import Any

from bridge.connector_api import CallEvent
from bridge.connector_api.events import (
    CALL_ANSWERED,
    CALL_ENDED,
    CALL_MISSED,
    CALL_RINGING,
    CALL_TRANSFERRED,
    CALLBACK_REQUESTED,
)
from bridge.connector_api.phones import match_keys
from bridge.lookup.card import Card

CALL_CARD = "call.card"
HELLO = "hello"
HEARTBEAT = "heartbeat"

# CallEvent types the hub forwards; the others (recording_ready) are for connectors only.
FORWARDED = frozenset(
    {CALL_RINGING, CALL_ANSWERED, CALL_TRANSFERRED, CALL_ENDED, CALL_MISSED, CALLBACK_REQUESTED}
)
# Types that carry a caller card.
WITH_CARD = frozenset({CALL_RINGING, CALLBACK_REQUESTED})


def audience(event: CallEvent) -> frozenset[str]:
    """The extensions whose employees receive `event` (supervisors receive everything).

    A ringing goes to the extension it rings; answered, transferred, ended and missed go to everyone the
    call involved (so the other ringing popups close); a callback request to the extensions it names,
    if any (otherwise supervisors only).
    """
    if event.type == CALL_RINGING:
        return frozenset({event.extension} if event.extension else ())
    people = set(event.extensions)
    for extension in (event.extension, event.transferred_from):
        if extension:
            people.add(extension)
    return frozenset(people)


@functools.lru_cache(maxsize=8192)
def display_number(raw: str | None, region: str = "RU") -> str | None:
    """E.164 where the number parses, else the number as the PBX gave it."""
    if not raw:
        return None
    return match_keys(raw, region).e164 or raw


def message_key(event: CallEvent, kind: str | None = None) -> str:
    """A key stable across instances and resends: clients drop a message whose key they have seen."""
    return f"{event.entry_id}|{kind or event.key}"


def call_message(
    event: CallEvent, *, card: Card | None = None, card_pending: bool = False, region: str = "RU"
) -> dict[str, Any]:
    """The message for one CallEvent (see docs/realtime.md for each type's fields)."""
    message: dict[str, Any] = {
        "type": event.type,
        "key": message_key(event),
        "entry_id": event.entry_id,
        "call_id": event.call_id,
        "extension": event.extension,
        "extensions": list(event.extensions),
        "direction": event.direction,
        "number": display_number(event.customer_number, region),
        "number_raw": event.customer_number,
        "line_number": event.line_number,
        "occurred_at": event.occurred_at,
        "started_at": event.started_at,
        "command_id": event.command_id,
    }
    if event.type in WITH_CARD:
        message["card"] = card.to_dict() if card is not None else None
        message["card_pending"] = card_pending
    if event.type == CALL_RINGING and event.extra.get("acd_group"):
        message["group"] = event.extra.get("acd_group")
    if event.type == CALL_RINGING and event.extra.get("routing"):
        message["routing"] = event.extra["routing"]  # why routing put the call through to this employee
    if event.type == CALL_ANSWERED:
        message["answered_at"] = event.answered_at
    if event.type == CALL_TRANSFERRED:
        message["transferred_from"] = event.transferred_from
        message["transfer_kind"] = event.transfer_kind
    if event.type in (CALL_ENDED, CALL_MISSED):
        extra = event.extra or {}
        message.update(
            answered_at=event.answered_at,
            ended_at=event.ended_at,
            duration=event.duration,
            talk_seconds=event.talk_seconds,
            wait_seconds=event.wait_seconds,
            disconnect_reason=event.disconnect_reason,
            status=extra.get("status"),
            missed=bool(extra.get("missed")),
            responsible=extra.get("responsible"),
        )
    if event.type == CALLBACK_REQUESTED:
        extra = event.extra or {}
        message["request"] = {
            k: extra.get(k)
            for k in ("source", "site", "site_name", "request_id", "page", "inside_hours", "scheduled_for")
            if k in extra
        }
    return message


def card_message(event: CallEvent, card: Card, region: str = "RU") -> dict[str, Any]:
    """`call.card`: the card of a call whose ringing went out before the card was complete."""
    return {
        "type": CALL_CARD,
        "key": message_key(event, f"{CALL_CARD}:{event.call_id or event.key}:{int(card.complete)}"),
        "entry_id": event.entry_id,
        "call_id": event.call_id,
        "extension": event.extension,
        "for": event.type,
        "number": display_number(event.customer_number, region),
        "card": card.to_dict(),
    }
