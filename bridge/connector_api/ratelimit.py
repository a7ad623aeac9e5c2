"""The token bucket, re-exported for connectors (which import only `bridge.connector_api`)."""

from bridge.ratelimit import TokenBucket

__all__ = ["TokenBucket"]
