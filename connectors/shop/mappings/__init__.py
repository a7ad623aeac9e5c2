"""Ready mappings: WooCommerce (orders as posts, or HPOS tables) and a generic customers/orders schema."""

from __future__ import annotations

from connectors.shop.config import ShopMapping
from connectors.shop.mappings.generic import generic
from connectors.shop.mappings.woocommerce import woocommerce, woocommerce_hpos

READY = {"woocommerce": woocommerce, "woocommerce_hpos": woocommerce_hpos, "generic": generic}


def ready_mapping(name: str, *, prefix: str = "wp_", schema: str | None = None) -> ShopMapping:
    """Build a ready mapping by name (the WooCommerce ones use `prefix`; both accept a `schema`)."""
    if name == "woocommerce":
        return woocommerce(prefix=prefix, schema=schema)
    if name == "woocommerce_hpos":
        return woocommerce_hpos(prefix=prefix, schema=schema)
    if name == "generic":
        return generic(schema=schema)
    raise ValueError(f"no ready mapping {name!r}; known: {', '.join(READY)}")


__all__ = ["READY", "generic", "ready_mapping", "woocommerce", "woocommerce_hpos"]
