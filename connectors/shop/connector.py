"""The shop connector: caller cards from the shop's own database (customers, last orders, admin links).

It only reads, through a session the database itself keeps read-only (see `query.read_only_engine`), and
it logs nothing about calls: ``event_types`` is empty, so the core never queues an event for it.

A lookup runs in four steps:

1. every phone field of customers and orders is searched with a coarse SQL filter (the digits of the
   stored text contain the caller's last 10 digits, or the index-friendly exact spellings when
   ``phone_match = "exact"``);
2. each candidate is checked in Python and ranked: E.164, then national number, then last 10 digits;
   a customer's own phone before a phone on an order;
3. the best customer is loaded (name, e-mail, company, details, admin link), or, when only guest orders
   match, the buyer named on the newest of them;
4. the customer's last orders (and guest orders with the same number) are loaded, newest first.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import quote
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Engine, make_url

from bridge.connector_api import (
    CallerCard,
    CallEvent,
    Capability,
    Connector,
    Manifest,
    PermanentDeliveryError,
    RefStore,
    Title,
)
from bridge.connector_api.phones import MatchKeys, match_keys
from connectors.shop import phpdata
from connectors.shop.config import (
    SETTINGS_TITLES,
    CustomerMap,
    OrderMap,
    Ref,
    ShopConfig,
    ShopMapping,
    parse_ref,
)
from connectors.shop.query import (
    LEVELS,
    EntitySql,
    decode,
    match_level,
    read_only_engine,
    refs_of,
    session_is_read_only,
)

log = logging.getLogger("callbridge.connectors.shop")

_CUSTOMER, _ORDER = 0, 1  # where a number was found (a customer's own phone ranks first)
_LOAD_AT_MOST = 10  # best candidates loaded per lookup


class ShopDatabaseError(RuntimeError):
    """The shop's database could not be read; the message names the server, never the password."""


class ShopConnector(Connector):
    """Caller cards from a shop's database (see the module docstring and docs/connectors/shop.md)."""

    manifest: ClassVar[Manifest] = Manifest(
        name="shop",
        title=Title(en="Shop database", ru="База интернет-магазина"),
        docs="docs/connectors/shop.md",
        capabilities=frozenset({Capability.LOOKUP}),
        requirements=("read-only access to the shop's MySQL, PostgreSQL or SQLite database",),
        settings=SETTINGS_TITLES,
    )
    config_model: ClassVar[type[BaseModel]] = ShopConfig
    default_event_types: ClassVar[frozenset[str] | None] = frozenset()

    def __init__(self, config: ShopConfig | dict[str, Any], *, engine: Engine | None = None) -> None:
        if not isinstance(config, ShopConfig):
            config = ShopConfig.model_validate(config)
        super().__init__(config)
        self.settings: ShopConfig = config
        self.mapping: ShopMapping = config.resolved_mapping()
        self.engine = engine or read_only_engine(config.database_url.get_secret_value(), config.timeout)
        dialect = self.engine.dialect.name
        schema = self.mapping.db_schema
        self.customers = EntitySql(self.mapping.customers, schema, dialect)
        self.orders = EntitySql(self.mapping.orders, schema, dialect) if self.mapping.orders else None

    def __repr__(self) -> str:
        return f"ShopConnector({self._where()})"

    def _where(self) -> str:
        url = make_url(self.settings.database_url.get_secret_value())
        if url.get_backend_name() == "sqlite":
            return f"sqlite file {url.database}"
        port = f":{url.port}" if url.port else ""
        return f"{url.get_backend_name()} at {url.host or 'localhost'}{port}/{url.database or ''}"

    def close(self) -> None:
        self.engine.dispose()

    # ----------------------------------------------------------------------------------- interface

    def wants(self, event: CallEvent) -> bool:
        return False

    def handle(self, event: CallEvent, refs: RefStore) -> None:
        """The shop connector logs no calls; nothing is ever queued for it (``event_types`` is empty)."""
        return None

    def check(self) -> str:
        """Connect read-only and count customers (and orders); plain words, or `PermanentDeliveryError`."""
        try:
            with self.engine.connect() as conn:
                read_only = session_is_read_only(conn)
                customers = self._count(conn, self.customers)
                orders = self._count(conn, self.orders) if self.orders else None
        except sa.exc.SQLAlchemyError as exc:
            raise PermanentDeliveryError(self._explain(exc)) from None
        where = self._where()
        if not read_only:
            raise PermanentDeliveryError(
                f"connected to the shop database ({where}) but the session is not read-only; "
                "refusing to use it"
            )
        text = f"connected to the shop database ({where}, read-only session): {customers} customers"
        if orders is not None:
            text += f", {orders} orders"
        return text

    def lookup(self, phone: str) -> CallerCard | None:
        """A caller card for an E.164 number, or None when no customer or order has it."""
        region = self.settings.default_region
        wanted = match_keys(phone, region)
        if not (wanted.e164 or wanted.last10):
            return None
        try:
            with self.engine.connect() as conn:
                return self._lookup(conn, wanted, region)
        except sa.exc.SQLAlchemyError as exc:
            raise ShopDatabaseError(self._explain(exc)) from None

    # ---------------------------------------------------------------------------------- internals

    def _explain(self, exc: sa.exc.SQLAlchemyError) -> str:
        original = getattr(exc, "orig", None) or exc
        reason = " ".join(str(original).split())[:300]
        return f"cannot read the shop database ({self._where()}): {reason}"

    @staticmethod
    def _count(conn: sa.Connection, entity: EntitySql | None) -> int:
        assert entity is not None
        stmt = sa.select(sa.func.count()).select_from(entity.base_from()).where(*entity.filters())
        return int(conn.execute(stmt).scalar() or 0)

    def _matches(
        self, conn: sa.Connection, entity: EntitySql, wanted: MatchKeys, region: str
    ) -> dict[Any, int]:
        """{id: best match level} over every phone field of `entity`."""
        found: dict[Any, int] = {}
        for text in entity.emap.phones:
            ref = parse_ref(text)
            stmt = entity.phone_candidates(
                ref, wanted, region, self.settings.phone_match, self.settings.max_candidates
            )
            if stmt is None:
                continue
            for row in conn.execute(stmt):
                level = match_level(decode(ref, row.value), wanted, region)
                if level is not None and level < found.get(row.id, 99):
                    found[row.id] = level
        return found

    def _lookup(self, conn: sa.Connection, wanted: MatchKeys, region: str) -> CallerCard | None:
        ranked: dict[Any, tuple[int, int]] = {
            cid: (level, _CUSTOMER)
            for cid, level in self._matches(conn, self.customers, wanted, region).items()
        }
        order_rows: dict[Any, dict[str, Any]] = {}
        order_levels: dict[Any, int] = {}
        if self.orders is not None and self.orders.emap.phones:
            order_levels = self._matches(conn, self.orders, wanted, region)
            order_rows = self._load_orders(conn, ids=list(order_levels)) if order_levels else {}
            for oid, row in order_rows.items():
                cid = row["customer"]
                if _is_customer(cid):
                    rank = (order_levels[oid], _ORDER)
                    key = _same_id(cid, ranked)
                    if key not in ranked or rank < ranked[key]:
                        ranked[key] = rank
        best = sorted(ranked.items(), key=lambda item: (item[1], _newest_first(item[0])))
        customers = self._load_customers(conn, [cid for cid, _ in best[:_LOAD_AT_MOST]])
        guest_orders = [row for row in order_rows.values() if not _is_customer(row["customer"])]
        for cid, (level, where) in best:
            if cid not in customers:
                continue  # filtered out by the mapping's `where` (or deleted meanwhile)
            customer = customers[cid]
            orders = self._customer_orders(conn, cid, guest_orders)
            return self._card(customer, orders, level, where, others=len(customers) - 1)
        if guest_orders:
            guest_orders.sort(key=lambda r: (r["_sort"], _newest_first(r["id"])), reverse=True)
            level = min(order_levels[r["id"]] for r in guest_orders)
            return self._guest_card(guest_orders, level)
        return None

    def _load_customers(self, conn: sa.Connection, ids: list[Any]) -> dict[Any, dict[str, Any]]:
        if not ids:
            return {}
        cmap: CustomerMap = self.mapping.customers  # type: ignore[assignment]
        refs = refs_of([*cmap.name, *cmap.fallback_name, cmap.email, cmap.company, *cmap.details.values()])
        stmt, selected = self.customers.select_fields(refs)
        stmt = stmt.where(self.customers.id.in_(ids), *self.customers.filters())
        out: dict[Any, dict[str, Any]] = {}
        for row in conn.execute(stmt).mappings():
            if row["id"] in out:
                continue  # a meta key stored twice: the first row wins
            values = {s.ref.text: decode(s.ref, row[s.label]) for s in selected}
            name = _join([values.get(t) for t in cmap.name]) or _join(
                [values.get(t) for t in cmap.fallback_name]
            )
            details = {label: phpdata.scalar_text(values.get(text)) for label, text in cmap.details.items()}
            out[row["id"]] = {
                "id": row["id"],
                "name": name,
                "email": _text(values.get(cmap.email)) if cmap.email else None,
                "company": _text(values.get(cmap.company)) if cmap.company else None,
                "details": {k: v for k, v in details.items() if v is not None},
            }
        return out

    def _order_refs(self) -> list[Ref]:
        omap: OrderMap = self.mapping.orders  # type: ignore[assignment]
        return refs_of(
            [
                omap.customer,
                omap.number,
                omap.date,
                omap.total,
                omap.currency,
                omap.status,
                *omap.guest_name,
                omap.guest_email,
            ]
        )

    def _load_orders(
        self,
        conn: sa.Connection,
        *,
        ids: list[Any] | None = None,
        customer: Any = None,
        limit: int | None = None,
    ) -> dict[Any, dict[str, Any]]:
        assert self.orders is not None
        omap: OrderMap = self.mapping.orders  # type: ignore[assignment]
        stmt, selected = self.orders.select_fields(self._order_refs())
        labels = {s.ref.text: s.label for s in selected}
        stmt = stmt.where(*self.orders.filters())
        if ids is not None:
            stmt = stmt.where(self.orders.id.in_(ids))
        if customer is not None:
            ref = parse_ref(omap.customer)
            column = stmt.selected_columns[labels[omap.customer]]
            stmt = stmt.where(column == (str(customer) if ref.is_meta else customer))
        date_col = stmt.selected_columns[labels[omap.date]]
        stmt = stmt.order_by(date_col.desc(), self.orders.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit * 2)  # a meta key stored twice would take two rows
        out: dict[Any, dict[str, Any]] = {}
        for row in conn.execute(stmt).mappings():
            if row["id"] in out:
                continue
            values = {s.ref.text: decode(s.ref, row[s.label]) for s in selected}
            out[row["id"]] = self._order(row["id"], values, omap)
            if limit is not None and len(out) >= limit:
                break
        return out

    def _order(self, oid: Any, values: dict[str, Any], omap: OrderMap) -> dict[str, Any]:
        when = _utc(values.get(omap.date), omap.timezone)
        status = _text(values.get(omap.status)) if omap.status else None
        if status is not None:
            status = omap.status_labels.get(status, status)
        number = _text(values.get(omap.number)) if omap.number else None
        return {
            "id": oid,
            "customer": values.get(omap.customer),
            "number": number or str(oid),
            "date": when.isoformat().replace("+00:00", "Z") if when else None,
            "total": _money(values.get(omap.total)) if omap.total else None,
            "currency": (_text(values.get(omap.currency)) if omap.currency else None)
            or omap.default_currency,
            "status": status,
            "url": self._url(omap.admin_url, oid, number or str(oid)),
            "guest_name": _join([values.get(t) for t in omap.guest_name]),
            "guest_email": _text(values.get(omap.guest_email)) if omap.guest_email else None,
            "_sort": when or datetime.min.replace(tzinfo=UTC),
        }

    def _customer_orders(
        self, conn: sa.Connection, cid: Any, guest_orders: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        if self.orders is None or self.settings.max_orders == 0:
            return []
        own = self._load_orders(conn, customer=cid, limit=self.settings.max_orders)
        merged = {**{o["id"]: o for o in guest_orders}, **own}
        ordered = sorted(merged.values(), key=lambda o: (o["_sort"], _newest_first(o["id"])), reverse=True)
        return ordered[: self.settings.max_orders]

    def _url(self, template: str | None, ident: Any, number: str | None = None) -> str | None:
        base = self.settings.admin_base_url
        if not template or not base:
            return None
        return template.format(
            base=base, id=quote(str(ident), safe=""), number=quote(str(number or ""), safe="")
        )

    def _card(
        self, customer: dict[str, Any], orders: list[dict[str, Any]], level: int, where: int, others: int
    ) -> CallerCard:
        details: dict[str, Any] = {
            "email": customer["email"],
            "orders": [_public(o) for o in orders],
            "matched_on": LEVELS[level],
            "matched_in": "customer" if where == _CUSTOMER else "order",
            "customer_id": str(customer["id"]),
        }
        details |= customer["details"]
        if others > 0:
            details["other_customers"] = others
        url = self._url(self.mapping.customers.admin_url, customer["id"])
        return CallerCard(
            source=self.name,
            name=customer["name"] or customer["email"],
            company=customer["company"],
            links=(("Customer in the shop", url),) if url else (),
            details=details,
        )

    def _guest_card(self, orders: list[dict[str, Any]], level: int) -> CallerCard:
        newest = orders[0]
        shown = orders[: self.settings.max_orders]
        return CallerCard(
            source=self.name,
            name=newest["guest_name"] or newest["guest_email"],
            links=(("Order in the shop", newest["url"]),) if newest["url"] else (),
            details={
                "email": newest["guest_email"],
                "orders": [_public(o) for o in shown],
                "matched_on": LEVELS[level],
                "matched_in": "order",
                "guest": True,
            },
        )


# ------------------------------------------------------------------------------------- helpers


def _public(order: dict[str, Any]) -> dict[str, Any]:
    return {k: order[k] for k in ("number", "date", "total", "currency", "status", "url")}


def _is_customer(value: Any) -> bool:
    text = str(value).strip() if value is not None else ""
    return bool(text) and text != "0"


def _same_id(cid: Any, known: dict[Any, Any]) -> Any:
    """A customer id read from an order (often text in a meta table) in the type the customers use."""
    for key in known:
        if str(key) == str(cid).strip():
            return key
    text = str(cid).strip()
    return int(text) if text.isdigit() else text


def _newest_first(ident: Any) -> Any:
    text = str(ident)
    return -int(text) if text.isdigit() else 0


def _text(value: Any) -> str | None:
    text = phpdata.scalar_text(value) if not isinstance(value, str) else value
    if text is None:
        return None
    text = " ".join(str(text).split())
    return text or None


def _join(values: list[Any]) -> str | None:
    parts = [t for t in (_text(v) for v in values) if t]
    return " ".join(parts) or None


def _money(value: Any) -> str | None:
    """A total as a decimal string ("1250.00"): JSON-friendly without float rounding."""
    if value is None or value == "":
        return None
    try:
        amount = Decimal(str(value).strip().replace(",", "."))
    except ArithmeticError:
        return _text(value)
    if not amount.is_finite():
        return None
    return f"{amount:.2f}"


def _utc(value: Any, zone: str) -> datetime | None:
    """A stored date (datetime, date, ISO text or a Unix time) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    when: datetime | None = None
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date):
        when = datetime(value.year, value.month, value.day)
    elif isinstance(value, int | float | Decimal) or (isinstance(value, str) and value.strip().isdigit()):
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if when is None or when.year < 1971:  # MySQL's 0000-00-00 and friends
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(zone))
    return when.astimezone(UTC)
