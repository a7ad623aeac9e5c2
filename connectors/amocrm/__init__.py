"""amoCRM / Kommo: popups, call log, unsorted leads, missed-call tasks. See docs/connectors/amocrm.md."""

from connectors.amocrm.client import (
    AmoApiError,
    AmoAuthError,
    AmoClient,
    AmoPermanentError,
    AmoRateLimited,
    AmoRetryableError,
)
from connectors.amocrm.config import AmoCrmConfig
from connectors.amocrm.connector import AmoCrmConnector
from connectors.amocrm.mapping import MappingSuggestion, suggest_mapping

__all__ = [
    "AmoApiError",
    "AmoAuthError",
    "AmoClient",
    "AmoCrmConfig",
    "AmoCrmConnector",
    "AmoPermanentError",
    "AmoRateLimited",
    "AmoRetryableError",
    "MappingSuggestion",
    "suggest_mapping",
]
