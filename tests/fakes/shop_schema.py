"""Shop databases for the shop connector's tests: a WooCommerce-like schema and the generic one.

`create_woocommerce` and `create_generic` create the tables on any SQLAlchemy engine (MariaDB,
PostgreSQL, SQLite) and fill them with the people below, whose numbers are stored the way real shops
store them: free text, two numbers in one field, a number inside a PHP-serialized array, a number that
only looks similar, a hostile name.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Column, Integer, MetaData, Numeric, String, Table, Text

XSS = "<script>alert(1)</script>"

# E.164 numbers the tests look up, and what the shop stores for them.
IVAN = "+79161234567"  # "8 (916) 123-45-67"
XSS_PHONE = "+79167654321"  # "+7 916 765-43-21"
MARIA_OFFICE = "+74951112233"  # "+7(495)111-22-33 доб. 12, моб. 8-903-555-66-77"
MARIA_MOBILE = "+79035556677"
BROKEN_CAPS = "+79035554433"  # "79035554433", roles stored truncated
GUEST = "+79260001122"  # only in an order's serialized _billing_address
LOOKALIKE_ONLY = "+79161234568"  # stored nowhere; "ИНН 7916123456789" must not match IVAN either
UNKNOWN = "+79990000000"


def php_str(text: str) -> str:
    """PHP's s:<byte length>:"...";"""
    return f's:{len(text.encode("utf-8"))}:"{text}";'


def php_array(items: dict[str, object]) -> str:
    parts = []
    for key, value in items.items():
        parts.append(php_str(key))
        if isinstance(value, bool):
            parts.append(f"b:{int(value)};")
        elif isinstance(value, int):
            parts.append(f"i:{value};")
        else:
            parts.append(php_str(str(value)))
    return f"a:{len(items)}:{{{''.join(parts)}}}"


CUSTOMER_CAPS = php_array({"customer": True})


# ------------------------------------------------------------------------------------- WooCommerce


def woocommerce_tables(prefix: str = "wp_", schema: str | None = None) -> MetaData:
    md = MetaData(schema=schema)
    Table(
        f"{prefix}users",
        md,
        Column("ID", Integer, primary_key=True, autoincrement=False),
        Column("user_login", String(60), nullable=False),
        Column("user_email", String(100), nullable=False),
        Column("display_name", String(250), nullable=False),
        Column("user_registered", sa.DateTime, nullable=False),
    )
    Table(
        f"{prefix}usermeta",
        md,
        Column("umeta_id", Integer, primary_key=True),
        Column("user_id", Integer, nullable=False, index=True),
        Column("meta_key", String(191), index=True),
        Column("meta_value", Text),
    )
    Table(
        f"{prefix}posts",
        md,
        Column("ID", Integer, primary_key=True, autoincrement=False),
        Column("post_type", String(20), nullable=False, index=True),
        Column("post_status", String(20), nullable=False),
        Column("post_date", sa.DateTime, nullable=False),
        Column("post_date_gmt", sa.DateTime, nullable=False),
        Column("post_title", Text, nullable=False),
    )
    Table(
        f"{prefix}postmeta",
        md,
        Column("meta_id", Integer, primary_key=True),
        Column("post_id", Integer, nullable=False, index=True),
        Column("meta_key", String(191), index=True),
        Column("meta_value", Text),
    )
    return md


def create_woocommerce(engine: sa.Engine, prefix: str = "wp_", schema: str | None = None) -> None:
    md = woocommerce_tables(prefix, schema)
    md.create_all(engine)
    users, usermeta = md.tables[_q(schema, f"{prefix}users")], md.tables[_q(schema, f"{prefix}usermeta")]
    posts, postmeta = md.tables[_q(schema, f"{prefix}posts")], md.tables[_q(schema, f"{prefix}postmeta")]
    caps = f"{prefix}capabilities"
    people = [
        # id, login, email, display, meta
        (1, "admin", "admin@shop.test", "admin", {caps: php_array({"administrator": True})}),
        (
            2,
            "ivan",
            "ivan@example.com",
            "ivan",
            {
                "first_name": "Иван",
                "last_name": "Петров",
                "billing_phone": "8 (916) 123-45-67",
                caps: CUSTOMER_CAPS,
            },
        ),
        (
            3,
            "x",
            "x@example.com",
            "x",
            # WordPress double-serializes a string that already looks serialized.
            {"first_name": XSS, "billing_phone": "+7 916 765-43-21", caps: php_str(CUSTOMER_CAPS)},
        ),
        (
            4,
            "maria",
            "maria@example.com",
            "Мария",
            {
                "first_name": "Мария",
                "last_name": "Сидорова",
                "billing_company": "ООО «Ромашка»",
                "billing_phone": "+7(495)111-22-33 доб. 12, моб. 8-903-555-66-77",
                caps: php_array({"customer": True, "subscriber": False}),
            },
        ),
        (
            5,
            "broken",
            "broken@example.com",
            "Broken Caps",
            {"billing_phone": "79035554433", caps: 'a:1:{s:8:"customer";b:1;'},
        ),
        (6, "lookalike", "inn@example.com", "Lookalike", {"billing_phone": "ИНН 7916123456789"}),
    ]
    orders = [
        # id, status, gmt date, customer, meta
        (101, "wc-completed", datetime(2024, 3, 1, 9, 30), 2, {"_order_total": "1250.00"}),
        (102, "wc-processing", datetime(2024, 5, 20, 14, 0), 2, {"_order_total": "399.90"}),
        (103, "wc-cancelled", datetime(2023, 12, 31, 23, 59), 2, {"_order_total": "10"}),
        (104, "wc-completed", datetime(2024, 1, 2, 8, 0), 4, {"_order_total": "5000"}),
        (
            105,
            "wc-on-hold",
            datetime(2024, 6, 1, 12, 0),
            0,
            {
                "_billing_first_name": "Ольга",
                "_billing_last_name": "Гостева",
                "_billing_email": "olga@example.com",
                "_order_total": "777.70",
                "_billing_address": php_array(
                    {"first_name": "Ольга", "city": "Москва", "phone": "8 (926) 000-11-22"}
                ),
            },
        ),
        # An old guest order by Ivan (same phone), before he registered.
        (106, "wc-completed", datetime(2022, 7, 7, 7, 7), 0, {"_billing_phone": "+7 (916) 123 45 67"}),
    ]
    with engine.begin() as conn:
        conn.execute(
            users.insert(),
            [
                {
                    "ID": uid,
                    "user_login": login,
                    "user_email": email,
                    "display_name": display,
                    "user_registered": datetime(2023, 1, uid),
                }
                for uid, login, email, display, _ in people
            ],
        )
        conn.execute(
            usermeta.insert(),
            [
                {"user_id": uid, "meta_key": key, "meta_value": value}
                for uid, *_rest, meta in people
                for key, value in meta.items()
            ],
        )
        post_rows = [
            {
                "ID": oid,
                "post_type": "shop_order",
                "post_status": status,
                "post_date": when,
                "post_date_gmt": when,
                "post_title": f"Order #{oid}",
            }
            for oid, status, when, _c, _m in orders
        ]
        # A page that happens to carry order-like meta must never show up as an order.
        post_rows.append(
            {
                "ID": 900,
                "post_type": "page",
                "post_status": "publish",
                "post_date": datetime(2024, 7, 1),
                "post_date_gmt": datetime(2024, 7, 1),
                "post_title": "Contacts",
            }
        )
        conn.execute(posts.insert(), post_rows)
        meta_rows = []
        for oid, _s, _w, customer, meta in orders:
            meta_rows.append({"post_id": oid, "meta_key": "_customer_user", "meta_value": str(customer)})
            meta_rows.append({"post_id": oid, "meta_key": "_order_currency", "meta_value": "RUB"})
            meta_rows += [{"post_id": oid, "meta_key": k, "meta_value": v} for k, v in meta.items()]
        meta_rows += [
            {"post_id": 900, "meta_key": "_billing_phone", "meta_value": "8 916 123 45 67"},
            {"post_id": 900, "meta_key": "_customer_user", "meta_value": "2"},
        ]
        conn.execute(postmeta.insert(), meta_rows)


# -------------------------------------------------------------------------------- WooCommerce HPOS


def create_woocommerce_hpos(engine: sa.Engine, prefix: str = "wp_", schema: str | None = None) -> None:
    """HPOS order tables next to the WordPress ones `create_woocommerce` made (same customers)."""
    md = MetaData(schema=schema)
    orders = Table(
        f"{prefix}wc_orders",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("status", String(20)),
        Column("currency", String(10)),
        Column("type", String(20)),
        Column("total_amount", Numeric(26, 8)),
        Column("customer_id", Integer, index=True),
        Column("billing_email", String(320)),
        Column("date_created_gmt", sa.DateTime),
    )
    addresses = Table(
        f"{prefix}wc_order_addresses",
        md,
        Column("id", Integer, primary_key=True),
        Column("order_id", Integer, nullable=False, index=True),
        Column("address_type", String(20)),
        Column("first_name", Text),
        Column("last_name", Text),
        Column("email", String(320)),
        Column("phone", String(100), index=True),
    )
    Table(
        f"{prefix}wc_orders_meta",
        md,
        Column("id", Integer, primary_key=True),
        Column("order_id", Integer, index=True),
        Column("meta_key", String(191)),
        Column("meta_value", Text),
    )
    md.create_all(engine)
    rows = [
        (201, "wc-completed", "1250.00000000", 2, "ivan@example.com", datetime(2024, 3, 1, 9, 30)),
        (202, "wc-processing", "399.90000000", 2, "ivan@example.com", datetime(2024, 5, 20, 14, 0)),
        (203, "wc-on-hold", "777.70000000", 0, "olga@example.com", datetime(2024, 6, 1, 12, 0)),
    ]
    with engine.begin() as conn:
        conn.execute(
            orders.insert(),
            [
                {
                    "id": oid,
                    "status": status,
                    "currency": "RUB",
                    "type": "shop_order",
                    "total_amount": total,
                    "customer_id": customer,
                    "billing_email": email,
                    "date_created_gmt": when,
                }
                for oid, status, total, customer, email, when in rows
            ],
        )
        blank = {"first_name": None, "last_name": None, "email": None, "phone": None}
        conn.execute(
            addresses.insert(),
            [
                blank | row
                for row in [
                    {
                        "order_id": 201,
                        "address_type": "billing",
                        "first_name": "Иван",
                        "phone": "8 (916) 123-45-67",
                    },
                    {
                        "order_id": 202,
                        "address_type": "billing",
                        "first_name": "Иван",
                        "phone": "89161234567",
                    },
                    {
                        "order_id": 203,
                        "address_type": "billing",
                        "first_name": "Ольга",
                        "last_name": "Гостева",
                        "email": "olga@example.com",
                        "phone": "+7 926 000 11 22",
                    },
                    # The shipping address has someone else's number: it must not make a billing match.
                    {
                        "order_id": 203,
                        "address_type": "shipping",
                        "first_name": "Курьер",
                        "phone": "+7 999 000 00 00",
                    },
                ]
            ],
        )


# ----------------------------------------------------------------------------------------- generic


def generic_tables(schema: str | None = None) -> MetaData:
    md = MetaData(schema=schema)
    Table(
        "customers",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("first_name", String(100)),
        Column("last_name", String(100)),
        Column("email", String(200)),
        Column("company", String(200)),
        Column("phone", String(100)),
        Column("phone2", String(100)),
    )
    Table(
        "order_statuses",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("name", String(50)),
    )
    Table(
        "orders",
        md,
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("number", String(30)),
        Column("customer_id", Integer, nullable=True),
        Column("created_at", sa.DateTime),
        Column("total", Numeric(12, 2)),
        Column("currency", String(3)),
        Column("status_id", Integer),
        Column("phone", String(100)),
    )
    return md


def create_generic(engine: sa.Engine, schema: str | None = None) -> None:
    md = generic_tables(schema)
    md.create_all(engine)
    customers = md.tables[_q(schema, "customers")]
    statuses = md.tables[_q(schema, "order_statuses")]
    orders = md.tables[_q(schema, "orders")]
    with engine.begin() as conn:
        conn.execute(
            customers.insert(),
            [
                {
                    "id": 1,
                    "first_name": "Иван",
                    "last_name": "Петров",
                    "email": "ivan@example.com",
                    "company": None,
                    "phone": "8 (916) 123-45-67",
                    "phone2": None,
                },
                {
                    "id": 2,
                    "first_name": XSS,
                    "last_name": None,
                    "email": "x@example.com",
                    "company": None,
                    "phone": "+7 916 765-43-21",
                    "phone2": None,
                },
                {
                    "id": 3,
                    "first_name": "Мария",
                    "last_name": "Сидорова",
                    "email": "maria@example.com",
                    "company": "ООО «Ромашка»",
                    "phone": None,
                    "phone2": "+7(495)111-22-33 доб. 12, моб. 8-903-555-66-77",
                },
                {
                    "id": 4,
                    "first_name": "Lookalike",
                    "last_name": None,
                    "email": None,
                    "company": None,
                    "phone": "ИНН 7916123456789",
                    "phone2": None,
                },
            ],
        )
        conn.execute(
            statuses.insert(),
            [{"id": 1, "name": "new"}, {"id": 2, "name": "paid"}, {"id": 3, "name": "shipped"}],
        )
        conn.execute(
            orders.insert(),
            [
                _generic_order(1, "A-1001", 1, datetime(2024, 3, 1, 9, 30), "1250.00", 3),
                _generic_order(2, "A-1002", 1, datetime(2024, 5, 20, 14, 0), "399.90", 2),
                _generic_order(3, "A-1003", 3, datetime(2024, 1, 2, 8, 0), "5000.00", 1),
                _generic_order(
                    4, "A-1004", None, datetime(2024, 6, 1, 12, 0), "777.70", 1, "8-926-000-11-22"
                ),
            ],
        )


def _generic_order(
    oid: int,
    number: str,
    customer: int | None,
    when: datetime,
    total: str,
    status: int,
    phone: str | None = None,
) -> dict[str, object]:
    return {
        "id": oid,
        "number": number,
        "customer_id": customer,
        "created_at": when,
        "total": total,
        "currency": "RUB",
        "status_id": status,
        "phone": phone,
    }


def _q(schema: str | None, name: str) -> str:
    return f"{schema}.{name}" if schema else name
