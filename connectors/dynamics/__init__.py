"""Microsoft Dynamics 365: phone calls, missed-call tasks, leads, caller cards, and a channel page for
popups and click-to-call. See docs/connectors/dynamics.md.
"""

from connectors.dynamics.client import (
    DataverseAuthError,
    DataverseClient,
    DataverseError,
    DataversePermanentError,
    DataverseRateLimited,
    DataverseRetryableError,
)
from connectors.dynamics.config import DynamicsConfig
from connectors.dynamics.connector import DynamicsConnector

__all__ = [
    "DataverseAuthError",
    "DataverseClient",
    "DataverseError",
    "DataversePermanentError",
    "DataverseRateLimited",
    "DataverseRetryableError",
    "DynamicsConfig",
    "DynamicsConnector",
]
