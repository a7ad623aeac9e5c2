"""The panel's "Import from Mango" button: the core import (`bridge.employees`), counted for the flash."""

from __future__ import annotations

from sqlalchemy import Engine

from bridge.employees import EmployeeImport
from bridge.employees import import_employees as import_from_mango
from bridge.pbx.port import PbxCommands


def import_employees(engine: Engine, client: PbxCommands) -> EmployeeImport:
    """Import Mango's employees into the core's `employees` table; returns what changed."""
    return import_from_mango(engine, client)
