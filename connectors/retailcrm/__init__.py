"""retailCRM: popups, call log, missed-call tasks, caller cards, click-to-call.

See docs/connectors/retailcrm.md.
"""

from connectors.retailcrm.client import (
    RetailCrmAuthError,
    RetailCrmClient,
    RetailCrmError,
    RetailCrmPermanentError,
    RetailCrmRateLimited,
    RetailCrmRetryableError,
)
from connectors.retailcrm.config import RetailCrmConfig
from connectors.retailcrm.connector import RetailCrmConnector

__all__ = [
    "RetailCrmAuthError",
    "RetailCrmClient",
    "RetailCrmConfig",
    "RetailCrmConnector",
    "RetailCrmError",
    "RetailCrmPermanentError",
    "RetailCrmRateLimited",
    "RetailCrmRetryableError",
]
