"""The optional parts of a connector, as protocols the core checks with ``isinstance``.

A connector implements one of these only when it has that part; the core never looks for methods by
name. `Connector` itself is the required part (see `base.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

PbxUsers = Callable[[], Any]
"""Fetches the PBX's employee list (Mango's ``config/users/request``) when called; an importer that does
not need it never calls it, so no PBX request is made."""


@runtime_checkable
class ImportResult(Protocol):
    """What an employee import returns: the lines a person reads about it."""

    def report(self) -> str: ...


@runtime_checkable
class EmployeeImporter(Protocol):
    """Imports the map from PBX extensions to CRM users and stores it (declare `EMPLOYEE_IMPORT`)."""

    def import_employees(self, pbx_users: PbxUsers) -> ImportResult: ...


@runtime_checkable
class Closeable(Protocol):
    """Holds resources (connection pools, engines) to release when the connector is dropped or rebuilt."""

    def close(self) -> None: ...


@runtime_checkable
class Dormant(Protocol):
    """May be off for now (never enabled with valid settings since the start): while `dormant`, the
    dispatcher claims nothing for it."""

    @property
    def dormant(self) -> bool: ...


@runtime_checkable
class CrmSetup(Protocol):
    """Registers the integration in the CRM itself (an integration module, a telephony switch).

    `callbridge connectors setup NAME` calls `set_up()` (and `set_up(enabled=False)` with `--off`) whatever
    the connector remembers having sent; a connector may also set itself up when it starts. Returns what was
    done, in words for the admin; raises `DeliveryError` when the CRM refuses."""

    def set_up(self, *, enabled: bool = True) -> str: ...


@runtime_checkable
class TurnedOff(Protocol):
    """Told when the admin turns it off (the panel or the config): it may undo in the CRM what turning it on
    did (e.g. switch a telephony integration off). Every process that held it is told: record the undo in
    `context.state` (`compare_and_set`) so that only one of them sends it."""

    def turned_off(self) -> None: ...


@runtime_checkable
class CommandLine(Protocol):
    """Adds the connector's own commands under `callbridge connectors` (e.g. `amocrm-widget`). A class
    method: the commands are there whether or not the connector is configured; they get the `AppContext`
    (settings, store) as click's `obj`."""

    @classmethod
    def cli_commands(cls) -> Sequence[Any]: ...
