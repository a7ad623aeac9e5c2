"""Click-to-call bookkeeping: which Bitrix24 CALL_ID a Mango command (``command_id``) belongs to.

``ONEXTERNALCALLSTART`` arrives in a web worker with a CALL_ID Bitrix24 already registered; the worker
originates the call through Mango and learns the ``command_id`` only then. The dispatcher, in another
process, sees the call's events carrying that ``command_id`` and must finish *that* CALL_ID instead of
registering a new one. The link lives in the state store (key ``clicks``), as one small JSON map of
recent clicks updated with compare-and-set. A click is written *before* the originate (pending, no
command id yet), so events that overtake the web worker find a pending click and wait for it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from bridge.connector_api import StateStore

CLICKS_KEY = "clicks"
KEEP_SECONDS = 86400.0
MAX_CLICKS = 500
PENDING_SECONDS = 20.0  # how long events wait for a pending click to learn its command id


@dataclass(frozen=True)
class Click:
    call_id: str  # Bitrix24 CALL_ID
    user_id: str  # the Bitrix24 user who clicked
    extension: str  # their Mango extension
    number: str  # E.164 dialled
    created_at: float
    command_id: str | None = None
    failed: str | None = None  # why the originate failed, if it did


class ClickRegistry:
    def __init__(
        self, state: Callable[[], StateStore | None], clock: Callable[[], float] = time.time
    ) -> None:
        self._state = state
        self._clock = clock

    def _load(self) -> tuple[dict[str, Click], int | None]:
        store = self._state()
        stored = store.get(CLICKS_KEY) if store is not None else None
        if stored is None:
            return {}, None
        try:
            raw: dict[str, Any] = json.loads(stored[0])
            return {k: Click(**v) for k, v in raw.items()}, stored[1]
        except (ValueError, TypeError):
            return {}, stored[1]

    def _update(self, change: Callable[[dict[str, Click]], None]) -> None:
        store = self._state()
        if store is None:
            raise RuntimeError("not bound to a state store")
        for _ in range(50):
            clicks, version = self._load()
            change(clicks)
            now = self._clock()
            kept = sorted(
                (c for c in clicks.values() if now - c.created_at < KEEP_SECONDS), key=lambda c: c.created_at
            )[-MAX_CLICKS:]
            text = json.dumps({c.call_id: asdict(c) for c in kept}, separators=(",", ":"))
            if store.compare_and_set(CLICKS_KEY, text, version) is not None:
                return
        raise RuntimeError("the click-to-call map kept changing; try again")

    def add(self, click: Click) -> None:
        self._update(lambda clicks: clicks.__setitem__(click.call_id, click))

    def settle(self, call_id: str, *, command_id: str | None = None, failed: str | None = None) -> None:
        def change(clicks: dict[str, Click]) -> None:
            old = clicks.get(call_id)
            if old is not None:
                clicks[call_id] = Click(**{**asdict(old), "command_id": command_id, "failed": failed})

        self._update(change)

    def by_command(self, command_id: str) -> Click | None:
        clicks, _ = self._load()
        for click in clicks.values():
            if click.command_id == command_id:
                return click
        return None

    def by_call(self, call_id: str) -> Click | None:
        return self._load()[0].get(call_id)

    def pending(self) -> bool:
        """Whether a click younger than PENDING_SECONDS has not learned its command id yet."""
        now = self._clock()
        clicks, _ = self._load()
        return any(
            c.command_id is None and c.failed is None and now - c.created_at < PENDING_SECONDS
            for c in clicks.values()
        )
