"""The shop connector: caller cards from a shop's database. See docs/connectors/shop.md."""

from connectors.shop.config import ShopConfig, ShopMapping, parse_ref
from connectors.shop.connector import ShopConnector, ShopDatabaseError
from connectors.shop.mappings import generic, ready_mapping, woocommerce

__all__ = [
    "ShopConfig",
    "ShopConnector",
    "ShopDatabaseError",
    "ShopMapping",
    "generic",
    "parse_ref",
    "ready_mapping",
    "woocommerce",
]
