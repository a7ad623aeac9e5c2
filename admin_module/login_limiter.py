"""Failed password logins, limited atomically in the store (every worker process and instance shares them).

Each attempt first takes a slot under three keys: the user name from this address, the user name from
anywhere, and this address for any user name. Taking a slot is one upsert per key (`INSERT ... ON
CONFLICT DO UPDATE ... RETURNING`) in one transaction, keys in a fixed order; when any key is over its
limit the transaction rolls back and the password is not checked at all. So N parallel attempts check at
most the limit, and a refused attempt costs no other key a slot. A correct password frees the user's slots
and gives the address's back; a wrong one keeps its slots until the window (counted from the first failure)
passes, and is recorded in `admin_login_failures`.

The per-address limit is separate and higher, so a colleague behind the same NAT still logs in while one
user name is locked.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Connection, Engine, case, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from admin_module.tables import admin_login_failures, admin_login_limits
from admin_module.users import valid_username
from bridge.config import Settings
from bridge.store.engine import reader

T = TypeVar("T")
log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"[0-9A-Za-z:.%_-]{1,64}")
FAILURE_LOG_SECONDS = 86400.0  # failed checks stay in `admin_login_failures` this long


@dataclass(frozen=True)
class LoginLimits:
    """Failed logins allowed per window; `login.*` in the settings (docs/configuration.md)."""

    window: float = 300.0
    per_user_address: int = 5
    per_user: int = 20
    per_address: int = 50

    @classmethod
    def from_settings(cls, settings: Settings) -> LoginLimits:
        login = settings.login
        return cls(login.window_seconds, login.per_user_address, login.per_user, login.per_address)


class TooManyAttempts(Exception):
    """Refused by the limit, without checking the password; `wait` seconds until it may be tried again."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"too many failed logins; try again in {wait:.0f} s")
        self.wait = wait

    @property
    def minutes(self) -> int:
        return max(1, round(self.wait / 60))


def _digest(value: str) -> str:
    return "#" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def name_key(username: str) -> str:
    """The user name as a counter key: lower case, or a digest for input that cannot be a user name."""
    return username.lower() if valid_username(username) else _digest(username)


def address_key(address: str | None) -> str:
    if not address:
        return "-"
    return address if _ADDRESS.fullmatch(address) else _digest(address)


class LoginLimiter:
    """`attempt(username, address, check)` runs `check()` (the password check) only within the limits."""

    def __init__(
        self, engine: Engine, limits: LoginLimits | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._engine = engine
        self.limits = limits or LoginLimits()
        self._clock = clock

    def _keys(self, username: str, address: str | None) -> list[tuple[str, int]]:
        """(key, limit) pairs, sorted by key: every transaction locks them in the same order."""
        name, addr = name_key(username), address_key(address)
        pairs = [
            (f"a:{addr}", self.limits.per_address),
            (f"u:{name}", self.limits.per_user),
            (f"ua:{name}|{addr}", self.limits.per_user_address),
        ]
        return sorted(pairs)

    def attempt(self, username: str, address: str | None, check: Callable[[], T | None]) -> T | None:
        """`check()`'s result (None: wrong password); raises `TooManyAttempts` without calling it."""
        keys = self._keys(username, address)
        self._reserve(keys)
        try:
            result = check()
        except BaseException:
            self._give_back(keys, every=True)
            raise
        if result is None:
            self._record_failure(username, address)
        else:
            self._give_back(keys, every=False)
        return result

    def _reserve(self, keys: list[tuple[str, int]]) -> None:
        now = self._clock()
        with self._engine.connect() as conn:
            trans = conn.begin()
            wait = 0.0
            try:
                for key, limit in keys:
                    count, window_start = self._take(conn, key, now)
                    if count > limit:
                        wait = max(wait, window_start + self.limits.window - now, 1.0)
            except BaseException:
                trans.rollback()
                raise
            if wait > 0:
                trans.rollback()  # a refused attempt takes no slot anywhere
                raise TooManyAttempts(wait)
            trans.commit()

    def _take(self, conn: Connection, key: str, now: float) -> tuple[int, float]:
        """One more attempt under `key` (a fresh window when the last one has passed): (count, start)."""
        table = admin_login_limits
        dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
        expired = table.c.window_start <= now - self.limits.window
        stmt = dialect.insert(table).values(key=key, count=1, window_start=now)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                "count": case((expired, 1), else_=table.c.count + 1),
                "window_start": case((expired, now), else_=table.c.window_start),
            },
        )
        row = conn.execute(stmt.returning(table.c.count, table.c.window_start)).one()
        return int(row.count), float(row.window_start)

    def _give_back(self, keys: list[tuple[str, int]], *, every: bool) -> None:
        """After a correct password the user's counters restart and the address gets its slot back;
        after an error in the check (`every`) each key gets its slot back."""
        table = admin_login_limits
        with self._engine.begin() as conn:
            for key, _limit in keys:
                row = table.c.key == key
                if every or key.startswith("a:"):
                    conn.execute(update(table).where(row, table.c.count > 0).values(count=table.c.count - 1))
                else:
                    conn.execute(update(table).where(row).values(count=0))

    def _record_failure(self, username: str, address: str | None) -> None:
        log.info("login failed: user %s from %s", name_key(username), address_key(address))
        now = self._clock()
        with self._engine.begin() as conn:
            conn.execute(insert(admin_login_failures).values(key=f"user:{name_key(username)}", at=now))
            old = admin_login_failures.c.at < now - FAILURE_LOG_SECONDS
            conn.execute(delete(admin_login_failures).where(old))
        self._prune(now)

    def _prune(self, now: float) -> None:
        """Drop counters whose window has passed, skipping rows another login holds right now."""
        table = admin_login_limits
        stale = (
            select(table.c.key)
            .where(table.c.window_start < now - self.limits.window)
            .limit(500)
            .with_for_update(skip_locked=True)
        )
        with self._engine.begin() as conn:
            conn.execute(delete(table).where(table.c.key.in_(stale.scalar_subquery())))

    def failures(self, username: str, since: float = 0.0) -> int:
        """Failed password checks recorded for `username` since `since`."""
        key = f"user:{name_key(username)}"
        with reader(self._engine).connect() as conn:
            rows = conn.execute(
                select(admin_login_failures.c.id).where(
                    admin_login_failures.c.key == key, admin_login_failures.c.at >= since
                )
            ).all()
        return len(rows)
