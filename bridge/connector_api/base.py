"""The one interface every connector implements, and the types it exchanges with the core."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel

from bridge.connector_api.events import CallEvent
from bridge.connector_api.manifest import Capability, Manifest


class DeliveryError(Exception):
    """A connector could not deliver an event. Subclasses say whether trying again can help."""


class RetryableDeliveryError(DeliveryError):
    """Try again later (network error, 5xx, rate limit). `retry_after` is the vendor's hint in seconds."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    """Trying again cannot help (bad credentials, rejected payload): the delivery is parked as dead."""


@dataclass(frozen=True)
class RateLimit:
    """A token bucket: `rate` requests per second sustained, `burst` at once."""

    rate: float
    burst: int = 1


@dataclass(frozen=True)
class Employee:
    """An employee as a CRM knows them, tied to a PBX extension where one is mapped."""

    extension: str | None
    name: str | None = None
    crm_user_id: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class CallerCard:
    """What a connector knows about a phone number, for popups and routing."""

    source: str
    name: str | None = None
    company: str | None = None
    links: tuple[tuple[str, str], ...] = ()  # (title, url)
    responsible: Employee | None = None
    details: dict[str, Any] = field(default_factory=dict)


class RefStore(Protocol):
    """Vendor ids a connector keeps per call (e.g. Bitrix24's CALL_ID), so `handle` is safe to repeat."""

    def get(self, entry_id: str, key: str) -> str | None: ...

    def put(self, entry_id: str, key: str, value: str) -> None: ...


class StateStore(Protocol):
    """A connector's own durable key/value state (OAuth tokens, cursors), shared by every process.

    `compare_and_set` writes only if the stored version is still `expected_version` (None = absent) and
    returns the new version, or None when another thread or process changed it first. Rotating
    single-use refresh tokens relies on this: the loser re-reads instead of overwriting.
    """

    def get(self, key: str) -> tuple[str, int] | None: ...

    def compare_and_set(self, key: str, value: str, expected_version: int | None) -> int | None: ...


class Originate(Protocol):
    """Place a click-to-call through the PBX: ring `extension`, then dial `number`; returns a command id."""

    def __call__(self, extension: str, number: str) -> str: ...


@dataclass
class ConnectorContext:
    """What the core hands a connector after building it (see `Connector.bind`)."""

    state: StateStore
    originate: Originate | None = None
    public_url: str | None = None  # the daemon's external base URL, for hook addresses shown to users
    # A signed, expiring link a CRM can keep to download a recording (`<public_url>/recordings/<id>?t=...`);
    # it gives None when there is no public URL or linking recordings is switched off.
    recording_url: Callable[[str], str | None] | None = None
    # A short-lived token for the WebSocket hub naming one extension: `hub_token(extension, ttl_seconds)`;
    # the core caps the lifetime (12 h at most) and raises ValueError for a malformed extension.
    hub_token: Callable[[str, float], str] | None = None


class _ClassDefault:
    """Marks a constructor argument left out: the class's default applies."""


_CLASS_DEFAULT: Any = _ClassDefault()


class Connector(ABC):
    """Base class of every connector.

    The class declares `manifest` (name, titles, docs page, `Capability` set) and `config_model`; the
    core reads only those and the instance's `rate_limit` and `event_types`. A connector whose limits
    depend on its settings passes them to ``super().__init__(config, rate_limit=..., event_types=...)``;
    otherwise the class defaults `default_rate_limit` and `default_event_types` (None = every CallEvent
    type) apply. Optional parts are the protocols in `bridge.connector_api.protocols`. Subclasses are
    registered under the entry point group ``callbridge.connectors`` (or built directly in tests).
    """

    manifest: ClassVar[Manifest]
    name: ClassVar[str]
    capabilities: ClassVar[frozenset[str]] = frozenset()
    config_model: ClassVar[type[BaseModel]]
    default_rate_limit: ClassVar[RateLimit | None] = None
    default_event_types: ClassVar[frozenset[str] | None] = None
    # What the dispatcher throttles to and which event types `wants` accepts, per instance.
    rate_limit: RateLimit | None = None
    event_types: frozenset[str] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        manifest = cls.__dict__.get("manifest")
        if isinstance(manifest, Manifest):
            cls.name = manifest.name
            cls.capabilities = frozenset(manifest.capabilities)
        # Older connectors set `rate_limit` / `event_types` on the class: they are the class defaults.
        declared = cls.__dict__
        if isinstance(declared.get("rate_limit"), RateLimit):
            cls.default_rate_limit = declared["rate_limit"]
        if isinstance(declared.get("event_types"), frozenset):
            cls.default_event_types = declared["event_types"]
        # ...and the class answers with its defaults until an instance says otherwise.
        if "default_rate_limit" in declared:
            cls.rate_limit = cls.default_rate_limit
        if "default_event_types" in declared:
            cls.event_types = cls.default_event_types

    def __init__(
        self,
        config: BaseModel,
        *,
        rate_limit: RateLimit | None = _CLASS_DEFAULT,
        event_types: frozenset[str] | None = _CLASS_DEFAULT,
    ) -> None:
        self.config = config
        self.context: ConnectorContext | None = None
        self.rate_limit = type(self).default_rate_limit if rate_limit is _CLASS_DEFAULT else rate_limit
        self.event_types = type(self).default_event_types if event_types is _CLASS_DEFAULT else event_types

    @classmethod
    def can(cls, capability: Capability) -> bool:
        """Whether this connector declares `capability` (the core asks for nothing else)."""
        return capability in cls.capabilities

    def bind(self, context: ConnectorContext) -> None:
        """Receive the core's services; called once by the daemon and each web worker after building."""
        self.context = context

    def wants(self, event: CallEvent) -> bool:
        """Whether an outbox row should be created for this event."""
        return self.event_types is None or event.type in self.event_types

    @abstractmethod
    def handle(self, event: CallEvent, refs: RefStore) -> None:
        """Deliver one event. Must be safe to repeat; raise a `DeliveryError` subclass on failure."""

    def lookup(self, phone: str) -> CallerCard | None:
        """A caller card for an E.164 number, or None. Connectors without the capability keep this."""
        return None

    def mapped_users(self) -> dict[str, str]:
        """Extension -> CRM user id as this connector maps employees now (for the panel). {} = no map."""
        return {}

    def responsible_for(self, phone: str) -> Employee | None:
        """The employee responsible for this caller, for routing. None when unknown."""
        return None

    def blueprint(self) -> Any | None:
        """A Flask blueprint for inbound hooks (click-to-call, install, OAuth), or None."""
        return None

    def check(self) -> str:
        """Test the credentials against the vendor; return a plain-words status or raise `DeliveryError`."""
        return "no check available"
