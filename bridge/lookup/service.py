"""The caller-card lookup: every connector that can look a number up is asked at once, under a deadline.

`LookupService.start(number)` returns a `Lookup` at once: either a cached card (hits and misses are both
remembered) or one lookup in flight per number, shared by everyone who asks meanwhile. Each connector's
`lookup` runs in a thread pool; the `Lookup` merges the answers as they come (`snapshot()`), is `done`
when every connector has answered or `timeout` has passed, and calls its callbacks with the final card.
`lookup(number)` is the blocking form: it waits up to the deadline and returns what is known by then.

Numbers are keyed as design.md matches them: E.164 when the number parses, else the national significant
number, else the last 10 digits; "8 916 123-45-67", "+7 (916) 1234567" and Mango's "79161234567" share
one cache entry.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor

from bridge.connector_api import CallerCard, Capability, Connector
from bridge.connector_api.http import redact
from bridge.connector_api.phones import DEFAULT_REGION, match_keys
from bridge.lookup.card import Card, merge

log = logging.getLogger(__name__)

LOOKUP_CAPABILITY = Capability.LOOKUP
_MAX_CACHE = 50_000


@functools.lru_cache(maxsize=8192)  # parsing a number costs ~50 us; a ringing asks several times
def number_key(raw: str | None, region: str = DEFAULT_REGION) -> tuple[str, str] | None:
    """(cache key, the number to ask connectors with) for a number in any format; None if unusable."""
    if not raw:
        return None
    keys = match_keys(raw, region)
    if keys.e164:
        return keys.e164, keys.e164
    if keys.national:
        return f"n:{keys.national}", keys.national
    if keys.last10:
        return f"l:{keys.last10}", keys.last10
    return None


class Lookup:
    """One number being looked up (or a cached answer). Thread-safe."""

    def __init__(self, key: str, number: str, sources: list[str], *, card: Card | None = None) -> None:
        self.key = key
        self.number = number
        self._order = sources
        self._answers: dict[str, CallerCard | None] = {}
        self._failed: list[str] = []
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._callbacks: list[Callable[[Card], None]] = []
        self._final: Card | None = card
        self.started = time.monotonic()
        if card is not None:
            self._done.set()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None) -> bool:
        return self._done.wait(timeout)

    def snapshot(self) -> Card:
        """The card merged from the answers so far (`complete` once every connector answered)."""
        with self._lock:
            if self._final is not None:
                return self._final
            pending = [s for s in self._order if s not in self._answers and s not in self._failed]
            return merge(self.number, self._answers, order=self._order, pending=pending, failed=self._failed)

    def add_done_callback(self, callback: Callable[[Card], None]) -> None:
        """Call `callback(final card)` when done (at once, in this thread, if it already is)."""
        with self._lock:
            if self._final is None:
                self._callbacks.append(callback)
                return
            final = self._final
        callback(final)

    def _answer(self, source: str, card: CallerCard | None, failed: bool) -> Card | None:
        with self._lock:
            if self._final is not None or source in self._answers or source in self._failed:
                return None
            if failed:
                self._failed.append(source)
            else:
                self._answers[source] = card
            if len(self._answers) + len(self._failed) < len(self._order):
                return None
            return self._finish_locked()

    def _expire(self) -> Card | None:
        with self._lock:
            if self._final is not None:
                return None
            for source in self._order:
                if source not in self._answers and source not in self._failed:
                    self._failed.append(source)
            return self._finish_locked()

    def _finish_locked(self) -> Card:
        self._final = merge(self.number, self._answers, order=self._order, failed=self._failed)
        self._done.set()
        return self._final

    def _run_callbacks(self, final: Card) -> None:
        with self._lock:
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback(final)
            except Exception:
                log.exception("caller card callback failed")


class _Timeouts:
    """One thread that expires lookups whose connectors did not answer in time."""

    def __init__(self, on_expire: Callable[[Lookup], None]) -> None:
        self._heap: list[tuple[float, int, Lookup]] = []
        self._cond = threading.Condition()
        self._counter = itertools.count()
        self._on_expire = on_expire
        self._thread: threading.Thread | None = None

    def add(self, at: float, lookup: Lookup) -> None:
        with self._cond:
            heapq.heappush(self._heap, (at, next(self._counter), lookup))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="lookup-timeouts", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                _, _, lookup = heapq.heappop(self._heap)
            if not lookup.done:
                self._on_expire(lookup)


class LookupService:
    """Asks every lookup-capable connector in parallel; merges, caches, de-duplicates (module docstring)."""

    def __init__(
        self,
        connectors: Mapping[str, Connector],
        *,
        deadline: float = 0.7,
        timeout: float = 10.0,
        cache_seconds: float = 300.0,
        miss_cache_seconds: float = 60.0,
        region: str = DEFAULT_REGION,
        max_workers: int = 32,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Kept whole: a connector enabled (or rebuilt) later may gain the capability; see `able`.
        self._all = dict(connectors)
        self.deadline = deadline
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.miss_cache_seconds = miss_cache_seconds
        self.region = region
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, tuple[float, Card]] = OrderedDict()
        self._inflight: dict[str, Lookup] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._max_workers = max_workers
        self._timeouts = _Timeouts(self._expire)
        self.on_card: Callable[[str, Card], None] | None = None  # every final card (for other instances)

    @classmethod
    def from_settings(cls, settings: object, connectors: Mapping[str, Connector]) -> LookupService:
        lookup = settings.lookup  # type: ignore[attr-defined]
        return cls(
            connectors,
            deadline=lookup.deadline_ms / 1000.0,
            timeout=lookup.timeout_seconds,
            cache_seconds=lookup.cache_seconds,
            miss_cache_seconds=lookup.miss_cache_seconds,
            region=settings.phones.default_region,  # type: ignore[attr-defined]
        )

    def able(self) -> dict[str, Connector]:
        """The connectors that can look numbers up now (a dormant connector has no capabilities)."""
        return {
            name: c for name, c in self._all.items() if LOOKUP_CAPABILITY in getattr(c, "capabilities", ())
        }

    @property
    def sources(self) -> list[str]:
        return list(self.able())

    @property
    def enabled(self) -> bool:
        return bool(self.able())

    def key(self, raw: str | None) -> tuple[str, str] | None:
        return number_key(raw, self.region)

    # ------------------------------------------------------------------ cache

    def cached(self, raw: str | None) -> Card | None:
        found = self.key(raw)
        return self._cached(found[0]) if found else None

    def _cached(self, key: str) -> Card | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if entry[0] <= self._clock():
                del self._cache[key]
                return None
            return entry[1]

    def remember(self, key: str, card: Card) -> None:
        """Cache a final card (a lookup of ours, or one another instance made)."""
        if not card.complete:
            return
        if card.failed and not card.found:
            return  # a failure is not an answer: ask again next time
        ttl = self.cache_seconds if card.found else self.miss_cache_seconds
        if ttl <= 0:
            return
        with self._lock:
            self._cache[key] = (self._clock() + ttl, card)
            self._cache.move_to_end(key)
            while len(self._cache) > _MAX_CACHE:
                self._cache.popitem(last=False)

    def forget(self, raw: str | None = None) -> None:
        """Drop one number from the cache, or everything."""
        with self._lock:
            if raw is None:
                self._cache.clear()
            else:
                found = self.key(raw)
                if found:
                    self._cache.pop(found[0], None)

    # ------------------------------------------------------------------ lookups

    def start(self, raw: str | None) -> Lookup | None:
        """A cached answer, the lookup already in flight for this number, or a new one; None when the
        number is unusable or no connector can look numbers up."""
        able = self.able()
        if not able:
            return None
        found = self.key(raw)
        if found is None:
            return None
        key, number = found
        card = self._cached(key)
        if card is not None:
            return Lookup(key, number, list(able), card=card)
        with self._lock:
            running = self._inflight.get(key)
            if running is not None:
                return running
            lookup = self._inflight[key] = Lookup(key, number, list(able))
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._max_workers, thread_name_prefix="lookup")
            pool = self._pool
        self._timeouts.add(time.monotonic() + self.timeout, lookup)
        for name, connector in able.items():
            pool.submit(self._ask, lookup, name, connector)
        return lookup

    def lookup(self, raw: str | None, deadline: float | None = None) -> Card | None:
        """Blocking: the card known within `deadline` seconds (default: the service's deadline)."""
        running = self.start(raw)
        if running is None:
            return None
        running.wait(self.deadline if deadline is None else deadline)
        return running.snapshot()

    def _ask(self, lookup: Lookup, name: str, connector: Connector) -> None:
        started = time.monotonic()
        try:
            card = connector.lookup(lookup.number)
            failed = False
        except Exception as exc:  # a connector's failure must not break the card
            log.warning("lookup failed connector=%s error=%s", name, redact(f"{type(exc).__name__}: {exc}"))
            card, failed = None, True
        log.debug(
            "lookup answered connector=%s found=%s ms=%.0f",
            name,
            card is not None,
            (time.monotonic() - started) * 1000,
        )
        final = lookup._answer(name, card, failed)
        if final is not None:
            self._finished(lookup, final)

    def _expire(self, lookup: Lookup) -> None:
        final = lookup._expire()
        if final is not None:
            log.warning("lookup timed out connectors=%s", ",".join(final.failed))
            self._finished(lookup, final)

    def _finished(self, lookup: Lookup, final: Card) -> None:
        self.remember(lookup.key, final)
        with self._lock:
            if self._inflight.get(lookup.key) is lookup:
                del self._inflight[lookup.key]
        lookup._run_callbacks(final)
        if self.on_card is not None:
            try:
                self.on_card(lookup.key, final)
            except Exception:
                log.exception("card listener failed")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
