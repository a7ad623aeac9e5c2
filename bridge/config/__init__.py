"""Configuration: a TOML file plus `CALLBRIDGE_*` environment variables, validated by pydantic."""

from bridge.config.loader import ConfigError, load_config
from bridge.config.model import Settings

__all__ = ["ConfigError", "Settings", "load_config"]
