"""A thread-safe token bucket, used for vendor rate limits (Mango commands, CRM APIs)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class TokenBucket:
    """`rate` tokens per second refill a bucket of `burst` tokens; each request takes one."""

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._sleep = sleep
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def try_acquire(self) -> float:
        """Take a token if one is there and return 0.0; otherwise return the seconds until one is."""
        with self._lock:
            self._refill()
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            # Never report a wait so small that a coarse clock would not move past it.
            return max((1 - self._tokens) / self.rate, 1e-3)

    def acquire(self, timeout: float | None = None) -> bool:
        """Block until a token is taken (True) or `timeout` seconds pass (False)."""
        deadline = None if timeout is None else self._clock() + timeout
        while True:
            wait = self.try_acquire()
            if wait == 0.0:
                return True
            if deadline is not None and self._clock() + wait > deadline:
                return False
            self._sleep(wait)

    def penalise(self, seconds: float) -> None:
        """Empty the bucket for `seconds` (a vendor said Retry-After or answered 429)."""
        with self._lock:
            self._refill()
            # Extend the pause rather than add to it: several threads may report the same 429.
            self._tokens = min(self._tokens, -seconds * self.rate)
