"""YClients: telephony popups, one call-history row per call, caller cards with visits and the usual
staff. See docs/connectors/yclients.md."""

from connectors.yclients.client import (
    YClientsAuthError,
    YClientsClient,
    YClientsError,
    YClientsPermanentError,
    YClientsRateLimited,
    YClientsRetryableError,
)
from connectors.yclients.config import YClientsConfig
from connectors.yclients.connector import YClientsConnector

__all__ = [
    "YClientsAuthError",
    "YClientsClient",
    "YClientsConfig",
    "YClientsConnector",
    "YClientsError",
    "YClientsPermanentError",
    "YClientsRateLimited",
    "YClientsRetryableError",
]
