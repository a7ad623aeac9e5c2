"""The saved settings moved into the core: `bridge.settings_store` (this name stays for old imports)."""

from bridge.settings_store import *  # noqa: F403
