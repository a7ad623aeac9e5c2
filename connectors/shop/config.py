"""The ``[connectors.shop]`` settings and the declarative mapping of a shop's database.

docs/connectors/shop.md has the reference with every key. A mapping says where customers and orders
live (tables, joins, an optional key/value "meta" table as WordPress has), and which fields give the
card its name, e-mail, phones and orders. A field is written as a short reference:

* ``first_name``: a column of the entity's own table;
* ``s.name``: column ``name`` of the joined table whose alias is ``s``;
* ``meta:billing_phone``: the value stored under that key in the entity's meta table;
* any of these followed by ``|php:a/b``: the cell is PHP-serialized; decode it and follow keys ``a``
  then ``b`` (``*`` = the keys whose values are true, e.g. the roles in ``wp_capabilities``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bridge.connector_api import Title

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,63}$")
_META_KEY = re.compile(r"^[^|\x00-\x1f]{1,191}$")
_REF = re.compile(
    r"^(?:meta:(?P<meta>[^|]+)|(?:(?P<alias>[A-Za-z_][A-Za-z0-9_$]*)\.)?(?P<column>[A-Za-z_][A-Za-z0-9_$]*))"
    r"(?:\|php:(?P<php>[^|]*))?$"
)
SUPPORTED_SCHEMES = ("mysql", "mariadb", "postgresql", "sqlite")
READY_MAPPINGS = ("woocommerce", "woocommerce_hpos", "generic")


@dataclass(frozen=True)
class Ref:
    """A parsed field reference (see the module docstring)."""

    text: str
    column: str | None = None  # a column of the main table (alias None) or of a joined table
    alias: str | None = None
    meta_key: str | None = None
    php_path: tuple[str, ...] | None = None  # None = not serialized; () = decode, take the whole value

    @property
    def is_meta(self) -> bool:
        return self.meta_key is not None


def parse_ref(text: str) -> Ref:
    """Parse ``column``, ``alias.column``, ``meta:key``, each with an optional ``|php:path``."""
    m = _REF.match(text.strip())
    if not m:
        raise ValueError(
            f"{text!r} is not a field reference: write column, alias.column or meta:key, "
            "optionally followed by |php:key/key"
        )
    php = m.group("php")
    path = None if php is None else tuple(p for p in php.split("/") if p)
    meta = m.group("meta")
    if meta is not None:
        if not _META_KEY.match(meta):
            raise ValueError(f"{text!r}: the meta key should be 1 to 191 printable characters")
        return Ref(text=text, meta_key=meta, php_path=path)
    return Ref(text=text, column=m.group("column"), alias=m.group("alias"), php_path=path)


def _ref(text: str) -> str:
    parse_ref(text)
    return text.strip()


def _identifier(text: str) -> str:
    if not IDENTIFIER.match(text):
        raise ValueError(f"{text!r} is not a plain table or column name (letters, digits, _ and $)")
    return text


FieldRef = Annotated[str, AfterValidator(_ref)]
Identifier = Annotated[str, AfterValidator(_identifier)]
FilterValue = str | int | list[str | int]


class Join(BaseModel):
    """A table joined to the entity's table (LEFT JOIN), e.g. the order statuses table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Identifier
    alias: Identifier | None = Field(default=None, description="Name used in field references; the table's")
    on: dict[Identifier, Identifier] = Field(
        description="{column of the entity's table: column of the joined table}", min_length=1
    )
    where: dict[Identifier, FilterValue] = Field(
        default_factory=dict, description="{column of the joined table: value or [values]}, in the ON clause"
    )

    @property
    def name(self) -> str:
        return self.alias or self.table


class MetaTable(BaseModel):
    """A key/value table (WordPress wp_usermeta / wp_postmeta): one row per (owner, key, value)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Identifier
    owner_column: Identifier = Field(description="Column holding the entity's id (user_id, post_id)")
    key_column: Identifier = "meta_key"
    value_column: Identifier = "meta_value"


class EntityMap(BaseModel):
    """What customers and orders have in common: a table, its id, filters, joins, meta, phones."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: Identifier
    id_column: Identifier = "id"
    where: dict[Identifier, FilterValue] = Field(
        default_factory=dict, description="{column: value or [values]} every row must satisfy"
    )
    joins: list[Join] = Field(default_factory=list)
    meta: MetaTable | None = None
    phones: list[FieldRef] = Field(default_factory=list, description="Fields holding phone numbers")
    admin_url: str | None = Field(
        default=None, description="Link template: {base}, {id} (and {number} for orders)"
    )

    def refs(self) -> list[Ref]:
        """Every field reference this entity uses (checked against its joins and meta table)."""
        return [parse_ref(r) for r in self.phones]

    @model_validator(mode="after")
    def _refs_resolve(self) -> EntityMap:
        aliases = {j.name for j in self.joins}
        if len(aliases) != len(self.joins):
            raise ValueError("two joins have the same alias; give each an alias")
        for ref in self.refs():
            if ref.alias is not None and ref.alias not in aliases:
                raise ValueError(f"{ref.text!r}: no join with the alias {ref.alias!r}")
            if ref.is_meta and self.meta is None:
                raise ValueError(f"{ref.text!r}: a meta: reference needs a meta table")
        if self.admin_url is not None:
            _check_template(self.admin_url)
        return self


def _check_template(template: str) -> None:
    try:
        template.format(base="https://x", id="1", number="1")
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"admin_url {template!r}: only {{base}}, {{id}}, {{number}} may be used") from exc


class CustomerMap(EntityMap):
    """Customers: who is calling."""

    name: list[FieldRef] = Field(
        default_factory=list, description="Fields joined with spaces (first name, last name)"
    )
    fallback_name: list[FieldRef] = Field(
        default_factory=list, description="Used when `name` is empty (display name, login)"
    )
    email: FieldRef | None = None
    company: FieldRef | None = None
    details: dict[str, FieldRef] = Field(
        default_factory=dict, description="More card details: {label: field}, e.g. roles"
    )

    def refs(self) -> list[Ref]:
        texts = [*self.phones, *self.name, *self.fallback_name, *self.details.values()]
        texts += [t for t in (self.email, self.company) if t]
        return [parse_ref(t) for t in texts]


class OrderMap(EntityMap):
    """Orders: the customer's last ones on the card, and guest orders matched by their phone."""

    customer: FieldRef = Field(description="Field holding the customer's id (0 or empty for guests)")
    number: FieldRef | None = Field(default=None, description="Order number shown; the id if left out")
    date: FieldRef
    total: FieldRef | None = None
    currency: FieldRef | None = None
    default_currency: str | None = Field(default=None, max_length=8)
    status: FieldRef | None = None
    status_labels: dict[str, str] = Field(default_factory=dict, description="{stored status: shown text}")
    timezone: str = Field(default="UTC", description="Time zone of naive dates in the database")
    guest_name: list[FieldRef] = Field(default_factory=list, description="Buyer's name on a guest order")
    guest_email: FieldRef | None = None

    def refs(self) -> list[Ref]:
        texts = [*self.phones, *self.guest_name, self.customer, self.date]
        texts += [t for t in (self.number, self.total, self.currency, self.status, self.guest_email) if t]
        return [parse_ref(t) for t in texts]

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. UTC, Europe/Moscow)") from None
        return value


class ShopMapping(BaseModel):
    """The whole mapping: where customers and (optionally) orders are."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    db_schema: Identifier | None = Field(
        default=None, alias="schema", description="PostgreSQL schema (or MySQL database) of the tables"
    )
    customers: CustomerMap
    orders: OrderMap | None = None

    @model_validator(mode="after")
    def _has_phones(self) -> ShopMapping:
        if not self.customers.phones and not (self.orders and self.orders.phones):
            raise ValueError("the mapping names no phone field (customers.phones or orders.phones)")
        return self


class ShopConfig(BaseModel):
    """The shop's database, which mapping, and how the card is built."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    database_url: SecretStr = Field(
        description="mysql+pymysql://user:pass@host/db, postgresql+psycopg://..., sqlite:////path/shop.db"
    )
    mapping: Literal["woocommerce", "woocommerce_hpos", "generic"] | ShopMapping = Field(
        description='"woocommerce", "woocommerce_hpos", "generic", or a table describing your own schema'
    )
    table_prefix: Identifier = Field(default="wp_", description="WooCommerce table prefix")
    db_schema: Identifier | None = Field(
        default=None, alias="schema", description="Schema of a ready mapping's tables (PostgreSQL)"
    )
    admin_base_url: str | None = Field(
        default=None, description="The shop's address for admin links, e.g. https://shop.example.com"
    )
    max_orders: int = Field(default=5, ge=0, le=20)
    phone_match: Literal["normalized", "exact"] = "normalized"
    max_candidates: int = Field(default=50, ge=1, le=1000)
    default_region: str = Field(default="RU", min_length=2, max_length=2)
    timeout: float = Field(default=5.0, gt=0, le=60, description="Seconds for connecting and per query")

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        try:
            url = make_url(value.get_secret_value())
        except ArgumentError:
            raise ValueError(
                "should be a database URL like mysql+pymysql://user:pass@host/shop, "
                "postgresql+psycopg://user@host/shop or sqlite:////var/lib/shop.db"
            ) from None
        if url.get_backend_name() not in SUPPORTED_SCHEMES:
            raise ValueError(
                f"unsupported database {url.get_backend_name()!r}; use MariaDB/MySQL, PostgreSQL or SQLite"
            )
        if url.get_backend_name() == "sqlite" and not url.database:
            raise ValueError("a SQLite URL needs the database file's path (sqlite:////path/shop.db)")
        return value

    @field_validator("mapping", mode="before")
    @classmethod
    def _mapping_from_env(cls, value: Any) -> Any:
        # From an environment variable: a ready mapping's name, or a JSON object.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                try:
                    return json.loads(text)
                except ValueError as exc:
                    raise ValueError(f"is not valid JSON: {exc}") from None
            if text not in READY_MAPPINGS:
                raise ValueError(
                    'should be "woocommerce", "woocommerce_hpos", "generic" or a table describing '
                    f"your schema, not {text!r}"
                )
            return text
        return value

    @field_validator("admin_base_url")
    @classmethod
    def _base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        text = value.strip().rstrip("/")
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("should be the shop's http(s) address, e.g. https://shop.example.com")
        return text

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        return value.upper()

    def resolved_mapping(self) -> ShopMapping:
        """The mapping in force: a ready one built for this prefix/schema, or the custom one."""
        if isinstance(self.mapping, ShopMapping):
            return self.mapping
        from connectors.shop.mappings import ready_mapping

        return ready_mapping(self.mapping, prefix=self.table_prefix, schema=self.db_schema)


SETTINGS_TITLES: dict[str, Title] = {
    "database_url": Title("Database URL", "Адрес базы данных"),
    "mapping": Title("Mapping", "Схема сопоставления"),
    "table_prefix": Title("Table prefix", "Префикс таблиц"),
    "schema": Title("Database schema", "Схема базы данных"),
    "admin_base_url": Title("Shop address for admin links", "Адрес магазина для ссылок в админку"),
    "max_orders": Title("Orders on the card", "Заказов в карточке"),
    "phone_match": Title("Phone matching", "Сравнение телефонов"),
    "max_candidates": Title("Candidates per lookup", "Кандидатов на поиск"),
    "default_region": Title("Default region", "Регион по умолчанию"),
    "timeout": Title("Timeout, seconds", "Тайм-аут, секунд"),
}
"""Settings titles in both panel languages, by key (the manifest's `settings`)."""
