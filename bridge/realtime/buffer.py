"""What the hub sent in the last few minutes, so a client that reconnects gets what it missed."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from bridge.realtime.auth import Identity

# A resume with an id this hub never issued (the client was on another instance) replays from that
# moment minus this margin; the messages' `key`s let the client drop the few it already has.
CROSS_INSTANCE_MARGIN_MS = 2000


@dataclass(frozen=True, slots=True)
class Sent:
    id: int
    at: float  # monotonic seconds
    audience: frozenset[str]
    data: bytes


class ResumeBuffer:
    """Messages sent within `window` seconds (at most `limit`), oldest first."""

    def __init__(
        self, window: float = 300.0, limit: int = 200_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self.limit = limit
        self._clock = clock
        self._items: deque[Sent] = deque()
        self._dropped_before = 0  # the newest id dropped so far (0: none)

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: Sent) -> None:
        self._items.append(item)
        self.trim()

    def trim(self) -> None:
        horizon = self._clock() - self.window
        items = self._items
        while items and (items[0].at < horizon or len(items) > self.limit):
            self._dropped_before = items.popleft().id

    def since(self, last_id: int, identity: Identity) -> tuple[list[Sent], bool]:
        """The messages after `last_id` that `identity` may see, and whether some may be lost (a gap)."""
        self.trim()
        items = self._items
        gap = last_id < self._dropped_before
        # Same instance: the id is ours, replay exactly what followed it.
        # Other instance (or an id we never issued): replay by time, with a small margin.
        known = any(item.id == last_id for item in items) if items and items[0].id <= last_id else False
        floor = last_id if known else last_id - CROSS_INSTANCE_MARGIN_MS * 1000
        out = [
            item
            for item in items
            if item.id > floor and (identity.is_supervisor or identity.may_see(item.audience))
        ]
        return out, gap
