"""Importing a CRM connector's map from extensions to CRM users, for the CLI and the admin panel.

The core knows no connector by name. A connector that maps extensions to CRM users implements the
`EmployeeImporter` protocol: `import_employees(pbx_users)` gets a fetcher of Mango's employees
(`config/users/request`), which it calls only if it needs them (e.g. to pair them by e-mail). Its result
describes itself with `report()` (full text) or `words()` (a summary, then the `mapped` extensions are
listed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bridge.connector_api import Connector, EmployeeImporter


def imports_employees(connector: Connector | type[Connector]) -> bool:
    """Whether the connector can import its employee map (it implements `EmployeeImporter`).

    A dormant live connector (no build yet) cannot."""
    if isinstance(connector, type):
        return issubclass(connector, EmployeeImporter)
    return isinstance(connector, EmployeeImporter)


def describe_import(result: Any) -> list[str]:
    """The lines a person reads about an import's result."""
    if callable(getattr(result, "report", None)):
        return str(result.report()).splitlines()
    lines = [str(result.words()) if callable(getattr(result, "words", None)) else str(result)]
    mapped = getattr(result, "mapped", None)
    if isinstance(mapped, Mapping):
        lines += [f"  {extension} -> {user}" for extension, user in sorted(mapped.items())]
    return lines


def import_crm_employees(connector: Connector, mango_users: Callable[[], Any]) -> list[str]:
    """Run the connector's employee import (Mango is asked for its employees only if the import calls
    `mango_users`) and return the lines that describe the result. Raises what the import or Mango raise."""
    if not isinstance(connector, EmployeeImporter):
        raise TypeError(f"the {connector.name} connector cannot import employees")
    return describe_import(connector.import_employees(mango_users))


def mango_users_from(client: Callable[[], Any]) -> Callable[[], Any]:
    """Mango's employee list (`config/users/request`), fetched with a fresh client only when called."""

    def fetch() -> Any:
        mango = client()
        try:
            return mango.users()
        finally:
            mango.close()

    return fetch
