"""The one place that builds the PBX adapter from the settings (only Mango's exists).

The composition (the daemon, the web app, the CLI) and the core reach the PBX through
`pbx_client`, typed by the port (`bridge.pbx.port.PbxCommands`); only the Mango-specific parts that
need Mango's own client (the call-history import of its statistics report) call `mango_client`.
A second PBX adds its adapter package beside `bridge.pbx.mango` and a branch here.
"""

from __future__ import annotations

from bridge.config import Settings
from bridge.pbx.mango.client import MangoClient
from bridge.pbx.port import PbxCommands

__all__ = ["mango_client", "pbx_client"]


def mango_client(settings: Settings) -> MangoClient:
    """A Mango command client from the current settings."""
    return MangoClient(
        settings.mango.api_key,
        settings.mango.api_salt.get_secret_value(),
        settings.mango.api_url,
        verify_tls=settings.mango.verify_tls,
    )


def pbx_client(settings: Settings) -> PbxCommands:
    """A client of the configured PBX, from the current settings. Raises ValueError when the
    credentials are missing."""
    return mango_client(settings)
