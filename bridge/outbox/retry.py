"""The retry policy of the outbox: capped exponential backoff with full jitter, and an attempt budget.

After the n-th failed attempt of a delivery (n = 1, 2, ...) the next one is scheduled after

    delay(n) = max(min_delay, U(0, min(cap, base * factor ** (n - 1))), retry_after)

where U is uniform ("full jitter": retries of many rows spread out instead of hammering a vendor that just
came back in lock step) and `retry_after` is the vendor's own hint, which always wins when longer. A row
that fails `max_attempts` times in total is parked as dead.

With the defaults (base 10 s, factor 2, cap 20 min, 12 attempts) the ceilings of the 11 waits are 10 s,
20 s, 40 s, 80 s, 160 s, 320 s, 640 s, then 20 min four times: a dead row has been tried for about 50
minutes on average (half the sum of the ceilings) and at most about 1 h 42 min.
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait between attempts and when to give up. `random` returns floats in [0, 1)."""

    base: float = 10.0
    factor: float = 2.0
    cap: float = 1200.0
    max_attempts: int = 12
    min_delay: float = 1.0
    # The longest a vendor's Retry-After may pause a whole connector (its own row still waits the full time).
    max_pause: float = 900.0
    random: Callable[[], float] = field(default=_random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if min(self.base, self.cap, self.min_delay, self.max_pause) < 0:
            raise ValueError("base, cap, min_delay and max_pause must be >= 0")
        if self.factor < 1:
            raise ValueError("factor must be >= 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")

    def ceiling(self, attempts: int) -> float:
        """The largest backoff after `attempts` failed attempts (before jitter)."""
        if attempts < 1:
            return 0.0
        # factor ** huge overflows; the cap is reached long before that.
        exponent = min(attempts - 1, 64)
        return min(self.cap, self.base * self.factor**exponent)

    def backoff(self, attempts: int) -> float:
        """A full-jitter delay after `attempts` failed attempts, never below `min_delay`."""
        return max(self.min_delay, self.ceiling(attempts) * self.random())

    def next_delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds until the next attempt: the jittered backoff, or the vendor's Retry-After if longer."""
        delay = self.backoff(attempts)
        if retry_after is not None and retry_after > delay:
            delay = float(retry_after)
        return delay

    def exhausted(self, attempts: int) -> bool:
        """Whether a row that has failed `attempts` times must be parked as dead."""
        return attempts >= self.max_attempts

    def schedule(self) -> list[float]:
        """The ceilings of every wait the budget allows (``max_attempts - 1`` of them), for docs and UIs."""
        return [self.ceiling(n) for n in range(1, self.max_attempts)]
