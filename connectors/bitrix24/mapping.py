"""Mango extension <-> Bitrix24 user.

Order: the explicit ``users`` map, then the imported map (``user.get``: every active user's
``UF_PHONE_INNER``, kept in the state store under the core's ``employee_map`` key), then, when
``pass_phone_inner`` is on and nothing was imported, ``USER_PHONE_INNER`` (Bitrix24 finds the user
itself, but show/hide need IDs), then the ``unmapped`` policy: the ``default_user`` or skip.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.connector_api import StateStore
from bridge.connector_api.employees import IMPORTED_MAP_KEY, EmployeeResolver
from connectors.bitrix24.client import Bitrix24Client, Command
from connectors.bitrix24.config import Bitrix24Config
from connectors.bitrix24.handler import Who

log = logging.getLogger("callbridge.connectors.bitrix24")

IMPORTED_AT_KEY = "employee_map_imported_at"
REIMPORT_AFTER = 86400.0
PAGE = 50  # user.get returns 50 users per page


@dataclass(frozen=True)
class ImportReport:
    users: int  # active users seen
    mapped: dict[str, str]  # extension -> user ID
    duplicates: dict[str, list[str]]  # an extension two users claim -> their IDs (first one kept)

    def words(self) -> str:
        text = f"{len(self.mapped)} of {self.users} active users have an inner phone number"
        if self.duplicates:
            text += "; shared inner numbers (first user kept): " + ", ".join(
                f"{ext} ({'/'.join(ids)})" for ext, ids in sorted(self.duplicates.items())
            )
        return text

    def report(self) -> str:
        """The summary, then one line per mapped extension."""
        lines = [self.words()] + [f"  {ext} -> {user}" for ext, user in sorted(self.mapped.items())]
        return "\n".join(lines)


def mapping_from_users(users: list[dict[str, Any]]) -> ImportReport:
    """extension -> user ID from ``user.get`` rows (ACTIVE users with a UF_PHONE_INNER)."""
    mapped: dict[str, str] = {}
    duplicates: dict[str, list[str]] = {}
    seen = 0
    for user in users:
        if str(user.get("ACTIVE", True)).lower() in ("false", "0", "n", ""):
            continue
        seen += 1
        inner = str(user.get("UF_PHONE_INNER") or "").strip()
        uid = str(user.get("ID") or "").strip()
        if not inner or not uid.isdigit():
            continue
        if inner in mapped and mapped[inner] != uid:
            duplicates.setdefault(inner, [mapped[inner]]).append(uid)
            continue
        mapped[inner] = uid
    return ImportReport(seen, mapped, duplicates)


class Employees:
    """Resolves extensions for commands; imports the map from Bitrix24 when it is missing or old."""

    def __init__(
        self,
        settings: Bitrix24Config,
        state: Callable[[], StateStore | None],
        client: Bitrix24Client,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._state = state
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._import_failed_at = 0.0

    def _resolver(self) -> EmployeeResolver:
        return EmployeeResolver(self.settings, self._state())

    def imported(self) -> dict[str, str] | None:
        """The imported map, or None when nothing was imported yet."""
        store = self._state()
        if store is None or store.get(IMPORTED_MAP_KEY) is None:
            return None
        return self._resolver().imported()

    def resolve(self, extension: str | None) -> Who | None:
        """How to name the employee at `extension` in register/finish, or None (skip)."""
        if extension and extension in self.settings.users:
            return Who(user_id=str(self.settings.users[extension]))
        imported = self._imported_for_use() if extension else None
        if extension and imported and extension in imported:
            return Who(user_id=imported[extension])
        if extension and self.settings.pass_phone_inner and not imported:
            return Who(inner=extension)
        if self.settings.unmapped == "default" and self.settings.default_user:
            return Who(user_id=str(self.settings.default_user))
        return None

    def mapped(self) -> dict[str, str]:
        """Extension -> user ID from the config and the imported map (no request, no import)."""
        return {ext: str(uid) for ext, uid in self._resolver().mapped().items()}

    def user_id(self, extension: str | None) -> str | None:
        """A user ID for show/hide/tasks (USER_PHONE_INNER is not accepted there)."""
        who = self.resolve(extension)
        return who.user_id if who is not None else None

    def mapped_extension(self, user_id: str) -> str | None:
        """The extension the maps give a user ID (no request)."""
        return self._resolver().extension_for(str(user_id))

    def extension_for(self, user_id: str) -> str | None:
        """Reverse lookup for click-to-call (the map first; then the user's UF_PHONE_INNER from Bitrix24)."""
        found = self.mapped_extension(user_id)
        if found:
            return found
        users = self._client.call("user.get", {"FILTER": {"ID": int(user_id)}}) or []
        for user in users if isinstance(users, list) else []:
            inner = str(user.get("UF_PHONE_INNER") or "").strip()
            if inner:
                return inner
        return None

    def _imported_for_use(self) -> dict[str, str] | None:
        imported = self.imported()
        if not self.settings.auto_import:
            return imported
        store = self._state()
        stamp = store.get(IMPORTED_AT_KEY) if store is not None else None
        fresh = stamp is not None and self._clock() - float(stamp[0]) < REIMPORT_AFTER
        if imported is not None and fresh:
            return imported
        if self._clock() - self._import_failed_at < 300:
            return imported
        with self._lock:
            again = self.imported()
            stamp = store.get(IMPORTED_AT_KEY) if store is not None else None
            if again is not None and stamp is not None and self._clock() - float(stamp[0]) < REIMPORT_AFTER:
                return again
            try:
                self.import_now()
            except Exception as exc:  # the import is a convenience: calls go on without it
                self._import_failed_at = self._clock()
                log.warning("bitrix24: employee import failed: %s", exc)
                return again
            return self.imported()

    def fetch_users(self) -> list[dict[str, Any]]:
        """Every active user (``user.get`` with FILTER ACTIVE, 50 per page; later pages in one batch)."""
        first = self._client.batch(
            {"p0": Command("user.get", {"FILTER": {"ACTIVE": True}, "start": 0})}, must_succeed=True
        )
        users = list(first.results.get("p0") or [])
        if len(users) < PAGE:
            return users
        # We do not get `total` from a batch result, so ask for pages until one comes back short.
        start = PAGE
        while True:
            keys = {f"p{start + i * PAGE}": start + i * PAGE for i in range(10)}
            page = self._client.batch(
                {k: Command("user.get", {"FILTER": {"ACTIVE": True}, "start": s}) for k, s in keys.items()},
                must_succeed=True,
            )
            for key in keys:
                rows = list(page.results.get(key) or [])
                users.extend(rows)
                if len(rows) < PAGE:
                    return users
            start += 10 * PAGE

    def import_now(self) -> ImportReport:
        """Import the map from Bitrix24 and store it (replacing the previous import)."""
        report = mapping_from_users(self.fetch_users())
        self._resolver().save_imported(report.mapped)
        store = self._state()
        if store is not None:
            for _ in range(5):
                current = store.get(IMPORTED_AT_KEY)
                version = current[1] if current else None
                if store.compare_and_set(IMPORTED_AT_KEY, str(self._clock()), version) is not None:
                    break
        log.info("bitrix24: employee map imported: %s", report.words())
        return report
