"""Caller cards from ``telephony/manager`` (the customer, their manager, retailCRM's links) and the last
orders from ``orders?filter[customerId]=`` (retailcrm.md §3.5; links as in the PHP client's
SerializedLinks: ``customerLink``, ``newOrderLink``, ``lastOrderLink``, ``newCustomerLink``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ORDERS_PAGE = 20  # retailCRM accepts limit 20, 50 or 100


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
