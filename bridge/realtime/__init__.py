"""Realtime popups: the WebSocket hub, its tokens and messages, the resume buffer and the Redis bridge.

`publish(events)` hands CallEvents to this instance's hub from any process of `callbridge run`: in the
parent it goes straight to the hub; in an HTTP worker it travels over the local relay datagram
(`bridge.wakeup`). Use it after the transaction that stored the events has committed, e.g.
for `callback.requested` from the widget. Elsewhere (a CLI command, a test) it does nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from bridge.connector_api import CallEvent
from bridge.wakeup import EVENTS, sender_from_env

log = logging.getLogger(__name__)

_local_hub: Any = None


def set_local_hub(hub: Any) -> None:
    """The parent process registers its hub here (None to unregister)."""
    global _local_hub
    _local_hub = hub


def publish(events: Sequence[CallEvent]) -> bool:
    """Send events to this instance's hub; True if they were handed over (best effort, never raises)."""
    if not events:
        return True
    if _local_hub is not None:
        _local_hub.publish(list(events))
        return True
    sender = sender_from_env()
    if sender is None:
        return False
    body = json.dumps([e.to_dict() for e in events], separators=(",", ":")).encode()
    return sender.send(EVENTS, body)


def events_from_datagram(body: bytes) -> list[CallEvent]:
    """The parent's side of `publish`: decode a relay datagram (malformed ones give nothing)."""
    try:
        items = json.loads(body)
        return [CallEvent.from_dict(item) for item in items if isinstance(item, dict)]
    except (ValueError, TypeError):
        log.warning("malformed realtime relay datagram dropped")
        return []


__all__ = ["events_from_datagram", "publish", "set_local_hub"]
