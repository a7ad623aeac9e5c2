"""The connector API: everything a connector may import from the core.

A connector sees CallEvents, caller cards, phone helpers, its reference store and the shared HTTP layer,
never the store's tables, the tracker or the web app.
"""

from bridge.connector_api.base import (
    CallerCard,
    Connector,
    ConnectorContext,
    DeliveryError,
    Employee,
    Originate,
    PermanentDeliveryError,
    RateLimit,
    RefStore,
    RetryableDeliveryError,
    StateStore,
)
from bridge.connector_api.events import CALL_EVENT_TYPES, CallEvent
from bridge.connector_api.http import idempotency_key

__all__ = [
    "CALL_EVENT_TYPES",
    "CallEvent",
    "CallerCard",
    "Connector",
    "ConnectorContext",
    "DeliveryError",
    "Employee",
    "PermanentDeliveryError",
    "RateLimit",
    "Originate",
    "RefStore",
    "RetryableDeliveryError",
    "StateStore",
    "idempotency_key",
]
