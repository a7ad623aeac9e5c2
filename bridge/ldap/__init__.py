"""Employees and panel accounts from an LDAP directory or Active Directory (`[ldap]`, docs/ldap.md).

`client` talks to the directory (TLS, the service bind, paged searches, a user's own bind and groups),
`mapping` turns entries into people with the configured attribute names, `sync` writes them into the
core's `employees` table.
"""

from __future__ import annotations

from bridge.ldap.client import DirectoryAccount, DirectoryClient, LdapError
from bridge.ldap.mapping import DirectoryPerson, person_from_entry
from bridge.ldap.sync import SyncResult, sync_employees

__all__ = [
    "DirectoryAccount",
    "DirectoryClient",
    "DirectoryPerson",
    "LdapError",
    "SyncResult",
    "person_from_entry",
    "sync_employees",
]
