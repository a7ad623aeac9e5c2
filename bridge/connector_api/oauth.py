"""OAuth token pairs in a connector's state store, rotated safely by every thread and process at once.

CRMs such as amoCRM and Bitrix24 rotate the refresh token on every refresh: the old one dies. Two
processes refreshing with the same refresh token at once would leave one of them (and possibly the
account) without a valid pair. `TokenVault` is the one place that knows how to avoid it, on the
versioned `StateStore` (compare-and-set):

1. `load` reads the pair and its version;
2. `claim` compare-and-sets the same pair plus a lease (owner, until): only one writer wins, and only the
   winner talks to the OAuth server; the others `pause` and re-read until the lease clears or expires;
3. `write_over` stores what the winner got, from the version it claimed. If that write loses (the lease
   ran out while the OAuth server was slow and someone took over), the pair the winner holds is usually
   still the newest one issued, so it is written again over the newer version, unless `keep_newer` says
   the stored pair supersedes it (a fresh install, say);
4. `supersede` replaces the pair unconditionally (an install, an uninstall).

The record is `TokenPair` or a connector's subclass of it (extra fields, other defaults); its JSON is what
is stored, and fields it does not know are ignored when read, so records written by older versions load.
Each connector keeps its own policy (when to refresh, what a refused grant means, messages); the
mechanics of rotation live here.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Generic, TypeVar

from bridge.connector_api.base import StateStore

log = logging.getLogger(__name__)

POLL_SECONDS = 0.05  # how often a waiting caller re-reads a leased pair


@dataclass(frozen=True)
class TokenPair:
    """A stored token pair. Secrets: `access_token`, `refresh_token` (never log a record)."""

    access_token: str | None = None
    refresh_token: str | None = None
    expires_at: float = 0.0
    refreshed_at: float = 0.0
    generation: int = 0  # how many pairs were obtained (installs and refreshes)
    lease_owner: str | None = None
    lease_until: float = 0.0
    error: str | None = None  # why there is no usable pair (re-authorise)

    def to_json(self) -> str:
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Any:
        data = json.loads(text)
        values = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})

    def leased(self, now: float) -> bool:
        """Someone holds a live lease on this pair (is refreshing it now)."""
        return self.lease_owner is not None and self.lease_until > now

    def released(self) -> Any:
        """The same pair without a lease."""
        return replace(self, lease_owner=None, lease_until=0.0)


R = TypeVar("R", bound=TokenPair)


class TokenVault(Generic[R]):
    """The pair of type `record_type` under `key` of a connector's state store (see the module docstring).

    `state` is a callable because a connector gets its store only when bound; `unbound` builds the error
    raised before that. Clock and sleep are injectable for tests.
    """

    def __init__(
        self,
        state: Callable[[], StateStore | None],
        key: str,
        record_type: type[R],
        *,
        unbound: Callable[[], Exception],
        lease_seconds: float = 30.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._state = state
        self.key = key
        self._record_type = record_type
        self._unbound = unbound
        self.lease_seconds = lease_seconds
        self.clock = clock
        self.sleep = sleep

    def store(self) -> StateStore:
        store = self._state()
        if store is None:
            raise self._unbound()
        return store

    def load(self) -> tuple[R | None, int | None]:
        """The stored record and its version; an unreadable record comes back as one with `error` set."""
        stored = self.store().get(self.key)
        if stored is None:
            return None, None
        try:
            return self._record_type.from_json(stored[0]), stored[1]
        except (ValueError, TypeError):
            log.error("%s: the stored token record is unreadable; it will be replaced", self.key)
            return self._record_type(error="the stored token record was unreadable"), stored[1]

    def claim(self, record: R, version: int | None) -> tuple[R, int] | None:
        """Lease `record` (read at `version`) for a refresh; None when someone else changed it first."""
        leased = replace(record, lease_owner=uuid.uuid4().hex, lease_until=self.clock() + self.lease_seconds)
        claimed_version = self.store().compare_and_set(self.key, leased.to_json(), version)
        return None if claimed_version is None else (leased, claimed_version)

    def pause(self) -> None:
        """Wait a moment before re-reading a pair someone else has leased."""
        self.sleep(POLL_SECONDS)

    def write_over(
        self,
        record: R,
        claimed_version: int | None,
        *,
        keep_newer: Callable[[R], bool] | None = None,
        attempts: int = 10,
    ) -> R | None:
        """Store `record` over the version we claimed (see step 3); the record that stands, or None."""
        store = self.store()
        version = claimed_version
        for _ in range(attempts):
            if store.compare_and_set(self.key, record.to_json(), version) is not None:
                return record
            current = store.get(self.key)
            if current is None:
                version = None
                continue
            if keep_newer is not None:
                try:
                    stored = self._record_type.from_json(current[0])
                except (ValueError, TypeError):
                    stored = None
                if stored is not None and keep_newer(stored):
                    return stored
            version = current[1]
        return None

    def supersede(self, make: Callable[[R | None], R], *, attempts: int = 20) -> R | None:
        """Replace whatever is stored with `make(current)`; None if the record kept changing."""
        store = self.store()
        for _ in range(attempts):
            current, version = self.load()
            fresh = make(current)
            if store.compare_and_set(self.key, fresh.to_json(), version) is not None:
                return fresh
        return None


__all__ = ["POLL_SECONDS", "TokenPair", "TokenVault"]
