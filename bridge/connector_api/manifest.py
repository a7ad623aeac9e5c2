"""What a connector is and can do, declared once on its class and read by the core and the panel."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Capability(StrEnum):
    """Something a connector does. The core asks a connector only for what its manifest declares.

    Values are the words `callbridge connectors list` prints (and the strings older connectors used).
    """

    LOOKUP = "lookup"  # `lookup()` answers caller cards; the lookup service asks only these connectors
    CALL_LOG = "log_call"  # ended calls are written to the CRM
    POPUPS = "popup"  # ringing calls are shown to the employee in the CRM
    MISSED_TASKS = "missed_task"  # a missed call leaves a task to call back
    LEADS = "create_lead"  # an unknown caller becomes a lead
    CLICK_TO_CALL = "click_to_call"  # the CRM asks the PBX to place a call (through `blueprint()` hooks)
    EMPLOYEE_IMPORT = "import-employees"  # the connector implements `EmployeeImporter`
    RESPONSIBLE = "responsible"  # `responsible_for()` names the caller's manager for routing


@dataclass(frozen=True)
class Title:
    """A short text in both panel languages."""

    en: str
    ru: str

    def __call__(self, language: str) -> str:
        return self.ru if language == "ru" else self.en


@dataclass(frozen=True)
class Manifest:
    """A connector's identity card: `Connector.manifest`.

    `name` is the entry point name, the ``[connectors.<name>]`` section and the outbox's connector column;
    `docs` is the page (relative to the repository, or a URL) that explains setup and carries the quality
    checklist; `requirements` are what a person needs before enabling it, in plain words; `settings` titles
    every settings key (the config model's field, by alias where it has one) in both panel languages.
    """

    name: str
    title: Title
    docs: str
    capabilities: frozenset[Capability] = field(default_factory=frozenset)
    requirements: tuple[str, ...] = ()
    settings: Mapping[str, Title] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").isalnum() or not self.name.islower():
            raise ValueError(f"a connector name is lower-case letters, digits and '_': {self.name!r}")
        unknown = [c for c in self.capabilities if not isinstance(c, Capability)]
        if unknown:
            raise ValueError(f"capabilities must be Capability members, not {unknown!r}")

    def can(self, capability: Capability) -> bool:
        return capability in self.capabilities
