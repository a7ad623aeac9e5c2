"""Load settings from a TOML file and environment variables (the environment wins)."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from bridge.config.model import Settings

ENV_PREFIX = "CALLBRIDGE_"
# Variables with the prefix that are not settings keys.
_NOT_KEYS = {"CALLBRIDGE_CONFIG", "CALLBRIDGE_TEST_DATABASE_URL", "CALLBRIDGE_TEST_REDIS_URL"}


class ConfigError(Exception):
    """The configuration is invalid; the message names each key and what is wrong with it."""


def _section_fields() -> dict[str, type[BaseModel]]:
    sections: dict[str, type[BaseModel]] = {}
    for name, info in Settings.model_fields.items():
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            sections[name] = annotation
    return sections


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Map `CALLBRIDGE_<SECTION>_<KEY>` variables onto the nested settings dict.

    Connector sections use `CALLBRIDGE_CONNECTORS_<NAME>_<KEY>`; the connector name is the part up to
    the first underscore after CONNECTORS_ (connector names have no underscores).
    """
    sections = _section_fields()
    result: dict[str, dict[str, Any]] = {}
    unknown: list[str] = []
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or var in _NOT_KEYS:
            continue
        rest = var[len(ENV_PREFIX) :].lower()
        if rest.startswith("connectors_"):
            name, _, key = rest[len("connectors_") :].partition("_")
            if name and key:
                result.setdefault("connectors", {}).setdefault(name, {})[key] = value
                continue
        for section, model in sections.items():
            prefix = section + "_"
            if rest.startswith(prefix) and rest[len(prefix) :] in model.model_fields:
                result.setdefault(section, {})[rest[len(prefix) :]] = value
                break
        else:
            unknown.append(var)
    if unknown:
        raise ConfigError("unknown setting(s) in the environment: " + ", ".join(sorted(unknown)))
    return result


def _merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _coerce_env_lists(data: dict[str, Any]) -> dict[str, Any]:
    """Environment values are strings; list-typed keys accept comma-separated values."""
    mango = data.get("mango")
    if isinstance(mango, dict) and isinstance(mango.get("allowed_ips"), str):
        mango["allowed_ips"] = [p.strip() for p in mango["allowed_ips"].split(",") if p.strip()]
    return data


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        env = ENV_PREFIX + "_".join(str(part) for part in item["loc"]).upper()
        lines.append(f"{key} (env {env}): {item['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_config(
    path: str | os.PathLike[str] | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the TOML file (`path`, else `$CALLBRIDGE_CONFIG`, else none) and apply the environment."""
    environ = os.environ if environ is None else environ
    path = path or environ.get("CALLBRIDGE_CONFIG")
    data: dict[str, Any] = {}
    if path:
        file = Path(path)
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {file}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {file} is not valid TOML: {exc}") from exc
    data = _merge(data, _coerce_env_lists(env_overrides(environ)))
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
