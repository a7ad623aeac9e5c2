"""Build the installed connectors and hand them the core's services (state, click-to-call).

Connector settings saved in the admin panel apply without a restart: `load_connectors` returns every
installed connector (the registry's entry points) wrapped in a `LiveConnector`, which re-reads the effective
``[connectors.<name>]`` section (the config file and environment, with the panel's saved values on top) at
most every `SECTIONS_TTL` seconds and rebuilds the connector when the section's fingerprint changes. A
connector whose section is absent or disabled at start is *dormant* (no build: it wants no events, looks
nothing up, its hooks answer 404, the dispatcher claims nothing for it) until the first refresh that finds it
enabled and valid builds and binds it. Every user of the mapping (dispatcher, processor, lookups, the web
workers' hooks) therefore talks to the connector as currently configured, in every process, within seconds;
`active` gives the ones that are not dormant, for what lists or checks connectors.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Engine

from bridge.commands.originate import OriginateService
from bridge.config import Settings
from bridge.connector_api import (
    CallerCard,
    CallEvent,
    Connector,
    ConnectorContext,
    Employee,
    RateLimit,
    RefStore,
    RetryableDeliveryError,
)
from bridge.connector_api.protocols import Dormant, TurnedOff
from bridge.memo import cached as memo_cached
from bridge.pbx.select import pbx_client
from bridge.realtime.auth import TokenSigner, signer_for
from bridge.recordings.links import links_for
from bridge.registry import ConnectorConfigError, available_connectors, build_connectors
from bridge.settings_store import SettingsStore
from bridge.store.connector_state import SqlStateStore

log = logging.getLogger("callbridge.connectors")

SECTIONS_TTL = 2.0

Sections = Mapping[str, Mapping[str, Any]]


mango_client = pbx_client
"""A client of the configured PBX from the current settings (`bridge.pbx.select.pbx_client`)."""


def originate_service(settings: Settings, engine: Engine) -> OriginateService:
    return OriginateService(
        engine,
        lambda: mango_client(settings),
        region=settings.phones.default_region,
        line_number=settings.mango.line_number or None,
    )


def fingerprint(section: Mapping[str, Any] | None) -> str:
    """A stable digest of a connector section, to tell whether its configuration changed."""
    text = json.dumps(section, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_enabled(section: Mapping[str, Any] | None) -> bool:
    """Whether a section turns its connector on (present and not ``enabled = false``)."""
    if section is None:
        return False
    value = section.get("enabled", True)
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes", "on"}
    return bool(value)


def effective_sections(settings: Settings, engine: Engine) -> Callable[[], Sections]:
    """The effective connector sections: the configured ones with the admin panel's saved values applied.

    Falls back to the configured sections when the panel's table cannot be read (an empty database).
    """
    store = SettingsStore(engine, settings)

    def read() -> Sections:
        try:
            return store.effective().connectors
        except Exception as exc:  # noqa: BLE001 - the configured sections still work
            log.debug("panel connector settings unreadable: %s", type(exc).__name__)
            return settings.connectors

    return read


def cached(source: Callable[[], Sections], seconds: float = SECTIONS_TTL) -> Callable[[], Sections]:
    """`source()` remembered for `seconds` (the sections' default TTL)."""
    return memo_cached(source, seconds)


def context_for(
    name: str, settings: Settings, engine: Engine, originate: OriginateService | None = None
) -> ConnectorContext:
    """The services a connector called `name` gets from the core."""
    return ConnectorContext(
        state=SqlStateStore(engine, name),
        originate=originate or originate_service(settings, engine),
        public_url=settings.http.public_url or None,
        recording_url=links_for(settings, engine).url,
        hub_token=_hub_tokens(settings, engine),
    )


HUB_TOKEN_MAX_SECONDS = 12 * 3600.0  # a working day: a connector's hub token never outlives it


def _hub_tokens(settings: Settings, engine: Engine) -> Callable[[str, float], str]:
    """`hub_token(extension, ttl)` for connectors: an employee's hub token, its lifetime kept to
    [1 s, `HUB_TOKEN_MAX_SECONDS`]; the signer (and the stored secret) is resolved on first use."""
    signers: list[TokenSigner] = []

    def issue(extension: str, ttl: float) -> str:
        if not signers:
            signers.append(signer_for(settings, engine))
        return signers[0].issue_employee(extension, min(max(1.0, float(ttl)), HUB_TOKEN_MAX_SECONDS))

    return issue


def build_bound(
    name: str, section: Mapping[str, Any], context: ConnectorContext, *, force: bool = False
) -> Connector | None:
    """Validate and build one connector from `section`, bound to `context`; None when it is disabled.

    `force` builds it even when the section says ``enabled = false`` (to test settings before turning the
    connector on). Raises `ConnectorConfigError` like `bridge.registry.build_connectors`.
    """
    options = dict(section)
    if force:
        options.pop("enabled", None)
    connector = build_connectors({name: options}).get(name)
    if connector is not None:
        connector.bind(context)
    return connector


class LiveConnector(Connector):
    """The connector called `name` as currently configured; rebuilt when its effective section changes.

    Reads of any attribute go to the current build, so code holding this object (the dispatcher, the
    processor, the lookups) always sees the saved settings. Until its section is first enabled and valid the
    connector is *dormant* (no build): it wants no events, answers no lookups, has no capabilities, no
    rate limit and no connector-specific methods, and its hooks answer 404. When the panel turns a built
    connector off, it wants no new events and answers no lookups; rows already queued are still delivered.
    A section that no longer validates keeps the last good build; one that never validated keeps the
    connector dormant (either is logged once, naming keys, never values).
    """

    def __init__(
        self,
        name: str,
        cls: type[Connector],
        sections: Callable[[], Sections],
        context: ConnectorContext,
        built_from: Sections,
        first: Connector | None = None,
    ) -> None:
        # Connector.__init__ is not called: `config` and `context` are read from the current build.
        self.name = name  # type: ignore[misc]
        self._cls = cls
        self._current = first
        self._sections = sections
        self._context = context
        self._lock = threading.Lock()
        self._seen: Sections = built_from
        # A dormant connector looks at `built_from` again on the first refresh (nothing to compare with).
        self._fingerprint = fingerprint(built_from.get(name)) if first is not None else ""
        self._enabled = first is not None

    def build(self) -> Connector | None:
        """The build for the effective section now (rebuilt at most once per change); None while dormant."""
        sections = self._sections()
        switched_off: Connector | None = None
        if sections is not self._seen or not self._fingerprint:
            with self._lock:
                if sections is not self._seen or not self._fingerprint:
                    switched_off = self._refresh(sections.get(self.name))
                    self._seen = sections
        if isinstance(switched_off, TurnedOff):  # outside the lock: it may ask its CRM
            _tell_turned_off(self.name, switched_off)
        return self._current

    def current(self) -> Connector:
        """The current build; raises `AttributeError` while the connector is dormant."""
        connector = self.build()
        if connector is None:
            raise AttributeError(f"the {self.name} connector is not enabled")
        return connector

    def _refresh(self, section: Mapping[str, Any] | None) -> Connector | None:
        """Follow a changed section; returns the build when this change turned the connector off."""
        digest = fingerprint(section)
        if digest == self._fingerprint:
            return None
        self._fingerprint = digest
        was_on = self._enabled and self._current is not None
        self._enabled = is_enabled(section)
        if not self._enabled or section is None:
            if was_on:
                log.info("connector turned off connector=%s", self.name)
                return self._current
            return None
        try:
            built = build_bound(self.name, section, self._context)
        except ConnectorConfigError as exc:  # problems name keys, never values
            state = "not applied" if self._current is not None else "invalid, the connector stays off"
            log.warning("connector settings %s connector=%s problems=%s", state, self.name, exc.problems)
            return None
        except Exception as exc:  # noqa: BLE001 - a failing build must not break the caller's pass
            log.warning("connector could not be built connector=%s error=%s", self.name, type(exc).__name__)
            return None
        if built is not None:
            log.info(
                "connector %s connector=%s",
                "rebuilt with new settings" if self._current is not None else "enabled",
                self.name,
            )
            self._current = built
        return None

    @property
    def dormant(self) -> bool:
        """Whether the connector has no build yet (never enabled with valid settings since the start)."""
        return self.build() is None

    @property
    def enabled(self) -> bool:
        """Whether the connector is built and its section turns it on."""
        return self.build() is not None and self._enabled

    # ------------------------------------------------------------------ the Connector interface

    @property  # type: ignore[override]
    def config(self) -> BaseModel:
        return self.current().config

    @property  # type: ignore[override]
    def context(self) -> ConnectorContext | None:
        connector = self.build()
        return connector.context if connector is not None else self._context

    @property  # type: ignore[override]
    def capabilities(self) -> frozenset[str]:
        connector = self.build()
        return connector.capabilities if connector is not None else frozenset()

    @property  # type: ignore[override]
    def config_model(self) -> type[BaseModel]:
        return self._cls.config_model

    @property  # type: ignore[override]
    def rate_limit(self) -> RateLimit | None:
        return getattr(self.build(), "rate_limit", None)

    @property  # type: ignore[override]
    def event_types(self) -> frozenset[str] | None:
        connector = self.build()
        return connector.event_types if connector is not None else frozenset()

    def bind(self, context: ConnectorContext) -> None:
        self._context = context
        connector = self.build()
        if connector is not None:
            connector.bind(context)

    def wants(self, event: CallEvent) -> bool:
        connector = self.build()
        return connector is not None and self._enabled and connector.wants(event)

    def handle(self, event: CallEvent, refs: RefStore) -> None:
        connector = self.build()
        if connector is None:  # the dispatcher claims nothing for a dormant connector
            raise RetryableDeliveryError(f"the {self.name} connector is not enabled")
        connector.handle(event, refs)

    def lookup(self, phone: str) -> CallerCard | None:
        connector = self.build()
        return connector.lookup(phone) if connector is not None and self._enabled else None

    def responsible_for(self, phone: str) -> Employee | None:
        connector = self.build()
        return connector.responsible_for(phone) if connector is not None and self._enabled else None

    def blueprint(self) -> Any | None:
        """Inbound hooks that follow the current build: its own blueprint, or 404 while it has none."""
        from bridge.connector_hooks import live_hooks  # Flask is only needed by the web app

        return live_hooks(self.name, self.build)

    def check(self) -> str:
        connector = self.build()
        return connector.check() if connector is not None else "not enabled, nothing to check"

    def __getattr__(self, attribute: str) -> Any:
        # Connector-specific methods (tokens, users, ...) of the current build; none while dormant.
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        return getattr(self.current(), attribute)

    def __repr__(self) -> str:
        return f"LiveConnector({self._current if self._current is not None else self.name!r})"


def _tell_turned_off(name: str, connector: TurnedOff) -> None:
    """`turned_off()`, its failure logged by kind only (a CRM's error may carry a token)."""
    try:
        connector.turned_off()
    except Exception as exc:  # noqa: BLE001 - the connector is off either way
        log.warning("connector could not undo its setup connector=%s error=%s", name, type(exc).__name__)


def _forward(method: str) -> Callable[..., Any]:
    default = getattr(Connector, method)

    def call(self: LiveConnector, *args: Any, **kwargs: Any) -> Any:
        connector = self.build()
        if connector is None:  # dormant: the interface's default answer
            return default(self, *args, **kwargs)
        return getattr(connector, method)(*args, **kwargs)

    call.__name__ = call.__qualname__ = method
    return call


# Methods the Connector interface gains later reach the current build too (not the base's default).
for _method, _value in vars(Connector).items():
    if callable(_value) and not _method.startswith("_") and _method not in vars(LiveConnector):
        setattr(LiveConnector, _method, _forward(_method))


def is_dormant(connector: Connector) -> bool:
    """Whether `connector` is a `LiveConnector` not enabled yet (users of the mapping skip those)."""
    return isinstance(connector, Dormant) and connector.dormant


def active(connectors: Mapping[str, Connector]) -> dict[str, Connector]:
    """The connectors of `connectors` that are not dormant now."""
    return {name: connector for name, connector in connectors.items() if not is_dormant(connector)}


def load_connectors(
    settings: Settings, engine: Engine, sections: Callable[[], Sections] | None = None
) -> dict[str, Connector]:
    """Every installed connector, kept up to date with saved settings: the enabled ones validated, built and
    bound to their context; the others dormant until an effective section enables them.

    `sections` gives the effective connector sections (default: `effective_sections`, re-read every
    `database.saved_settings_refresh_seconds`). Raises
    `ConnectorConfigError` when a section enabled at start does not validate (as `build_connectors`).
    """
    refresh = settings.database.saved_settings_refresh_seconds
    source = sections or cached(effective_sections(settings, engine), refresh)
    now = source()
    originate = originate_service(settings, engine)
    built = build_connectors(now)
    live: dict[str, Connector] = {}
    for name, cls in available_connectors().items():
        context = context_for(name, settings, engine, originate)
        first = built.get(name)
        if first is not None:
            first.bind(context)
        live[name] = LiveConnector(name, cls, source, context, now, first)
    return live
