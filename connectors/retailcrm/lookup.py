"""Who is calling: ``telephony/manager`` (the customer, their manager, retailCRM's links) and the last
orders from ``orders?filter[customerId]=`` (retailcrm.md §3.5; links as in the PHP client's
SerializedLinks: ``customerLink``, ``newOrderLink``, ``lastOrderLink``, ``newCustomerLink``), parsed and
remembered per number (`CallerBook`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from connectors.retailcrm.client import RetailCrmClient

ORDERS_PAGE = 20  # retailCRM accepts limit 20, 50 or 100
MAX_CACHED = 10_000


@dataclass(frozen=True)
class Manager:
    """The retailCRM user responsible for the customer."""

    user_id: int
    name: str | None = None
    code: str | None = None  # the manager's extension as retailCRM knows it (additional code)


@dataclass(frozen=True)
class Caller:
    """What ``telephony/manager?details=1`` says about a number."""

    customer_id: int | None = None
    name: str | None = None
    manager: Manager | None = None
    links: dict[str, str] = field(default_factory=dict)
    orders: tuple[dict[str, Any], ...] = ()

    @property
    def known(self) -> bool:
        return self.customer_id is not None


def _name(person: dict[str, Any]) -> str | None:
    parts = [str(person.get(k) or "").strip() for k in ("lastName", "firstName", "patronymic")]
    text = " ".join(p for p in parts if p)
    return text or None


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_manager(body: dict[str, Any]) -> Caller:
    """The answer of ``GET telephony/manager`` as a `Caller` (unknown number: no customer, no manager)."""
    customer = body.get("customer") if isinstance(body.get("customer"), dict) else {}
    manager = body.get("manager") if isinstance(body.get("manager"), dict) else {}
    links = body.get("links") if isinstance(body.get("links"), dict) else {}
    manager_id = _int(manager.get("id"))
    return Caller(
        customer_id=_int(customer.get("id")),
        name=_name(customer),
        manager=Manager(manager_id, _name(manager), str(manager.get("code") or "") or None)
        if manager_id is not None
        else None,
        links={k: str(v) for k, v in links.items() if isinstance(v, str) and v.startswith("http")},
    )


def last_orders(body: dict[str, Any], count: int, account_url: str) -> tuple[dict[str, Any], ...]:
    """The newest `count` orders of an ``orders`` answer, in the fields a caller card shows (the lookup
    service's order keys: number, date, total, currency, status, url)."""
    orders = [o for o in body.get("orders") or [] if isinstance(o, dict)]
    orders.sort(key=lambda o: str(o.get("createdAt") or ""), reverse=True)
    return tuple(
        {
            "number": str(o.get("number") or o.get("id") or ""),
            "date": o.get("createdAt"),
            "total": o.get("totalSumm"),
            "currency": o.get("currency"),
            "status": o.get("status"),
            "url": f"{account_url}/orders/{o['id']}/edit" if o.get("id") is not None else None,
        }
        for o in orders[:count]
    )


class CallerBook:
    """``telephony/manager?phone=&details=1&ignoreStatus=1`` per number, with the customer's last orders
    when asked, remembered for `keep_seconds` (the popup's card then serves the missed-call task).
    Thread-safe."""

    def __init__(
        self,
        client: RetailCrmClient,
        *,
        account_url: str,
        orders: int,
        keep_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._account_url = account_url
        self._orders = orders
        self._keep = keep_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, Caller]] = {}

    def find(self, phone: str, *, max_wait: float | None = None, orders: bool = False) -> Caller:
        """The `Caller` for an E.164 number; `orders` adds the last orders of a known customer."""
        with self._lock:
            hit = self._cache.get(phone)
        fresh = hit is not None and self._clock() - hit[0] < self._keep
        want_orders = orders and self._orders > 0
        if hit is not None and fresh:
            caller = hit[1]
            if not want_orders or caller.orders or not caller.known:
                return caller
        else:
            params = {"phone": phone, "details": 1, "ignoreStatus": 1}
            caller = parse_manager(self._client.get("/telephony/manager", params, max_wait=max_wait))
        if want_orders and caller.known:
            params = {"filter[customerId]": caller.customer_id, "limit": ORDERS_PAGE}
            listed = self._client.get("/orders", params, max_wait=max_wait)
            caller = replace(caller, orders=last_orders(listed, self._orders, self._account_url))
        with self._lock:
            if len(self._cache) > MAX_CACHED:
                self._cache.clear()
            self._cache[phone] = (self._clock(), caller)
        return caller
