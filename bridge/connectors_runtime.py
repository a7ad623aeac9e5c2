"""Build the configured connectors and hand them the core's services (state, click-to-call).

Connector settings saved in the admin panel apply without a restart: `load_connectors` returns each
connector wrapped in a `LiveConnector`, which re-reads the effective ``[connectors.<name>]`` section (the
config file and environment, with the panel's saved values on top) at most every `SECTIONS_TTL` seconds and
rebuilds the connector when the section's fingerprint changes. Every user of the mapping (dispatcher,
processor, lookups, the web workers' hooks) therefore talks to the connector as currently configured.
A connector that was not enabled when the process started needs a restart to join.
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
)
from bridge.memo import cached as memo_cached
from bridge.pbx.mango.client import MangoClient
from bridge.recordings.links import links_for
from bridge.registry import ConnectorConfigError, build_connectors
from bridge.store.connector_state import SqlStateStore

log = logging.getLogger("callbridge.connectors")

SECTIONS_TTL = 2.0

Sections = Mapping[str, Mapping[str, Any]]


def mango_client(settings: Settings) -> MangoClient:
    """A Mango command client from the current settings."""
    return MangoClient(
        settings.mango.api_key,
        settings.mango.api_salt.get_secret_value(),
        settings.mango.api_url,
        verify_tls=settings.mango.verify_tls,
    )


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
    from admin_module.settings_store import SettingsStore  # the panel's saved settings live there

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
    )


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

    Reads of any attribute go to the current build, so code holding this object (the dispatcher, a hook
    blueprint) always sees the saved settings. When the panel turns the connector off, it wants no new
    events and answers no lookups; rows already queued are still delivered. A section that no longer
    validates keeps the last good build (and is logged once).
    """

    def __init__(
        self,
        name: str,
        first: Connector,
        sections: Callable[[], Sections],
        context: ConnectorContext,
        built_from: Sections,
    ) -> None:
        # Connector.__init__ is not called: `config` and `context` are read from the current build.
        self.name = name  # type: ignore[misc]
        self._current = first
        self._sections = sections
        self._context = context
        self._lock = threading.Lock()
        self._seen: Sections = built_from
        self._fingerprint = fingerprint(built_from.get(name))
        self._enabled = True

    def current(self) -> Connector:
        """The build for the effective section now (rebuilt at most once per change)."""
        sections = self._sections()
        if sections is not self._seen:
            with self._lock:
                if sections is not self._seen:
                    self._refresh(sections.get(self.name))
                    self._seen = sections
        return self._current

    def _refresh(self, section: Mapping[str, Any] | None) -> None:
        digest = fingerprint(section)
        if digest == self._fingerprint:
            return
        self._fingerprint = digest
        self._enabled = is_enabled(section)
        if not self._enabled or section is None:
            log.info("connector turned off connector=%s", self.name)
            return
        try:
            built = build_bound(self.name, section, self._context)
        except ConnectorConfigError as exc:  # problems name keys, never values
            log.warning("connector settings not applied connector=%s problems=%s", self.name, exc.problems)
            return
        if built is not None:
            self._current = built
            log.info("connector rebuilt with new settings connector=%s", self.name)

    @property
    def enabled(self) -> bool:
        self.current()
        return self._enabled

    # ------------------------------------------------------------------ the Connector interface

    @property  # type: ignore[override]
    def config(self) -> BaseModel:
        return self.current().config

    @property  # type: ignore[override]
    def context(self) -> ConnectorContext | None:
        return self.current().context

    @property  # type: ignore[override]
    def capabilities(self) -> frozenset[str]:
        return self.current().capabilities

    @property  # type: ignore[override]
    def config_model(self) -> type[BaseModel]:
        return self.current().config_model

    @property  # type: ignore[override]
    def rate_limit(self) -> RateLimit | None:
        return getattr(self.current(), "rate_limit", None)

    @property  # type: ignore[override]
    def event_types(self) -> frozenset[str] | None:
        return self.current().event_types

    def bind(self, context: ConnectorContext) -> None:
        self._context = context
        self.current().bind(context)

    def wants(self, event: CallEvent) -> bool:
        connector = self.current()
        return self._enabled and connector.wants(event)

    def handle(self, event: CallEvent, refs: RefStore) -> None:
        self.current().handle(event, refs)

    def lookup(self, phone: str) -> CallerCard | None:
        connector = self.current()
        return connector.lookup(phone) if self._enabled else None

    def responsible_for(self, phone: str) -> Employee | None:
        connector = self.current()
        return connector.responsible_for(phone) if self._enabled else None

    def blueprint(self) -> Any | None:
        # Built by the connector's class with this object as `self`, so its hooks see rebuilt settings.
        return type(self.current()).blueprint(self)

    def check(self) -> str:
        return self.current().check()

    def __getattr__(self, attribute: str) -> Any:
        # Connector-specific methods (tokens, users, ...) of the current build.
        if attribute.startswith("_"):
            raise AttributeError(attribute)
        return getattr(self.current(), attribute)

    def __repr__(self) -> str:
        return f"LiveConnector({self._current!r})"


def _forward(method: str) -> Callable[..., Any]:
    def call(self: LiveConnector, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.current(), method)(*args, **kwargs)

    call.__name__ = call.__qualname__ = method
    return call


# Methods the Connector interface gains later reach the current build too (not the base's default).
for _method, _value in vars(Connector).items():
    if callable(_value) and not _method.startswith("_") and _method not in vars(LiveConnector):
        setattr(LiveConnector, _method, _forward(_method))


def load_connectors(
    settings: Settings, engine: Engine, sections: Callable[[], Sections] | None = None
) -> dict[str, Connector]:
    """Every enabled connector, validated, bound to its context, and kept up to date with saved settings.

    `sections` gives the effective connector sections (default: `effective_sections`, cached 2 s).
    """
    source = sections or cached(effective_sections(settings, engine))
    now = source()
    originate = originate_service(settings, engine)
    live: dict[str, Connector] = {}
    for name, connector in build_connectors(now).items():
        context = context_for(name, settings, engine, originate)
        connector.bind(context)
        live[name] = LiveConnector(name, connector, source, context, now)
    return live
