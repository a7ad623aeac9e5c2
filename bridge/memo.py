"""Small memoisers the web app and the runtime share: a value re-read at most every N seconds, and a value
built once on first use."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def cached(source: Callable[[], T], seconds: float) -> Callable[[], T]:
    """`source()` remembered for `seconds` (thread-safe enough: a race only reads twice)."""
    holder: list[tuple[float, T]] = []

    def get() -> T:
        now = time.monotonic()
        if not holder or now - holder[0][0] > seconds:
            holder[:] = [(now, source())]
        return holder[0][1]

    return get


def once(build: Callable[[], T]) -> Callable[[], T]:
    """`build()` called on first use only (thread-safe), then the same value every time."""
    lock = threading.Lock()
    holder: list[T] = []

    def get() -> T:
        if not holder:
            with lock:
                if not holder:
                    holder.append(build())
        return holder[0]

    return get
