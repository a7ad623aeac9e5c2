"""The directory client: a TLS connection, the service account's bind, paged searches, and a user's own
bind with their groups for panel sign-in. Every failure is an `LdapError` in plain words, never with the
password."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from ldap3 import BASE, NONE, SUBTREE, Connection, Server, Tls
from ldap3.core import exceptions as lx
from ldap3.utils.conv import escape_filter_chars

from bridge.config.model import LDAP_ROLES, LdapSettings

__all__ = ["DirectoryAccount", "DirectoryClient", "LdapError"]


class LdapError(Exception):
    """The directory could not be used; the message says why in plain words."""


@dataclass(frozen=True)
class DirectoryAccount:
    """A directory user who proved their password: their DN, the mapped groups they are in, and the panel
    role those give (None: in no mapped group)."""

    dn: str
    groups: tuple[str, ...]
    role: str | None


def _reason(exc: BaseException, settings: LdapSettings) -> str:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return f"the TLS certificate of {settings.url} is not trusted (set ldap.ca_file to its CA)"
    if "doesn't match any name" in text or isinstance(exc, lx.LDAPCertificateError):
        return f"the TLS certificate of {settings.url} is not made out to its host name"
    if isinstance(exc, lx.LDAPStartTLSError):
        return f"StartTLS with {settings.url} failed: {text}"
    if isinstance(exc, lx.LDAPResponseTimeoutError):
        return f"the directory server {settings.url} did not answer in time"
    if isinstance(exc, lx.LDAPCommunicationError):
        return f"cannot reach the directory server {settings.url}: {text}"
    if isinstance(exc, lx.LDAPInvalidFilterError):
        return f"the filter {settings.filter!r} is invalid: {text}"
    return f"the directory server {settings.url} refused the request: {text}"


def _close(conn: Connection) -> None:
    with contextlib.suppress(lx.LDAPException):
        conn.unbind()


def _server(settings: LdapSettings) -> Server:
    refusal = settings.refusal()
    if refusal:
        raise LdapError(refusal)
    parts = urlsplit(settings.url)
    secure = parts.scheme.lower() == "ldaps"
    tls = Tls(
        validate=ssl.CERT_REQUIRED,
        version=ssl.PROTOCOL_TLS_CLIENT,
        ca_certs_file=settings.ca_file or None,
    )
    try:
        port = parts.port or (636 if secure else 389)
    except ValueError:
        raise LdapError(f"{settings.url} has an invalid port") from None
    return Server(
        parts.hostname or "",
        port=port,
        use_ssl=secure,
        tls=tls,
        get_info=NONE,
        connect_timeout=settings.timeout_seconds,
    )


class DirectoryClient:
    """One bound connection as the service account; use it as a context manager."""

    def __init__(self, settings: LdapSettings) -> None:
        self.settings = settings
        self._server = _server(settings)
        self._conn = self._bind(settings.bind_dn, settings.password.get_secret_value())

    def _bind(self, dn: str, password: str) -> Connection:
        """A connection bound as `dn`; LdapError when the server cannot be used or refuses the bind."""
        conn = Connection(
            self._server,
            user=dn or None,
            password=password or None,
            read_only=True,
            receive_timeout=int(self.settings.timeout_seconds) or 1,
            raise_exceptions=False,
        )
        try:
            conn.open()
            wants_tls = self.settings.start_tls and not self.settings.url.lower().startswith("ldaps://")
            if wants_tls and not conn.start_tls():
                raise LdapError(f"StartTLS with {self.settings.url} failed: {conn.result.get('description')}")
            if not conn.bind():
                description = conn.result.get("description") or "refused"
                raise LdapError(f"bind refused for {dn or 'an anonymous user'}: {description}")
        except lx.LDAPException as exc:
            _close(conn)
            raise LdapError(_reason(exc, self.settings)) from None
        except LdapError:
            _close(conn)
            raise
        return conn

    def __enter__(self) -> DirectoryClient:
        return self

    def __exit__(self, *exc: object | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        _close(self._conn)

    def entries(self, attributes: list[str]) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """Every entry under `base_dn` matching `filter`, page by page: (DN, attributes)."""
        try:
            pages = self._conn.extend.standard.paged_search(
                self.settings.base_dn,
                self.settings.filter,
                search_scope=SUBTREE,
                attributes=attributes,
                paged_size=self.settings.page_size,
                generator=True,
            )
            for item in pages:
                if item.get("type") == "searchResEntry":
                    yield item["dn"], item.get("attributes", {})
        except lx.LDAPException as exc:
            raise LdapError(_reason(exc, self.settings)) from None
        result = self._conn.result or {}
        if result.get("result", 0) not in (0, None):
            raise LdapError(
                f"searching {self.settings.base_dn} failed: {result.get('description')} "
                f"{result.get('message') or ''}".strip()
            )

    def check(self) -> str:
        """ "Test connection": bind and count the matching entries, or LdapError."""
        count = sum(1 for _ in self.entries(["1.1"]))
        return f"connected to {self.settings.url} as {self.settings.bind_dn or 'anonymous'}: {count} entries"

    def find_login(self, username: str) -> str | None:
        """The DN of the one entry whose login attribute is `username` (within the filter), or None."""
        name = escape_filter_chars(username)
        query = f"(&{self._wrapped(self.settings.filter)}({self.settings.login_attribute}={name}))"
        try:
            self._conn.search(
                self.settings.base_dn, query, search_scope=SUBTREE, attributes=["1.1"], size_limit=2
            )
        except lx.LDAPException as exc:
            raise LdapError(_reason(exc, self.settings)) from None
        found = [e["dn"] for e in self._conn.response or [] if e.get("type") == "searchResEntry"]
        return found[0] if len(found) == 1 else None

    def groups_of(self, dn: str) -> tuple[str, ...]:
        """Which of the groups named in `[ldap.roles]` list `dn` as a member."""
        member = escape_filter_chars(dn)
        groups = []
        for group in self.settings.roles:
            query = f"({self.settings.group_attribute}={member})"
            try:
                self._conn.search(group, query, search_scope=BASE, attributes=["1.1"])
            except lx.LDAPException as exc:
                raise LdapError(_reason(exc, self.settings)) from None
            if any(e.get("type") == "searchResEntry" for e in self._conn.response or []):
                groups.append(group)
        return tuple(groups)

    def role_of(self, dn: str) -> tuple[tuple[str, ...], str | None]:
        """The mapped groups of `dn` and the highest role they give (None when none)."""
        groups = self.groups_of(dn)
        roles = {self.settings.roles[g] for g in groups}
        ranked = [role for role in reversed(LDAP_ROLES) if role in roles]
        return groups, (ranked[0] if ranked else None)

    def authenticate(self, username: str, password: str) -> DirectoryAccount | None:
        """The directory account `username` if `password` is theirs (a bind as that user), else None. An
        empty password is refused here: a directory would take it as an anonymous bind."""
        if not username or not password:
            return None
        dn = self.find_login(username)
        if dn is None:
            return None
        try:
            _close(self._bind(dn, password))
        except LdapError as exc:
            if str(exc).startswith("bind refused"):
                return None
            raise
        groups, role = self.role_of(dn)
        return DirectoryAccount(dn=dn, groups=groups, role=role)

    @staticmethod
    def _wrapped(query: str) -> str:
        query = query.strip()
        return query if query.startswith("(") else f"({query})"
