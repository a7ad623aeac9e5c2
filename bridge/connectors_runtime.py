"""Build the configured connectors and hand them the core's services (state, click-to-call)."""

from __future__ import annotations

from sqlalchemy import Engine

from bridge.commands.originate import OriginateService
from bridge.config import Settings
from bridge.connector_api import Connector, ConnectorContext
from bridge.pbx.mango.client import MangoClient
from bridge.registry import build_connectors
from bridge.store.connector_state import SqlStateStore


def mango_client(settings: Settings) -> MangoClient:
    """A Mango command client from the current settings."""
    return MangoClient(
        settings.mango.api_key,
        settings.mango.api_salt.get_secret_value(),
        settings.mango.api_url,
        verify_tls=settings.mango.verify_tls,
    )


def originate_service(settings: Settings, engine: Engine) -> OriginateService:
    return OriginateService(
        engine,
        lambda: mango_client(settings),
        region=settings.phones.default_region,
        line_number=settings.mango.line_number or None,
    )


def load_connectors(settings: Settings, engine: Engine) -> dict[str, Connector]:
    """Every enabled connector, validated and bound to its context."""
    connectors = build_connectors(settings.connectors)
    originate = originate_service(settings, engine)
    for name, connector in connectors.items():
        connector.bind(
            ConnectorContext(
                state=SqlStateStore(engine, name),
                originate=originate,
                public_url=settings.http.public_url or None,
            )
        )
    return connectors
