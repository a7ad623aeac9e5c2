"""The shop connector against real databases: SQLite always, MariaDB and PostgreSQL on this machine.

Each test run creates its own uniquely named database (and, on PostgreSQL, a schema in it), fills it
with tests/fakes/shop_schema.py and drops it afterwards. MariaDB/PostgreSQL tests are skipped, with
the reason, only when the server does not answer; set CALLBRIDGE_TEST_SHOP_MYSQL_URL /
CALLBRIDGE_TEST_SHOP_PG_URL to point them elsewhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bridge.connector_api import CallEvent, PermanentDeliveryError
from bridge.lookup.card import merge
from connectors.shop import ShopConnector, ShopDatabaseError
from tests.fakes import shop_schema as shop

MYSQL_ADMIN = os.environ.get("CALLBRIDGE_TEST_SHOP_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
PG_ADMIN = os.environ.get("CALLBRIDGE_TEST_SHOP_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BASE = "https://shop.example.com"


def _reachable(url: str) -> str | None:
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # any failure means "not here": say which and why
        return f"{make_url(url).render_as_string(hide_password=True)} is not reachable: {exc}"[:300]
    return None


@dataclass
class ShopDb:
    backend: str
    url: str  # the URL the connector is given
    schema: str | None
    writer: sa.Engine  # a normal (read-write) engine for seeding and for checking nothing changed


@pytest.fixture(scope="module", params=["sqlite", "mariadb", "postgresql"])
def backend_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopDb]:
    """A fresh, empty database per backend, dropped after the module's tests."""
    backend = request.param
    name = f"cb_shop_{uuid.uuid4().hex[:12]}"
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("shop") / "shop.db"
        url = f"sqlite:///{path}"
        writer = sa.create_engine(url)
        yield ShopDb(backend, url, None, writer)
        writer.dispose()
        return
    admin_url = MYSQL_ADMIN if backend == "mariadb" else PG_ADMIN
    reason = _reachable(admin_url)
    if reason:
        if os.environ.get("CI"):  # CI starts MariaDB and PostgreSQL: a missing one is a failure there
            pytest.fail(reason)
        pytest.skip(reason)
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if backend == "mariadb":
            conn.execute(
                sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            )
        else:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    schema = "shop" if backend == "postgresql" else None
    writer = sa.create_engine(url)
    if schema:
        with writer.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield ShopDb(backend, url, schema, writer)
    finally:
        writer.dispose()
        with admin.connect() as conn:
            if backend == "mariadb":
                conn.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
            else:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="module")
def seeded(backend_db: ShopDb) -> ShopDb:
    shop.create_woocommerce(backend_db.writer, schema=backend_db.schema)
    shop.create_woocommerce_hpos(backend_db.writer, schema=backend_db.schema)
    shop.create_generic(backend_db.writer, schema=backend_db.schema)
    return backend_db


def _connector(db: ShopDb, mapping: str, **extra: Any) -> ShopConnector:
    settings: dict[str, Any] = {"database_url": db.url, "mapping": mapping, "admin_base_url": BASE, **extra}
    if db.schema:
        settings["schema"] = db.schema
    return ShopConnector(settings)


@pytest.fixture(scope="module", params=["woocommerce", "generic"])
def conn_(request: pytest.FixtureRequest, seeded: ShopDb) -> Iterator[tuple[str, ShopConnector]]:
    connector = _connector(seeded, request.param)
    yield request.param, connector
    connector.close()


# ------------------------------------------------------------------------------- both mappings


def test_free_text_number_finds_the_customer_with_name_email_and_link(conn_: Any) -> None:
    mapping, connector = conn_
    card = connector.lookup(shop.IVAN)
    assert card is not None
    assert card.source == "shop"
    assert card.name == "Иван Петров"
    assert card.details["email"] == "ivan@example.com"
    assert card.details["matched_on"] == "E.164"
    title, url = card.links[0]
    if mapping == "woocommerce":
        assert url == f"{BASE}/wp-admin/user-edit.php?user_id=2"
    else:
        assert url == f"{BASE}/admin/customers/1"


def test_last_orders_newest_first_with_number_date_total_status_and_link(conn_: Any) -> None:
    mapping, connector = conn_
    orders = connector.lookup(shop.IVAN).details["orders"]  # type: ignore[union-attr]
    if mapping == "woocommerce":
        # 102, 101, 103 are Ivan's; 106 is his earlier guest order with the same phone; 900 is a page.
        assert [o["number"] for o in orders] == ["102", "101", "103", "106"]
        assert orders[0] == {
            "number": "102",
            "date": "2024-05-20T14:00:00Z",
            "total": "399.90",
            "currency": "RUB",
            "status": "processing",
            "url": f"{BASE}/wp-admin/post.php?post=102&action=edit",
        }
        assert orders[2]["status"] == "cancelled" and orders[2]["total"] == "10.00"
    else:
        assert [o["number"] for o in orders] == ["A-1002", "A-1001"]
        assert orders[0] == {
            "number": "A-1002",
            "date": "2024-05-20T14:00:00Z",
            "total": "399.90",
            "currency": "RUB",
            "status": "paid",
            "url": f"{BASE}/admin/orders/2",
        }
        assert orders[1]["status"] == "shipped"


def test_max_orders_limits_the_list(seeded: ShopDb) -> None:
    connector = _connector(seeded, "woocommerce", max_orders=2)
    try:
        orders = connector.lookup(shop.IVAN).details["orders"]  # type: ignore[union-attr]
    finally:
        connector.close()
    assert [o["number"] for o in orders] == ["102", "101"]


def test_second_number_in_a_free_text_field_matches(conn_: Any) -> None:
    _, connector = conn_
    for number in (shop.MARIA_OFFICE, shop.MARIA_MOBILE):
        card = connector.lookup(number)
        assert card is not None, number
        assert card.name == "Мария Сидорова"
        assert card.company == "ООО «Ромашка»"


def test_hostile_name_comes_back_verbatim_for_the_page_to_escape(conn_: Any) -> None:
    _, connector = conn_
    card = connector.lookup(shop.XSS_PHONE)
    assert card is not None
    assert card.name == shop.XSS
    merged = merge(shop.XSS_PHONE, {"shop": card}, order=["shop"])
    assert merged.name == shop.XSS  # the popup escapes text; the card carries it unchanged


def test_digits_inside_a_longer_number_do_not_match(conn_: Any) -> None:
    _, connector = conn_
    assert connector.lookup(shop.LOOKALIKE_ONLY) is None
    card = connector.lookup(shop.IVAN)
    assert card is not None and card.name != "Lookalike"


def test_unknown_number_gives_no_card(conn_: Any) -> None:
    _, connector = conn_
    assert connector.lookup(shop.UNKNOWN) is None
    assert connector.lookup("not a number") is None


def test_guest_order_gives_a_card_with_the_order(conn_: Any) -> None:
    mapping, connector = conn_
    card = connector.lookup(shop.GUEST)
    assert card is not None
    assert card.details["guest"] is True
    orders = card.details["orders"]
    assert len(orders) == 1 and orders[0]["total"] == "777.70"
    if mapping == "woocommerce":
        # The number is only inside the order's PHP-serialized _billing_address.
        assert card.name == "Ольга Гостева"
        assert card.details["email"] == "olga@example.com"
        assert orders[0]["status"] == "on hold"


def test_check_reports_a_read_only_session_and_counts(conn_: Any) -> None:
    mapping, connector = conn_
    text = connector.check()
    assert "read-only session" in text
    if mapping == "woocommerce":
        assert text.endswith(": 6 customers, 6 orders")
    else:
        assert text.endswith(": 4 customers, 4 orders")


def test_the_session_refuses_writes(conn_: Any, seeded: ShopDb) -> None:
    mapping, connector = conn_
    table = "wp_users" if mapping == "woocommerce" else "customers"
    if seeded.schema:
        table = f"{seeded.schema}.{table}"
    with connector.engine.connect() as conn, pytest.raises(sa.exc.DBAPIError) as caught:
        conn.execute(sa.text(f"DELETE FROM {table}"))
        conn.commit()
    assert "read" in str(caught.value).lower()  # "READ ONLY transaction" / "readonly database"
    with seeded.writer.connect() as conn:
        assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() >= 4


def test_the_connector_queues_no_events(conn_: Any) -> None:
    _, connector = conn_
    event = CallEvent(
        type="call.ended",
        entry_id="e1",
        key="call.ended",
        occurred_at=0.0,
        direction="incoming",
        customer_number=shop.IVAN,
    )
    assert connector.event_types == frozenset()
    assert connector.wants(event) is False
    assert connector.handle(event, refs=None) is None  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- WooCommerce


def test_roles_come_from_the_php_serialized_capabilities(seeded: ShopDb) -> None:
    connector = _connector(seeded, "woocommerce")
    try:
        assert connector.lookup(shop.IVAN).details["roles"] == "customer"  # type: ignore[union-attr]
        # Double-serialized by WordPress: decoded twice.
        assert connector.lookup(shop.XSS_PHONE).details["roles"] == "customer"  # type: ignore[union-attr]
        assert connector.lookup(shop.MARIA_OFFICE).details["roles"] == "customer"  # type: ignore[union-attr]
        broken = connector.lookup(shop.BROKEN_CAPS)  # truncated serialized data: no roles, still a card
        assert broken is not None and broken.name == "Broken Caps" and "roles" not in broken.details
    finally:
        connector.close()


def test_exact_phone_match_finds_only_exact_spellings(seeded: ShopDb) -> None:
    connector = _connector(seeded, "woocommerce", phone_match="exact")
    try:
        card = connector.lookup(shop.BROKEN_CAPS)  # stored as "79035554433"
        assert card is not None and card.name == "Broken Caps"
        # "8 (916) 123-45-67" is the Russian national format phonenumbers writes: an exact spelling.
        card = connector.lookup(shop.IVAN)
        assert card is not None and card.name == "Иван Петров"
        # Free text with two numbers and an extension is not.
        assert connector.lookup(shop.MARIA_OFFICE) is None
    finally:
        connector.close()


def test_without_admin_base_url_there_are_no_links(seeded: ShopDb) -> None:
    settings: dict[str, Any] = {"database_url": seeded.url, "mapping": "woocommerce"}
    if seeded.schema:
        settings["schema"] = seeded.schema
    connector = ShopConnector(settings)
    try:
        card = connector.lookup(shop.IVAN)
        assert card is not None and card.links == ()
        assert all(o["url"] is None for o in card.details["orders"])
    finally:
        connector.close()


def test_hpos_orders_come_from_the_order_tables_and_addresses(seeded: ShopDb) -> None:
    connector = _connector(seeded, "woocommerce_hpos")
    try:
        card = connector.lookup(shop.IVAN)
        assert card is not None and card.name == "Иван Петров"
        assert card.details["orders"][0] == {
            "number": "202",
            "date": "2024-05-20T14:00:00Z",
            "total": "399.90",
            "currency": "RUB",
            "status": "processing",
            "url": f"{BASE}/wp-admin/admin.php?page=wc-orders&action=edit&id=202",
        }
        assert [o["number"] for o in card.details["orders"]] == ["202", "201"]
        guest = connector.lookup(shop.GUEST)
        assert guest is not None and guest.name == "Ольга Гостева"
        assert guest.details["email"] == "olga@example.com"
        # The courier's number is on the shipping address of the guest order: it finds that order.
        courier = connector.lookup("+79990000000")
        assert courier is not None and [o["number"] for o in courier.details["orders"]] == ["203"]
    finally:
        connector.close()


def test_a_mapping_that_does_not_fit_the_database_fails_in_plain_words(seeded: ShopDb) -> None:
    connector = _connector(seeded, "woocommerce", table_prefix="wp2_")
    try:
        with pytest.raises(ShopDatabaseError, match="cannot read the shop database"):
            connector.lookup(shop.IVAN)
        with pytest.raises(PermanentDeliveryError, match="cannot read the shop database"):
            connector.check()
    finally:
        connector.close()


def test_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path: Any) -> None:
    path = tmp_path / "nope.db"
    connector = ShopConnector({"database_url": f"sqlite:///{path}", "mapping": "generic"})
    try:
        with pytest.raises(ShopDatabaseError, match="unable to open database file"):
            connector.lookup(shop.IVAN)
    finally:
        connector.close()
    assert not path.exists()


def test_the_card_merges_into_the_popup_card(seeded: ShopDb) -> None:
    connector = _connector(seeded, "woocommerce")
    try:
        card = connector.lookup(shop.IVAN)
    finally:
        connector.close()
    merged = merge(shop.IVAN, {"shop": card}, order=["shop"]).to_dict()
    assert merged["name"] == "Иван Петров"
    assert merged["orders"][0]["number"] == "102" and merged["orders"][0]["source"] == "shop"
    assert merged["details"]["shop"]["email"] == "ivan@example.com"
    assert merged["links"][0]["url"] == f"{BASE}/wp-admin/user-edit.php?user_id=2"


def test_a_custom_mapping_reads_a_php_serialized_profile_column(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'bitrix.db'}"
    writer = sa.create_engine(url)
    profile = shop.php_array({"fio": "Анна Смирнова", "phone": "8 (916) 123-45-67"})
    with writer.begin() as conn:
        conn.execute(
            sa.text("CREATE TABLE clients (client_id INTEGER PRIMARY KEY, profile TEXT, active INT)")
        )
        conn.execute(
            sa.text("INSERT INTO clients VALUES (1, :p, 1), (2, :q, 0), (3, 'a:1:{s:5:\"phone\";', 1)"),
            {"p": profile, "q": shop.php_array({"fio": "Old", "phone": "+7 916 765 43 21"})},
        )
    writer.dispose()
    mapping = {
        "customers": {
            "table": "clients",
            "id_column": "client_id",
            "where": {"active": 1},
            "phones": ["profile|php:phone"],
            "name": ["profile|php:fio"],
            "admin_url": "{base}/bitrix/admin/clients.php?ID={id}",
        }
    }
    connector = ShopConnector({"database_url": url, "mapping": mapping, "admin_base_url": BASE})
    try:
        card = connector.lookup(shop.IVAN)
        assert card is not None
        assert card.name == "Анна Смирнова"
        assert card.links == (("Customer in the shop", f"{BASE}/bitrix/admin/clients.php?ID=1"),)
        assert card.details["orders"] == []
        assert connector.lookup(shop.XSS_PHONE) is None  # an inactive client: filtered by `where`
        assert connector.check().endswith(": 2 customers")
    finally:
        connector.close()
