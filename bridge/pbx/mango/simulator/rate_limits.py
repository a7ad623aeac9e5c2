"""Mango's request limits per second (mango.md §3.2, PDF §1.4.2) and the 401 lockout (PDF §1.4.1).

Each command path belongs to one limit class. A class has a per-product and a total limit; the listed
special classes replace the general one rather than adding to it [INF: the PDF lists them as "separate
limits"]. Over the limit Mango answers HTTP 429 with `RATE_LIMIT_BODY`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bridge.ratelimit import TokenBucket

RATE_LIMIT_BODY = {"name": "Service Unavailable", "message": "Rate limit exceeded.", "code": 0, "status": 429}
# §1.4.1 gives no body for the 401; this mirrors the 429 body [INF].
LOCKOUT_BODY = {"name": "Unauthorized", "message": "Too many invalid requests.", "code": 0, "status": 401}
LOCKOUT_SECONDS = 120.0


@dataclass(frozen=True)
class Limit:
    """Requests per second allowed per product and in total; None means no limit at that scope."""

    per_product: float | None
    total: float | None


DEFAULT_LIMITS: Mapping[str, Limit] = {
    "general": Limit(10, 100),
    "callback": Limit(4, 10),
    "hangup": Limit(4, 10),
    "recording_start": Limit(4, 10),
    "recording_access": Limit(10, 120),
    "users": Limit(0.5, 10),
    "balance": Limit(2, 10),
    "transfer": Limit(0.5, None),
    "stats_request": Limit(0.5, 10),
    "stats_result": Limit(None, 50),
    "route": Limit(0.5, 10),
}

_PATH_CLASSES = {
    "commands/callback": "callback",
    "commands/callback_group": "callback",  # [INF] the PDF names only "callback"
    "commands/call/hangup": "hangup",
    "commands/recording/start": "recording_start",
    "queries/recording/post": "recording_access",
    "queries/recording/link": "recording_access",
    "config/users/request": "users",
    "account/balance": "balance",
    "commands/transfer": "transfer",
    "stats/request": "stats_request",
    "stats/result": "stats_result",
    "commands/route": "route",
}


def limit_class(path: str) -> str:
    """The limit class of a command path such as `commands/callback` (unknown paths are `general`)."""
    path = path.strip("/")
    if path.startswith("queries/recording/link/"):
        return "recording_access"
    return _PATH_CLASSES.get(path, "general")


def _bucket(rate: float, clock: Callable[[], float]) -> TokenBucket:
    # "10/1" allows ten requests inside one second; "1/2" one request every two seconds.
    return TokenBucket(rate, burst=max(1, int(rate)), clock=clock)


class RateLimiter:
    """Decides per request whether Mango would answer 429; thread-safe."""

    def __init__(
        self, limits: Mapping[str, Limit] | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self._clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()

    def _get(self, cls: str, scope: str, rate: float | None) -> TokenBucket | None:
        if rate is None:
            return None
        with self._lock:
            bucket = self._buckets.get((cls, scope))
            if bucket is None:
                bucket = self._buckets[(cls, scope)] = _bucket(rate, self._clock)
            return bucket

    def allow(self, path: str, product: str) -> bool:
        """Take one request of `path` for `product` from its buckets; False means answer 429."""
        cls = limit_class(path)
        limit = self.limits.get(cls) or self.limits.get("general")
        if limit is None:
            return True
        for scope, rate in ((f"product:{product}", limit.per_product), ("total", limit.total)):
            bucket = self._get(cls, scope, rate)
            if bucket is not None and bucket.try_acquire() > 0:
                return False
        return True


class BadRequestLockout:
    """§1.4.1: one bad (3xxx) request per 2 minutes; more blocks all requests with 401 until 2 minutes
    after the first error."""

    def __init__(
        self, *, window: float = LOCKOUT_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.window = window
        self._clock = clock
        self._first_error: float | None = None
        self._blocked_until = 0.0
        self._lock = threading.Lock()

    def blocked(self) -> bool:
        with self._lock:
            return self._clock() < self._blocked_until

    def bad_request(self) -> bool:
        """Count a 3xxx answer; True means this request is already over the quota (answer 401 instead)."""
        with self._lock:
            now = self._clock()
            if self._first_error is None or now - self._first_error >= self.window:
                self._first_error = now
                return False
            self._blocked_until = self._first_error + self.window
            return True
