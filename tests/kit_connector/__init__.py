"""A tiny CRM connector written only against `bridge.connector_api`, with its fake, to prove the kit.

It is registered by `bridge.registry.installed()` in tests, never by an entry point.
"""

from tests.kit_connector.connector import NotebookConfig, NotebookConnector
from tests.kit_connector.fake import FakeNotebook

__all__ = ["FakeNotebook", "NotebookConfig", "NotebookConnector"]
