"""A generic shop schema: ``customers`` and ``orders`` tables with plain columns, statuses in a table.

    customers(id, first_name, last_name, email, company, phone, phone2)
    orders(id, number, customer_id, created_at, total, currency, status_id, phone)
    order_statuses(id, name)

Copy it as a starting point for your own schema (docs/connectors/shop.md shows it as TOML).
"""

from __future__ import annotations

from connectors.shop.config import ShopMapping


def generic(schema: str | None = None) -> ShopMapping:
    """The generic mapping (tables ``customers``, ``orders``, ``order_statuses``)."""
    return ShopMapping.model_validate(
        {
            "schema": schema,
            "customers": {
                "table": "customers",
                "id_column": "id",
                "phones": ["phone", "phone2"],
                "name": ["first_name", "last_name"],
                "email": "email",
                "company": "company",
                "admin_url": "{base}/admin/customers/{id}",
            },
            "orders": {
                "table": "orders",
                "id_column": "id",
                "joins": [{"table": "order_statuses", "alias": "st", "on": {"status_id": "id"}}],
                "phones": ["phone"],
                "customer": "customer_id",
                "number": "number",
                "date": "created_at",
                "total": "total",
                "currency": "currency",
                "status": "st.name",
                "timezone": "UTC",
                "admin_url": "{base}/admin/orders/{id}",
            },
        }
    )
