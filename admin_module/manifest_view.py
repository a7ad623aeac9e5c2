"""What the panel shows of a connector's manifest: its title, what it does and needs, its docs."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.connector_api import Capability, Connector, Manifest

# How each capability reads in the panel, in both languages.
CAPABILITY_TITLES: dict[Capability, tuple[str, str]] = {
    Capability.LOOKUP: ("caller cards from the CRM", "карточка звонящего из CRM"),
    Capability.CALL_LOG: ("calls logged in the CRM", "звонки в журнале CRM"),
    Capability.POPUPS: ("popups in the CRM", "всплывающие окна в CRM"),
    Capability.MISSED_TASKS: ("a task for each missed call", "задача по каждому пропущенному"),
    Capability.LEADS: ("a lead for unknown callers", "лид для незнакомых номеров"),
    Capability.CLICK_TO_CALL: ("click to call from the CRM", "звонок по клику из CRM"),
    Capability.EMPLOYEE_IMPORT: ("employee import", "импорт сотрудников"),
    Capability.RESPONSIBLE: ("the caller's responsible manager", "ответственный менеджер звонящего"),
}


@dataclass(frozen=True)
class ConnectorCard:
    """A connector as a person sees it in the panel, in one language."""

    name: str
    title: str
    capabilities: tuple[str, ...]
    requirements: tuple[str, ...]
    docs: str  # a URL, or a page of callbridge's own docs (a path in its source, e.g. docs/connectors/x.md)

    @property
    def docs_is_link(self) -> bool:
        return self.docs.startswith(("https://", "http://"))


def card(cls: type[Connector], language: str) -> ConnectorCard:
    """The card of `cls`; a class without a manifest shows its name only."""
    manifest = cls.__dict__.get("manifest")
    if not isinstance(manifest, Manifest):
        return ConnectorCard(cls.name, cls.name, (), (), "")
    russian = language == "ru"
    capabilities = tuple(
        CAPABILITY_TITLES[c][1 if russian else 0] if c in CAPABILITY_TITLES else str(c)
        for c in sorted(manifest.capabilities)
    )
    return ConnectorCard(
        name=manifest.name,
        title=manifest.title(language),
        capabilities=capabilities,
        requirements=manifest.requirements,
        docs=manifest.docs,
    )
