"""The connector registry: finds connectors by entry point and builds the enabled ones from config.

Connectors register under the entry point group ``callbridge.connectors``; the entry point's name must be
the class's `name` (it is the ``[connectors.<name>]`` section and the outbox's connector column). Tests can
add a connector class for a while with `installed()` instead of an entry point.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from bridge.connector_api import Capability, Connector, EmployeeImporter, Manifest

__all__ = [
    "ENTRY_POINT_GROUP",
    "ConnectorConfigError",
    "available_connectors",
    "build_connectors",
    "check_connector_class",
    "installed",
]

log = logging.getLogger("callbridge.registry")

ENTRY_POINT_GROUP = "callbridge.connectors"

_FALSE = {"false", "0", "no", "off", ""}
_TRUE = {"true", "1", "yes", "on"}


class ConnectorConfigError(Exception):
    """A ``[connectors.<name>]`` section cannot be used. `problems` lists one line per faulty key."""

    def __init__(self, connector: str, problems: list[str]) -> None:
        self.connector = connector
        self.problems = problems
        if len(problems) == 1:
            text = problems[0]
        else:
            text = f"connector {connector!r} is misconfigured:\n" + "\n".join(f"  {p}" for p in problems)
        super().__init__(text)


# Connector classes added by `installed()` (tests), looked at before the entry points.
_installed: dict[str, type[Connector]] = {}


def check_connector_class(cls: Any, name: str, where: str) -> type[Connector]:
    """`cls` if it is a usable connector class registered as `name`; raises `TypeError` saying why not."""
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise TypeError(f"{where} is not a Connector subclass")
    if getattr(cls, "name", None) != name:
        raise TypeError(f"{where}.name is {getattr(cls, 'name', None)!r}, the entry point says {name!r}")
    config_model = getattr(cls, "config_model", None)
    if not (isinstance(config_model, type) and issubclass(config_model, BaseModel)):
        raise TypeError(f"{where}.config_model is not a pydantic model")
    manifest = cls.__dict__.get("manifest", getattr(cls, "manifest", None))
    if manifest is not None:
        if not isinstance(manifest, Manifest):
            raise TypeError(f"{where}.manifest is not a Manifest")
        declared = Capability.EMPLOYEE_IMPORT in manifest.capabilities
        if declared != issubclass(cls, EmployeeImporter):
            says = "declares" if declared else "does not declare"
            raise TypeError(f"{where} {says} {Capability.EMPLOYEE_IMPORT} but its import_employees disagrees")
    return cls


def _load(ep: EntryPoint) -> type[Connector]:
    return check_connector_class(ep.load(), ep.name, ep.value)


@contextmanager
def installed(cls: type[Connector]) -> Iterator[type[Connector]]:
    """Make `cls` an installed connector (as if it had an entry point) inside the ``with`` block."""
    name = getattr(cls, "name", "")
    check_connector_class(cls, name, f"{cls.__module__}.{cls.__qualname__}")
    if name in _installed:
        raise ValueError(f"a connector called {name!r} is already installed for tests")
    _installed[name] = cls
    try:
        yield cls
    finally:
        del _installed[name]


def _discover() -> tuple[dict[str, type[Connector]], dict[str, str]]:
    found: dict[str, type[Connector]] = dict(_installed)
    broken: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found or ep.name in broken:
            log.warning("connector %r is registered twice; keeping the first (%s)", ep.name, ep.value)
            continue
        try:
            found[ep.name] = _load(ep)
        except Exception as exc:
            broken[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("connector %r could not be loaded: %s", ep.name, broken[ep.name])
    return found, broken


def available_connectors() -> dict[str, type[Connector]]:
    """Every installed connector class by name. Ones that fail to import are logged and left out."""
    return dict(sorted(_discover()[0].items()))


def _enabled(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.strip().lower() in _FALSE | _TRUE:
        return value.strip().lower() in _TRUE
    raise ConnectorConfigError(name, [f"connectors.{name}.enabled: should be true or false"])


def _problems(name: str, exc: ValidationError) -> list[str]:
    problems = []
    # include_input=False: the rejected value may be a secret.
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in err["loc"])
        key = f"connectors.{name}.{where}" if where else f"connectors.{name}"
        message = err["msg"]
        if err["type"] == "value_error":  # our own validators' words, without pydantic's prefix
            message = message.removeprefix("Value error, ")
        problems.append(f"{key}: {message}")
    return problems


def build_connectors(config_sections: Mapping[str, Mapping[str, Any]]) -> dict[str, Connector]:
    """Validate and build every enabled ``[connectors.<name>]`` section; return the instances by name.

    A section is enabled unless it says ``enabled = false`` (the key is not passed to the model). Raises
    `ConnectorConfigError` naming the connector, the key and what is wrong; a name no installed connector
    answers to gets an error listing the available ones. Disabled sections are not checked at all.
    """
    available, broken = _discover()
    built: dict[str, Connector] = {}
    for name, section in config_sections.items():
        if section is None:
            section = {}
        if not isinstance(section, Mapping):
            raise ConnectorConfigError(name, [f"connectors.{name}: should be a table of settings"])
        settings = dict(section)
        if not _enabled(name, settings.pop("enabled", True)):
            continue
        if name in broken:
            raise ConnectorConfigError(
                name, [f"connectors.{name}: the connector is installed but failed to load ({broken[name]})"]
            )
        cls = available.get(name)
        if cls is None:
            names = ", ".join(sorted(available)) or "none"
            raise ConnectorConfigError(
                name, [f"connectors.{name}: no connector called {name!r} is installed (available: {names})"]
            )
        try:
            config = cls.config_model.model_validate(settings)
        except ValidationError as exc:
            raise ConnectorConfigError(name, _problems(name, exc)) from None
        try:
            built[name] = cls(config)
        except (ValueError, TypeError) as exc:
            raise ConnectorConfigError(name, [f"connectors.{name}: {exc}"]) from None
    return built
