"""The saved settings: stored overrides on top of the defaults, never over fixed values.

The admin panel writes them; the core reads them (`effective()`), so they live in the core.

Precedence (highest first): the environment, the config file, the panel's saved value, the default.
A key set by the config file or the environment is *fixed*: the panel shows it locked and refuses to save it.
`effective()` is read on every use, so a saved value applies without a restart in every process.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from bridge.config import Settings
from bridge.config.loader import env_overrides
from bridge.config.model import MANGO_SOURCE_IPS
from bridge.store.engine import reader
from bridge.store.schema import admin_settings

# Settings keys the panel edits (section.key of bridge.config.Settings) ...
CORE_KEYS: tuple[str, ...] = (
    "mango.api_url",
    "mango.api_key",
    "mango.api_salt",
    "mango.verify_tls",
    "mango.allowed_ips",
    # routing of calls waiting in the IVR (bridge.routing reads them every 2 s)
    "routing.enabled",
    "routing.lines",
    "routing.groups",
    "routing.familiar_window_hours",
    "routing.order",
    "routing.decide_within_ms",
    "routing.skip_busy",
    "routing.intercept",
)
# ... and the panel's own options (not part of Settings).
PANEL_DEFAULTS: dict[str, Any] = {
    "admin.provider": "mango",
    "admin.softphone": "",  # "" = click-to-call through the PBX; "callto" | "sip" = links
    "admin.recordings": True,  # may the panel link (play) recordings
    "admin.timezone": "Europe/Moscow",
    "admin.frame_ancestors": "",  # shop admin origins allowed to show the panel in an iframe
}
SECRET_KEYS = frozenset({"mango.api_salt"})
SOFTPHONE_CHOICES = ("", "callto", "sip")
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")


class SettingsError(ValueError):
    """A value cannot be saved; the message names the key and the reason."""


def fixed_keys(
    environ: Mapping[str, str] | None = None, config_path: str | os.PathLike[str] | None = None
) -> frozenset[str]:
    """Dotted keys set by the config file or the environment (the same sources `load_config` reads).

    An environment variable with an empty value fixes nothing (so a deployment can leave a key to the panel).
    """
    environ = os.environ if environ is None else environ
    path = config_path or environ.get("CALLBRIDGE_CONFIG")
    keys: set[str] = set()
    if path:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            data = {}
        for section, values in data.items():
            if isinstance(values, dict):
                keys.update(_dotted(section, values))
    try:
        from_env = env_overrides({k: v for k, v in environ.items() if v != ""})
    except Exception:  # noqa: BLE001 - load_config reports unknown variables; here they fix nothing
        from_env = {}
    for section, values in from_env.items():
        keys.update(_dotted(section, values))
    return frozenset(keys)


def _dotted(section: str, values: Mapping[str, Any]) -> set[str]:
    """`section.key`; connector sections also give `connectors.<name>.<key>` for each of their keys."""
    keys = {f"{section}.{key}" for key in values}
    if section == "connectors":
        for name, options in values.items():
            if isinstance(options, dict):
                keys.update(f"connectors.{name}.{key}" for key in options)
    return keys


def is_connector_key(key: str) -> bool:
    """Whether `key` is a connector option the panel may save: `connectors.<name>.<key>`."""
    parts = key.split(".")
    return len(parts) == 3 and parts[0] == "connectors" and all(parts)


def parse_ip_list(text: str) -> list[str]:
    """Addresses or networks, separated by commas, spaces or lines; "mango" adds Mango's addresses."""
    result: list[str] = []
    for part in text.replace(",", " ").split():
        if part.lower() == "mango":
            result.extend(ip for ip in MANGO_SOURCE_IPS if ip not in result)
            continue
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise SettingsError(f"allowed IP addresses: {part!r} is not an IP address or network") from None
        if part not in result:
            result.append(part)
    return result


def _unwrap(value: Any) -> Any:
    """Secret fields dump as SecretStr objects; give pydantic the plain strings back."""
    if isinstance(value, dict):
        return {key: _unwrap(item) for key, item in value.items()}
    if hasattr(value, "get_secret_value"):
        return value.get_secret_value()
    return value


@dataclass(frozen=True)
class PanelOptions:
    provider: str
    softphone: str
    recordings: bool
    timezone: str
    frame_ancestors: str


class SettingsStore:
    """Reads and writes the panel's overrides; `effective()` gives the settings to use now."""

    def __init__(self, engine: Engine, base: Settings, fixed: frozenset[str] | None = None) -> None:
        self._engine = engine
        self._base = base
        self.fixed = fixed_keys() if fixed is None else fixed

    def is_fixed(self, key: str) -> bool:
        return key in self.fixed

    def overrides(self) -> dict[str, Any]:
        with reader(self._engine).connect() as conn:
            rows = conn.execute(select(admin_settings.c.key, admin_settings.c.value)).all()
        return {key: json.loads(value) for key, value in rows}

    def save(self, values: Mapping[str, Any]) -> list[str]:
        """Store the given keys (None deletes the override); returns the keys changed. Fixed keys raise."""
        allowed = set(CORE_KEYS) | set(PANEL_DEFAULTS)
        for key in values:
            if key not in allowed and not is_connector_key(key):
                raise SettingsError(f"{key}: not a setting the panel can change")
            if key in self.fixed:
                raise SettingsError(f"{key}: fixed by the config file or the environment")
        self._validate(values)
        now = time.time()
        with self._engine.begin() as conn:
            for key, value in values.items():
                if value is None:
                    conn.execute(delete(admin_settings).where(admin_settings.c.key == key))
                    continue
                encoded = json.dumps(value)
                done = conn.execute(
                    update(admin_settings)
                    .where(admin_settings.c.key == key)
                    .values(value=encoded, updated_at=now)
                ).rowcount
                if not done:
                    try:
                        with conn.begin_nested():
                            conn.execute(
                                insert(admin_settings).values(key=key, value=encoded, updated_at=now)
                            )
                    except IntegrityError:
                        conn.execute(
                            update(admin_settings)
                            .where(admin_settings.c.key == key)
                            .values(value=encoded, updated_at=now)
                        )
        return list(values)

    def _validate(self, values: Mapping[str, Any]) -> None:
        merged = self._merged_dict({**self.overrides(), **values})
        try:
            Settings.model_validate(merged)
        except ValidationError as exc:  # reported without the values (they may be secret)
            errors = exc.errors()
            text = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
            raise SettingsError(text or "invalid settings") from None
        ancestors = values.get("admin.frame_ancestors")
        if ancestors:
            for origin in str(ancestors).split():
                if not _ORIGIN.match(origin):
                    raise SettingsError(
                        f"admin.frame_ancestors: {origin!r} is not an origin like https://shop.example"
                    )
        softphone = values.get("admin.softphone")
        if softphone is not None and softphone not in SOFTPHONE_CHOICES:
            raise SettingsError("admin.softphone: expected '', 'callto' or 'sip'")

    def _merged_dict(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        data = _unwrap(self._base.model_dump(mode="python"))
        for key, value in overrides.items():
            if key in self.fixed or value is None:
                continue
            if is_connector_key(key):  # connectors.<name>.<key>: into that connector's section
                _, connector, option = key.split(".")
                data["connectors"][connector] = {**data["connectors"].get(connector, {}), option: value}
            elif key in CORE_KEYS:
                section, name = key.split(".", 1)
                data[section][name] = value
        return data

    def effective(self) -> Settings:
        """The base settings with the saved overrides applied (fixed keys keep their configured value)."""
        overrides = {k: v for k, v in self.overrides().items() if k in CORE_KEYS or is_connector_key(k)}
        if not overrides:
            return self._base
        try:
            return Settings.model_validate(self._merged_dict(overrides))
        except Exception:  # noqa: BLE001 - a stale, now-invalid override must not break the daemon
            return self._base

    def panel(self) -> PanelOptions:
        saved = self.overrides()
        value = {key: saved.get(key, default) for key, default in PANEL_DEFAULTS.items()}
        return PanelOptions(
            provider=str(value["admin.provider"]),
            softphone=str(value["admin.softphone"]),
            recordings=bool(value["admin.recordings"]),
            timezone=str(value["admin.timezone"]),
            frame_ancestors=str(value["admin.frame_ancestors"]),
        )
