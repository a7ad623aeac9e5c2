"""Load settings from a TOML file and environment variables (the environment wins)."""

from __future__ import annotations

import difflib
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


def section_models() -> dict[str, type[BaseModel]]:
    """Each settings section's name and model (the connectors' sections are the connectors' own)."""
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
    sections = section_models()
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
        known = [f"{ENV_PREFIX}{section}_{key}".upper() for section, key in _known_keys()]
        named = [var + _did_you_mean(var, known) for var in sorted(unknown)]
        raise ConfigError("unknown setting(s) in the environment: " + ", ".join(named))
    return result


def _known_keys() -> list[tuple[str, str]]:
    return [(section, key) for section, model in section_models().items() for key in model.model_fields]


def _did_you_mean(name: str, candidates: list[str]) -> str:
    """` (did you mean X?)` when one of `candidates` is close to `name`, else nothing."""
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


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


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        if item["type"] == "extra_forbidden":
            lines.append(_unknown_key(key, source))
            continue
        env = ENV_PREFIX + "_".join(str(part) for part in item["loc"]).upper()
        lines.append(f"{key} (env {env}): {item['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def _unknown_key(key: str, source: str) -> str:
    """`unknown setting `mango.apisalt` in callbridge.toml (did you mean `mango.api_salt`?)`."""
    if "." in key:
        candidates = [f"{section}.{name}" for section, name in _known_keys()]
    else:
        candidates = [*section_models(), "connectors"]
    hint = _did_you_mean(key, candidates)
    if hint:
        hint = hint.replace("mean ", "mean `").replace("?)", "`?)")
    return f"unknown setting `{key}` in {source}{hint}"


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
        raise ConfigError(_describe(exc, Path(path).name if path else "the settings")) from None
