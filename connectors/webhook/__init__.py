"""Generic webhook: every CallEvent as a signed JSON POST. See docs/connectors/webhook.md."""

from connectors.webhook.config import WebhookConfig
from connectors.webhook.connector import WebhookConnector, build_payload, encode_body
from connectors.webhook.signing import sign, verify

__all__ = ["WebhookConfig", "WebhookConnector", "build_payload", "encode_body", "sign", "verify"]
