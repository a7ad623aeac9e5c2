"""The connector API: everything a connector may import from the core.

A connector sees CallEvents, caller cards, phone helpers, its reference store and the shared HTTP layer,
never the store's tables, the tracker or the web app. What a connector is and can do is its `Manifest`;
its optional parts are the protocols in `protocols.py`; `testing.py` is the kit for its tests.
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
from bridge.connector_api.manifest import Capability, Manifest, Title
from bridge.connector_api.protocols import (
    Closeable,
    CommandLine,
    CrmSetup,
    EmployeeImporter,
    ImportResult,
    PbxUsers,
    TurnedOff,
)

__all__ = [
    "CALL_EVENT_TYPES",
    "CallEvent",
    "CallerCard",
    "Capability",
    "Closeable",
    "CommandLine",
    "Connector",
    "ConnectorContext",
    "CrmSetup",
    "DeliveryError",
    "Employee",
    "EmployeeImporter",
    "ImportResult",
    "Manifest",
    "PbxUsers",
    "PermanentDeliveryError",
    "RateLimit",
    "Originate",
    "RefStore",
    "RetryableDeliveryError",
    "StateStore",
    "Title",
    "TurnedOff",
    "idempotency_key",
]
