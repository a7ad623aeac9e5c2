"""The settings file `callbridge init` writes: the keys a first start needs, each with its meaning as a
comment (from the settings' own descriptions), secrets generated, the rest left to their defaults."""

from __future__ import annotations

import json
import secrets
import textwrap
from dataclasses import dataclass

from bridge.config.loader import section_models


@dataclass(frozen=True)
class Starter:
    """What the admin gave `callbridge init` (empty = not known yet)."""

    mango_key: str = ""
    mango_salt: str = ""
    public_url: str = ""
    database_url: str = "sqlite:///var/callbridge.db"
    host: str = "127.0.0.1"
    port: int = 8080


def receiver_address(public_url: str) -> str:
    """The address to paste into Mango's cabinet (Mango appends `/events/call` and the like)."""
    return f"{public_url.rstrip('/')}/mango"


def render(starter: Starter, *, api_token: str | None = None, secret_key: str | None = None) -> str:
    """The TOML text; `api_token` and `secret_key` are generated when not given."""
    values: dict[str, dict[str, object]] = {
        "mango": {"api_key": starter.mango_key, "api_salt": starter.mango_salt},
        "http": {"host": starter.host, "port": starter.port, "public_url": starter.public_url},
        "database": {"url": starter.database_url},
        "api": {"token": api_token or secrets.token_urlsafe(32)},
        "security": {"secret_key": secret_key or secrets.token_urlsafe(48)},
    }
    lines = [
        "# callbridge settings, written by `callbridge init`.",
        "# Every key also has an environment variable CALLBRIDGE_<SECTION>_<KEY>, which wins over this file.",
        "# Every setting, with its default: docs/configuration.md (or `callbridge config reference`).",
        "# This file holds secrets (the Mango salt, the API token, the signing key): keep it readable by",
        "# callbridge's user only.",
    ]
    models = section_models()
    for section, keys in values.items():
        lines += ["", f"[{section}]"]
        for key, value in keys.items():
            description = models[section].model_fields[key].description or ""
            lines += textwrap.wrap(description, width=98, initial_indent="# ", subsequent_indent="# ")
            lines.append(f"{key} = {_toml(value)}")
        if section == "mango":
            lines += [
                "# Once Mango's \"Check connection\" works, accept webhooks from Mango's addresses only:",
                '# allowed_ips = ["mango"]',
            ]
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    """A TOML value: integers as they are, strings as basic strings (JSON's escapes are TOML's)."""
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value), ensure_ascii=False)
