"""Reading and writing sites and the block list in the store."""

from __future__ import annotations

import ipaddress
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from markupsafe import escape
from sqlalchemy import Connection, Engine, delete, insert, select, update

from widget.settings import SiteConfig, check_key
from widget.tables import widget_blocklist, widget_requests, widget_sites

__all__ = [
    "BLOCK_KINDS",
    "Site",
    "SiteCache",
    "SiteExists",
    "SiteNotFound",
    "block",
    "blocked",
    "delete_site",
    "list_blocked",
    "list_sites",
    "load_site",
    "reschedule_waiting",
    "save_site",
    "unblock",
]

BLOCK_KINDS = ("phone", "ip")


class SiteNotFound(LookupError):
    """No site with this key."""


class SiteExists(ValueError):
    """A site with this key already exists."""


@dataclass(frozen=True)
class Site:
    key: str
    enabled: bool
    config: SiteConfig
    secret: str
    updated_at: float


def _site(row: object) -> Site:
    return Site(
        key=row.key,  # type: ignore[attr-defined]
        enabled=bool(row.enabled),  # type: ignore[attr-defined]
        config=SiteConfig.model_validate_json(row.config),  # type: ignore[attr-defined]
        secret=row.secret,  # type: ignore[attr-defined]
        updated_at=row.updated_at,  # type: ignore[attr-defined]
    )


def load_site(conn_or_engine: Engine | Connection, key: str) -> Site | None:
    """The site, or None; a key no site can have (wrong characters, NUL, too long) is not looked up."""
    try:
        check_key(key)
    except (ValueError, TypeError):
        return None
    query = select(widget_sites).where(widget_sites.c.key == key)
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            row = conn.execute(query).first()
    else:
        row = conn_or_engine.execute(query).first()
    return _site(row) if row is not None else None


def list_sites(engine: Engine) -> list[Site]:
    with engine.connect() as conn:
        return [_site(row) for row in conn.execute(select(widget_sites).order_by(widget_sites.c.key))]


def save_site(
    engine: Engine,
    key: str,
    config: SiteConfig,
    *,
    enabled: bool = True,
    create: bool | None = None,
    now: float | None = None,
) -> Site:
    """Insert or update a site. `create=True` refuses an existing key, `False` a missing one.

    Requests waiting for the schedule are re-planned at once, so an edited schedule takes effect for
    them too.
    """
    check_key(key)
    now = time.time() if now is None else now
    body = config.model_dump_json()
    with engine.begin() as conn:
        exists = conn.execute(select(widget_sites.c.key).where(widget_sites.c.key == key)).first()
        if exists and create is True:
            raise SiteExists(f"site {key!r} already exists; change it with set-site")
        if not exists and create is False:
            raise SiteNotFound(f"no site {key!r}; add it with add-site")
        if exists:
            conn.execute(
                update(widget_sites)
                .where(widget_sites.c.key == key)
                .values(config=body, enabled=enabled, updated_at=now)
            )
        else:
            conn.execute(
                insert(widget_sites).values(
                    key=key,
                    enabled=enabled,
                    config=body,
                    secret=secrets.token_urlsafe(32),
                    created_at=now,
                    updated_at=now,
                )
            )
        reschedule_waiting(conn, key, config, now)
        site = load_site(conn, key)
    assert site is not None
    return site


def reschedule_waiting(conn: Connection, key: str, config: SiteConfig, now: float) -> int:
    """Set the next attempt of a site's requests waiting for the schedule to its next opening."""
    opening = config.schedule().next_opening(now)
    if opening is None:
        return 0
    result = conn.execute(
        update(widget_requests)
        .where(widget_requests.c.site_key == key, widget_requests.c.status == "scheduled")
        .values(next_attempt_at=max(now, opening.timestamp()), updated_at=now)
    )
    return result.rowcount or 0


def delete_site(engine: Engine, key: str) -> bool:
    with engine.begin() as conn:
        return bool(conn.execute(delete(widget_sites).where(widget_sites.c.key == key)).rowcount)


class SiteCache:
    """Sites by key, re-read from the store after `ttl` seconds (edits apply within that time)."""

    def __init__(self, engine: Engine, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._engine = engine
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._items: dict[str, tuple[float, Site | None]] = {}

    def get(self, key: str) -> Site | None:
        now = self._clock()
        with self._lock:
            cached = self._items.get(key)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        site = load_site(self._engine, key)
        with self._lock:
            if len(self._items) > 1000:
                self._items.clear()
            self._items[key] = (now, site)
        return site


# --------------------------------------------------------------------------------------- block list


def _check_block(kind: str, value: str) -> str:
    if kind not in BLOCK_KINDS:
        raise ValueError(f"block list entries are {' or '.join(BLOCK_KINDS)}")
    if kind == "ip":
        try:
            return str(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{value!r} is not an IP address or network") from None
    return value.strip()


def block(engine: Engine, kind: str, value: str, reason: str | None = None, now: float | None = None) -> str:
    """Block a number (E.164) or an IP address/network; returns the stored value."""
    value = _check_block(kind, value)
    with engine.begin() as conn:
        conn.execute(
            delete(widget_blocklist).where(widget_blocklist.c.kind == kind, widget_blocklist.c.value == value)
        )
        conn.execute(
            insert(widget_blocklist).values(
                kind=kind, value=value, reason=reason, created_at=time.time() if now is None else now
            )
        )
    return value


def unblock(engine: Engine, kind: str, value: str) -> bool:
    value = _check_block(kind, value)
    with engine.begin() as conn:
        result = conn.execute(
            delete(widget_blocklist).where(widget_blocklist.c.kind == kind, widget_blocklist.c.value == value)
        )
    return bool(result.rowcount)


def list_blocked(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(widget_blocklist).order_by(widget_blocklist.c.kind, widget_blocklist.c.value)
        )
        return [dict(row._mapping) for row in rows]


def blocked(conn: Connection, phone: str, ip: str | None) -> bool:
    """Whether the number or the address is on the block list."""
    if conn.execute(
        select(widget_blocklist.c.value).where(
            widget_blocklist.c.kind == "phone", widget_blocklist.c.value == phone
        )
    ).first():
        return True
    if not ip:
        return False
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    for (value,) in conn.execute(select(widget_blocklist.c.value).where(widget_blocklist.c.kind == "ip")):
        try:
            if address in ipaddress.ip_network(value, strict=False):
                return True
        except ValueError:
            continue
    return False


def config_json(site: Site) -> str:
    return json.dumps(site.config.model_dump(mode="json"), ensure_ascii=False, indent=2)


def embed_snippet(public_url: str, key: str) -> str:
    """The tag a site owner puts on every page (docs/widget.md, "Quick start")."""
    src = f"{public_url.rstrip('/')}/widget/callback.js"
    return f'<script src="{escape(src)}" data-site="{escape(key)}" async></script>'
