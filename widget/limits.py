"""Abuse limits kept in the store, so they hold across every worker process and every instance.

Each accepted request leaves one row in `widget_hits` per scope (ip, network, number, visitor, site), where
the network is the address's /24 (IPv4) or /56 (IPv6), so many addresses of one network share a limit. A
request is
refused when a scope already holds `count` rows younger than `seconds` (a sliding window). The check and
the insert run in the caller's transaction; on PostgreSQL a transaction-scoped advisory lock per
(scope, key) makes concurrent requests for the same key queue up, so no limit is overrun. On SQLite the
transaction itself is exclusive (`BEGIN IMMEDIATE`).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, insert, select, text

from widget.settings import Limit
from widget.tables import widget_hits

__all__ = ["Check", "LimitExceeded", "advisory_lock", "check_and_record", "network_of", "prune"]

_LOCK_NAMESPACE = 0x7769  # "wi"
IPV4_PREFIX, IPV6_PREFIX = 24, 56


@dataclass(frozen=True)
class Check:
    scope: str  # ip | network | number | visitor | site
    key: str
    limit: Limit


@dataclass(frozen=True)
class LimitExceeded:
    """Which limit refused the request, and in how many seconds a new one would be accepted."""

    scope: str
    limit: Limit
    retry_after: int

    @property
    def message(self) -> str:
        what = {
            "ip": "from this address",
            "network": "from this network",
            "number": "for this number",
            "visitor": "from this visitor",
            "site": "for this site",
        }.get(self.scope, "")
        return (
            f"too many callback requests {what}: at most {self.limit.count} per {self.limit.seconds} s; "
            f"try again in {self.retry_after} s"
        )


def _lock_id(scope: str, key: str) -> int:
    digest = hashlib.sha256(f"{scope}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


def network_of(ip: str) -> str | None:
    """The /24 (IPv4) or /56 (IPv6) network of an address, e.g. "203.0.113.0/24"; None if not an address."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = IPV4_PREFIX if address.version == 4 else IPV6_PREFIX
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def advisory_lock(conn: Connection, scope: str, key: str) -> None:
    """On PostgreSQL, queue up behind other transactions holding (scope, key); SQLite's are exclusive."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:ns AS integer), CAST(:k AS integer))"),
            {"ns": _LOCK_NAMESPACE, "k": _lock_id(scope, key)},
        )


def check_and_record(conn: Connection, checks: Sequence[Check], now: float) -> LimitExceeded | None:
    """Refuse (returning the first limit hit) or record one hit per check. Call inside a transaction."""
    for check in sorted(checks, key=lambda c: (c.scope, c.key)):  # one lock order: no deadlocks
        advisory_lock(conn, check.scope, check.key)
    for check in checks:
        since = now - check.limit.seconds
        count, oldest = conn.execute(
            select(func.count(), func.min(widget_hits.c.at)).where(
                widget_hits.c.scope == check.scope,
                widget_hits.c.key == check.key,
                widget_hits.c.at > since,
            )
        ).one()
        if count >= check.limit.count:
            if count > check.limit.count:
                # Find when enough hits have aged out for one more to fit.
                nth = conn.execute(
                    select(widget_hits.c.at)
                    .where(
                        widget_hits.c.scope == check.scope,
                        widget_hits.c.key == check.key,
                        widget_hits.c.at > since,
                    )
                    .order_by(widget_hits.c.at.desc())
                    .offset(check.limit.count - 1)
                    .limit(1)
                ).scalar_one()
                oldest = nth
            retry_after = max(1, int((oldest or now) + check.limit.seconds - now + 0.999))
            return LimitExceeded(check.scope, check.limit, retry_after)
    conn.execute(insert(widget_hits), [{"scope": c.scope, "key": c.key, "at": now} for c in checks])
    return None


def prune(conn: Connection, older_than: float) -> int:
    """Delete hits older than `older_than` (Unix seconds); they no longer count for any window."""
    return conn.execute(delete(widget_hits).where(widget_hits.c.at < older_than)).rowcount or 0
