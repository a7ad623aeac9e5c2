"""`DemoConnector`: looks numbers up in `[connectors.demo] contacts`, after `delay_ms`.

``contacts`` maps numbers (any format: "+7 916 123-45-67", "89161234567") to a name, or to a table with
``name``, ``company``, ``responsible`` (an extension), ``url``, ``deals`` and ``orders``. In the
environment it is JSON, or the short form ``79161234567=Ivan Petrov;79031112233=Anna``. Numbers match
as design.md says: E.164, then the national significant number, then the last 10 digits.
"""

from __future__ import annotations

import json
import time
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.connector_api import (
    CallerCard,
    CallEvent,
    Capability,
    Connector,
    Employee,
    Manifest,
    RefStore,
    Title,
)
from bridge.connector_api.phones import match_keys


class DemoContact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    company: str | None = None
    responsible: str | None = Field(default=None, description="the responsible manager's extension")
    responsible_name: str | None = None
    url: str | None = None
    deals: list[dict[str, Any]] = Field(default_factory=list)
    orders: list[dict[str, Any]] = Field(default_factory=list)


class DemoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    contacts: dict[str, DemoContact] = Field(default_factory=dict)
    delay_ms: float = Field(default=0.0, ge=0, le=60_000, description="how long each lookup takes")
    fail: bool = Field(default=False, description="every lookup raises (to show a failing CRM)")
    region: str = Field(default="RU", min_length=2, max_length=2)

    @field_validator("contacts", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                value = json.loads(text)
            else:
                value = {}
                for part in text.split(";"):
                    number, sep, name = part.partition("=")
                    if sep and number.strip() and name.strip():
                        value[number.strip()] = name.strip()
        if isinstance(value, dict):
            return {k: ({"name": v} if isinstance(v, str) else v) for k, v in value.items()}
        return value


SETTINGS_TITLES: dict[str, Title] = {
    "contacts": Title("Contacts", "Контакты"),
    "delay_ms": Title("Lookup delay, ms", "Задержка поиска, мс"),
    "fail": Title("Fail every lookup", "Ошибка при каждом поиске"),
    "region": Title("Default region", "Регион по умолчанию"),
}
"""Settings titles in both panel languages, by key (the manifest's `settings`)."""


class DemoConnector(Connector):
    """Answers lookups from its table; handles no events."""

    manifest: ClassVar[Manifest] = Manifest(
        name="demo",
        title=Title(en="Demo caller cards", ru="Демо-карточки звонящих"),
        docs="docs/connectors/demo.md",
        capabilities=frozenset({Capability.LOOKUP, Capability.RESPONSIBLE}),
        settings=SETTINGS_TITLES,
    )
    config_model: ClassVar[type[BaseModel]] = DemoConfig
    default_event_types: ClassVar[frozenset[str] | None] = frozenset()

    def __init__(self, config: DemoConfig | dict[str, Any]) -> None:
        if not isinstance(config, DemoConfig):
            config = DemoConfig.model_validate(config)
        super().__init__(config)
        self.settings: DemoConfig = config
        self.lookups = 0
        self._index: list[dict[str, DemoContact]] = [{}, {}, {}]
        for number, contact in config.contacts.items():
            keys = match_keys(number, config.region)
            for rank, key in enumerate((keys.e164, keys.national, keys.last10)):
                if key:
                    self._index[rank].setdefault(key, contact)

    def handle(self, event: CallEvent, refs: RefStore) -> None:
        return None

    def find(self, phone: str) -> DemoContact | None:
        keys = match_keys(phone, self.settings.region)
        for rank, key in enumerate((keys.e164, keys.national, keys.last10)):
            if key and key in self._index[rank]:
                return self._index[rank][key]
        return None

    def _answer(self, phone: str) -> DemoContact | None:
        """The contact after `delay_ms`, as a CRM answers (or the failure `fail` asks for)."""
        if self.settings.delay_ms:
            time.sleep(self.settings.delay_ms / 1000.0)
        if self.settings.fail:
            raise RuntimeError("the demo CRM is set to fail")
        return self.find(phone)

    def lookup(self, phone: str) -> CallerCard | None:
        self.lookups += 1
        contact = self._answer(phone)
        if contact is None:
            return None
        responsible = None
        if contact.responsible or contact.responsible_name:
            responsible = Employee(extension=contact.responsible, name=contact.responsible_name)
        return CallerCard(
            source=self.name,
            name=contact.name,
            company=contact.company,
            links=((f"{contact.name} in the demo CRM", contact.url),) if contact.url else (),
            responsible=responsible,
            details={"deals": contact.deals, "orders": contact.orders},
        )

    def responsible_for(self, phone: str) -> Employee | None:
        """The contact's `responsible` (an extension) for routing, after `delay_ms`."""
        contact = self._answer(phone)
        if contact is None or not (contact.responsible or contact.responsible_name):
            return None
        return Employee(extension=contact.responsible, name=contact.responsible_name)

    def check(self) -> str:
        return f"demo connector with {len(self.settings.contacts)} contact(s)"
