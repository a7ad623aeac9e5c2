"""WooCommerce on WordPress (classic post storage).

Customers are WordPress users (``wp_users``) with their profile in ``wp_usermeta``: ``first_name``,
``last_name``, ``billing_phone``, ``billing_email``, and the roles as a PHP-serialized array under
``wp_capabilities`` (``a:1:{s:8:"customer";b:1;}``). Orders are posts (``wp_posts``, ``post_type =
shop_order``, ``post_status`` ``wc-completed`` ...) with their fields in ``wp_postmeta``:
``_customer_user`` (0 for guests), ``_billing_phone``, ``_order_total``, ``_order_currency``, and
``_billing_address``, a PHP-serialized array some shops and plugins keep (its ``phone`` is searched too).

`woocommerce_hpos` is for shops on High-Performance Order Storage (the default for new shops since
WooCommerce 8.2): orders in ``wp_wc_orders``, the buyer's phone and name in ``wp_wc_order_addresses``
(one row per order and ``address_type``), customers as above.
"""

from __future__ import annotations

from typing import Any

from connectors.shop.config import ShopMapping

STATUS_LABELS = {
    "wc-pending": "pending payment",
    "wc-processing": "processing",
    "wc-on-hold": "on hold",
    "wc-completed": "completed",
    "wc-cancelled": "cancelled",
    "wc-refunded": "refunded",
    "wc-failed": "failed",
    "wc-checkout-draft": "draft",
}


def _customers(prefix: str) -> dict[str, Any]:
    return {
        "table": f"{prefix}users",
        "id_column": "ID",
        "meta": {"table": f"{prefix}usermeta", "owner_column": "user_id"},
        "phones": ["meta:billing_phone", "meta:shipping_phone"],
        "name": ["meta:first_name", "meta:last_name"],
        "fallback_name": ["meta:billing_first_name", "meta:billing_last_name", "display_name"],
        "email": "user_email",
        "company": "meta:billing_company",
        "details": {"roles": f"meta:{prefix}capabilities|php:*"},
        "admin_url": "{base}/wp-admin/user-edit.php?user_id={id}",
    }


def woocommerce(prefix: str = "wp_", schema: str | None = None) -> ShopMapping:
    """The WooCommerce mapping (orders as posts) for tables named with `prefix` (``wp_`` by default)."""
    return ShopMapping.model_validate(
        {
            "schema": schema,
            "customers": _customers(prefix),
            "orders": {
                "table": f"{prefix}posts",
                "id_column": "ID",
                "where": {"post_type": "shop_order"},
                "meta": {"table": f"{prefix}postmeta", "owner_column": "post_id"},
                "phones": ["meta:_billing_phone", "meta:_billing_address|php:phone"],
                "customer": "meta:_customer_user",
                "date": "post_date_gmt",
                "total": "meta:_order_total",
                "currency": "meta:_order_currency",
                "status": "post_status",
                "status_labels": STATUS_LABELS,
                "timezone": "UTC",
                "guest_name": ["meta:_billing_first_name", "meta:_billing_last_name"],
                "guest_email": "meta:_billing_email",
                "admin_url": "{base}/wp-admin/post.php?post={id}&action=edit",
            },
        }
    )


def woocommerce_hpos(prefix: str = "wp_", schema: str | None = None) -> ShopMapping:
    """WooCommerce with High-Performance Order Storage (``wp_wc_orders`` and its address table)."""
    return ShopMapping.model_validate(
        {
            "schema": schema,
            "customers": _customers(prefix),
            "orders": {
                "table": f"{prefix}wc_orders",
                "id_column": "id",
                "where": {"type": "shop_order"},
                "joins": [
                    {
                        "table": f"{prefix}wc_order_addresses",
                        "alias": "billing",
                        "on": {"id": "order_id"},
                        "where": {"address_type": "billing"},
                    },
                    {
                        "table": f"{prefix}wc_order_addresses",
                        "alias": "shipping",
                        "on": {"id": "order_id"},
                        "where": {"address_type": "shipping"},
                    },
                ],
                "meta": {"table": f"{prefix}wc_orders_meta", "owner_column": "order_id"},
                "phones": ["billing.phone", "shipping.phone"],
                "customer": "customer_id",
                "date": "date_created_gmt",
                "total": "total_amount",
                "currency": "currency",
                "status": "status",
                "status_labels": STATUS_LABELS,
                "timezone": "UTC",
                "guest_name": ["billing.first_name", "billing.last_name"],
                "guest_email": "billing_email",
                "admin_url": "{base}/wp-admin/admin.php?page=wc-orders&action=edit&id={id}",
            },
        }
    )
