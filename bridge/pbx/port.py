"""The PBX port: what the rest of callbridge may know about the PBX it sends commands to.

The core and the add-ons catch these errors, read these result types and call a client through
`PbxCommands`; an adapter (today only Mango's, `bridge.pbx.mango`) subclasses the errors and results
and implements the protocol. Which adapter is built from the settings is decided in `bridge.pbx.select`.

Every error kind takes the same constructor arguments as `PbxError` (`code`, `message`, `path`,
`http_status`) plus its own keyword-only fields, so an adapter's error can inherit from its own base
class and from a port kind at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from bridge.pbx.events import PbxEvent

if TYPE_CHECKING:
    from bridge.config import Settings

__all__ = [
    "CommandAccepted",
    "EventDecoder",
    "PbxBadKey",
    "PbxBadRequest",
    "PbxBadSignature",
    "PbxBillingError",
    "PbxClientFactory",
    "PbxClientForSettings",
    "PbxCommands",
    "PbxError",
    "PbxGroup",
    "PbxParseError",
    "PbxRateLimited",
    "PbxTransportError",
    "PbxUser",
    "PbxUserNumber",
]


# -------------------------------------------------------------------------------------------- errors


class PbxError(Exception):
    """A PBX request failed. `code` is the PBX's result code, or None when it gave none.

    `retryable` tells a caller whether the same request can succeed later without a change.
    """

    retryable: bool = False

    def __init__(
        self,
        code: int | None,
        message: str,
        *,
        path: str | None = None,
        http_status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.path = path
        self.http_status = http_status

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class PbxBadRequest(PbxError):
    """The PBX rejected the request itself; repeating it unchanged fails again (unless `retryable`)."""


class PbxBadSignature(PbxBadRequest):
    """The request's signature does not match: the API secret (salt) is wrong."""


class PbxBadKey(PbxBadRequest):
    """The API key (the account's credentials) is wrong."""


class PbxBillingError(PbxError):
    """The account's balance, tariff or limits forbid the request."""


class PbxRateLimited(PbxError):
    """Too many requests. `retry_after` is the wait in seconds, when known."""

    retryable = True

    def __init__(
        self,
        code: int | None,
        message: str,
        *,
        path: str | None = None,
        http_status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(code, message, path=path, http_status=http_status)
        self.retry_after = retry_after


class PbxTransportError(PbxError):
    """No usable answer from the PBX: network error, timeout, or a reply it would not send.

    `maybe_delivered` is True when the request may have reached the PBX, so a command that is not
    idempotent (a callback) may already be running.
    """

    retryable = True

    def __init__(
        self,
        code: int | None,
        message: str,
        *,
        path: str | None = None,
        http_status: int | None = None,
        maybe_delivered: bool = True,
    ) -> None:
        super().__init__(code, message, path=path, http_status=http_status)
        self.maybe_delivered = maybe_delivered


class PbxParseError(ValueError):
    """A notification's payload is not one the PBX sends; the message says which field and why."""


# ------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CommandAccepted:
    """The PBX accepted a command; its outcome arrives later, carrying `command_id`.
    `result` is the PBX's own code for the acceptance."""

    command_id: str
    result: int


@dataclass(frozen=True)
class PbxUserNumber:
    """One of an employee's numbers (a phone number or a SIP address)."""

    number: str


@dataclass(frozen=True)
class PbxUser:
    """The PBX's employee: the fields the core and the CRM imports read. An adapter may add more."""

    extension: str | None
    name: str | None = None
    email: str | None = None
    department: str | None = None
    position: str | None = None
    mobile: str | None = None
    user_id: str | None = None
    numbers: tuple[PbxUserNumber, ...] = ()


@dataclass(frozen=True)
class PbxGroup:
    """A ring group: its id, name, short number and its operators' extensions in ringing order."""

    group_id: str
    name: str | None = None
    extension: str | None = None
    operators: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------ commands


@runtime_checkable
class PbxCommands(Protocol):
    """The commands and queries the core and the add-ons send to the PBX.

    Every method raises a `PbxError` kind when the PBX refuses or cannot be reached.
    """

    verify_tls: bool | str
    """How links the PBX hands out (recordings) are fetched: False, or a CA bundle path, as in requests."""

    def close(self) -> None:
        """Release the client's connections."""
        ...

    def check(self) -> str:
        """Prove the credentials, URL and network work; returns a line to show."""
        ...

    def users(self) -> Sequence[PbxUser]:
        """Every employee of the PBX."""
        ...

    def groups(self) -> Sequence[PbxGroup]:
        """Every ring group with its operators."""
        ...

    def callback(
        self,
        extension: str | int,
        to_number: str | int,
        *,
        line_number: str | int | None = None,
        from_number: str | int | None = None,
        sip_headers: Mapping[str, str] | None = None,
        command_id: str | None = None,
    ) -> CommandAccepted:
        """Click-to-call: ring employee `extension` first, then dial `to_number`."""
        ...

    def callback_group(
        self,
        from_: str | int,
        to: str | int,
        line_number: str | int,
        *,
        command_id: str | None = None,
    ) -> CommandAccepted:
        """Call on behalf of a ring group: `from_` group -> `to` number rings the group first."""
        ...

    def route(
        self,
        call_id: str,
        to_number: str | int,
        *,
        sip_headers: Mapping[str, str] | None = None,
        command_id: str | None = None,
    ) -> CommandAccepted:
        """Send a leg waiting in the IVR (or ringing) to an extension or number (Mango: 1 per 2 s)."""
        ...

    def recording_link(self, recording_id: str, action: Literal["play", "download"] = "play") -> str:
        """A short-lived link to a recording's file; fetch it at once, never store it."""
        ...


EventDecoder = Callable[[str, str], PbxEvent | None]
"""`decode(path, payload_text)`: the typed event for a stored notification (None for a path that is kept
but not interpreted); raises `PbxParseError` for a payload that is not valid."""

PbxClientFactory = Callable[[], PbxCommands]
"""Builds a PBX client when called (so none is built until a command is sent)."""

PbxClientForSettings = Callable[["Settings"], PbxCommands]
"""Builds a PBX client from the given settings (the effective ones, with values saved in the panel)."""
