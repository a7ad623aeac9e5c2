"""The merged caller card: what every connector said about a number, as one JSON-ready document."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bridge.connector_api import CallerCard

_MAX_ITEMS = 20  # deals / orders / links kept per card
_MAX_TEXT = 300


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text[:_MAX_TEXT] or None


def _safe_url(value: Any) -> str | None:
    """Only http(s) links reach a page (no javascript: or data: URLs from a CRM)."""
    text = str(value or "").strip()
    return text[:2000] if text.lower().startswith(("http://", "https://")) else None


def _items(raw: Any, source: str) -> list[dict[str, Any]]:
    """A list of small dicts (deals, orders) from a connector's details, each tagged with its source."""
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes):
        return []
    out = []
    for item in list(raw)[:_MAX_ITEMS]:
        if not isinstance(item, Mapping):
            continue
        clean: dict[str, Any] = {}
        for key, value in item.items():
            key = str(key)[:40]
            if key == "url":
                url = _safe_url(value)
                if url:
                    clean["url"] = url
            elif isinstance(value, bool | int | float) or value is None:
                clean[key] = value
            else:
                clean[key] = _text(value)
        clean["source"] = source
        out.append(clean)
    return out


@dataclass(frozen=True)
class Card:
    """A caller card merged from every connector that answered (see `merge`)."""

    number: str
    found: bool = False
    complete: bool = True
    name: str | None = None
    company: str | None = None
    links: tuple[dict[str, str], ...] = ()
    responsible: dict[str, Any] | None = None
    deals: tuple[dict[str, Any], ...] = ()
    orders: tuple[dict[str, Any], ...] = ()
    sources: tuple[str, ...] = ()  # connectors that knew the number
    pending: tuple[str, ...] = ()  # connectors still asked when the card was made
    failed: tuple[str, ...] = ()  # connectors that failed or timed out
    extra: dict[str, Any] = field(default_factory=dict)

    def with_state(self, *, complete: bool, pending: Iterable[str] = ()) -> Card:
        return replace(self, complete=complete, pending=tuple(pending))

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "found": self.found,
            "complete": self.complete,
            "name": self.name,
            "company": self.company,
            "links": [dict(link) for link in self.links],
            "responsible": dict(self.responsible) if self.responsible else None,
            "deals": [dict(d) for d in self.deals],
            "orders": [dict(o) for o in self.orders],
            "sources": list(self.sources),
            "pending": list(self.pending),
            "failed": list(self.failed),
            "details": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Card:
        return cls(
            number=str(data.get("number") or ""),
            found=bool(data.get("found")),
            complete=bool(data.get("complete", True)),
            name=data.get("name"),
            company=data.get("company"),
            links=tuple(dict(x) for x in data.get("links") or ()),
            responsible=dict(data["responsible"]) if data.get("responsible") else None,
            deals=tuple(dict(x) for x in data.get("deals") or ()),
            orders=tuple(dict(x) for x in data.get("orders") or ()),
            sources=tuple(data.get("sources") or ()),
            pending=tuple(data.get("pending") or ()),
            failed=tuple(data.get("failed") or ()),
            extra=dict(data.get("details") or {}),
        )


def merge(
    number: str,
    answers: Mapping[str, CallerCard | None],
    *,
    order: Sequence[str],
    pending: Iterable[str] = (),
    failed: Iterable[str] = (),
) -> Card:
    """Fold the connectors' answers into one card.

    `order` is the connectors' priority (the order of the `[connectors.*]` sections): the first that
    knows a name, a company or a responsible manager wins; links, open deals and the shop's last orders
    from every source are kept, each tagged with its source. A connector's `details` may hold ``deals``
    and ``orders`` (lists of small dicts: title/number, amount/total, status, date, url); its other
    details are kept under ``details[<connector>]``.
    """
    pending = tuple(pending)
    name = company = None
    responsible: dict[str, Any] | None = None
    links: list[dict[str, str]] = []
    deals: list[dict[str, Any]] = []
    orders: list[dict[str, Any]] = []
    sources: list[str] = []
    extra: dict[str, Any] = {}
    seen_urls: set[str] = set()
    for source in order:
        card = answers.get(source)
        if card is None:
            continue
        sources.append(source)
        name = name or _text(card.name)
        company = company or _text(card.company)
        if responsible is None and card.responsible is not None:
            who = card.responsible
            if who.name or who.extension:
                responsible = {"name": _text(who.name), "extension": who.extension, "source": source}
        for title, url in card.links[:_MAX_ITEMS]:
            safe = _safe_url(url)
            if safe and safe not in seen_urls:
                seen_urls.add(safe)
                links.append({"title": _text(title) or source, "url": safe, "source": source})
        details = dict(card.details or {})
        deals.extend(_items(details.pop("deals", None), source))
        orders.extend(_items(details.pop("orders", None), source))
        kept = {
            str(k)[:40]: v for k, v in details.items() if isinstance(v, str | int | float | bool) or v is None
        }
        if kept:
            extra[source] = kept
    return Card(
        number=number,
        found=bool(sources),
        complete=not pending,
        name=name,
        company=company,
        links=tuple(links),
        responsible=responsible,
        deals=tuple(deals[:_MAX_ITEMS]),
        orders=tuple(orders[:_MAX_ITEMS]),
        sources=tuple(sources),
        pending=pending,
        failed=tuple(failed),
        extra=extra,
    )
