"""Importing a CRM connector's map from extensions to CRM users, for the CLI and the admin panel.

The core knows no connector by name. A connector that maps extensions to CRM users offers
`import_employees()`; when that method takes an argument, it is given Mango's employees
(`config/users/request`), e.g. to pair them by e-mail. Its result describes itself with `report()` (full
text) or `words()` (a summary, then the `mapped` extensions are listed).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from bridge.connector_api import Connector

IMPORT_EMPLOYEES = "import_employees"


def imports_employees(connector: Connector | type[Connector]) -> bool:
    """Whether the connector can import its employee map."""
    return callable(getattr(connector, IMPORT_EMPLOYEES, None))


def wants_mango_users(connector: Connector) -> bool:
    """Whether the connector's `import_employees` takes Mango's employees as its first argument."""
    method = getattr(connector, IMPORT_EMPLOYEES)
    params = [
        p
        for p in inspect.signature(method).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return bool(params)


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
    """Run the connector's employee import (asking Mango for its employees only when the import wants
    them) and return the lines that describe the result. Raises what the import or Mango raise."""
    method = getattr(connector, IMPORT_EMPLOYEES)
    result = method(mango_users()) if wants_mango_users(connector) else method()
    return describe_import(result)


def mango_users_from(client: Callable[[], Any]) -> Callable[[], Any]:
    """Mango's employee list (`config/users/request`), fetched with a fresh client only when called."""

    def fetch() -> Any:
        mango = client()
        try:
            return mango.users()
        finally:
            mango.close()

    return fetch
