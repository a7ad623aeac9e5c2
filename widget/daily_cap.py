"""The daily cap: at most `limits.daily_numbers` distinct numbers a day per site (in the site's time zone).

A request for a number already requested today is not a new number and always fits. The count reads the
site's stored requests since local midnight, under the site's advisory lock on PostgreSQL (SQLite's write
transaction is exclusive), so parallel requests cannot overrun the cap. The panel asks `numbers_today` to
show that the cap was reached.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta

from sqlalchemy import Connection, Engine, func, select

from widget.limits import advisory_lock
from widget.schedule import timezone
from widget.settings import SiteConfig
from widget.tables import widget_requests

__all__ = ["CapReached", "check", "day_bounds", "numbers_today"]


class CapReached(Exception):
    """The site reached its cap of distinct numbers today; `retry_after` is the seconds to local midnight."""

    def __init__(self, cap: int, retry_after: int) -> None:
        super().__init__(f"the site's daily cap of {cap} numbers is reached; new numbers are called tomorrow")
        self.cap = cap
        self.retry_after = retry_after


def day_bounds(zone: str, now: float) -> tuple[float, float]:
    """Local midnight before `now` and the next one, as Unix seconds."""
    tz = timezone(zone)
    today = datetime.fromtimestamp(now, tz).date()
    start = datetime.combine(today, time(), tz)
    end = datetime.combine(today + timedelta(days=1), time(), tz)
    return start.timestamp(), end.timestamp()


def _today(site_key: str, start: float, end: float) -> list[object]:
    return [
        widget_requests.c.site_key == site_key,
        widget_requests.c.created_at >= start,
        widget_requests.c.created_at < end,
    ]


def numbers_today(conn_or_engine: Connection | Engine, site_key: str, config: SiteConfig, now: float) -> int:
    """How many distinct numbers the site took requests for today."""
    start, end = day_bounds(config.timezone, now)
    query = select(func.count(func.distinct(widget_requests.c.phone))).where(*_today(site_key, start, end))
    if isinstance(conn_or_engine, Engine):
        with conn_or_engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    return int(conn_or_engine.execute(query).scalar_one())


def check(conn: Connection, site_key: str, config: SiteConfig, phone: str, now: float) -> None:
    """Raise `CapReached` when `phone` would be a new number past the cap. Call inside the transaction."""
    cap = config.limits.daily_numbers
    if cap <= 0:
        return
    advisory_lock(conn, "daily", site_key)
    start, end = day_bounds(config.timezone, now)
    known = conn.execute(
        select(widget_requests.c.id)
        .where(*_today(site_key, start, end), widget_requests.c.phone == phone)
        .limit(1)
    ).first()
    if known is None and numbers_today(conn, site_key, config, now) >= cap:
        raise CapReached(cap, max(1, int(end - now + 0.999)))
