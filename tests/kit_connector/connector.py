"""Notebook CRM: ringing and ended calls become notes; numbers are looked up in its contacts."""

from __future__ import annotations

from typing import Any, ClassVar

import requests
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bridge.connector_api import (
    CallerCard,
    CallEvent,
    Capability,
    Connector,
    Manifest,
    RateLimit,
    RefStore,
    Title,
    idempotency_key,
)
from bridge.connector_api.events import CALL_ENDED, CALL_RINGING
from bridge.connector_api.http import make_session, safe_host, send


class NotebookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(title="API address")
    token: SecretStr = Field(title="API token")
    rate_per_second: float = Field(default=5.0, gt=0, le=50)


class NotebookConnector(Connector):
    """Writes one note per wanted event (``POST /notes``) and answers lookups (``GET /contacts``)."""

    manifest: ClassVar[Manifest] = Manifest(
        name="notebook",
        title=Title(en="Notebook CRM", ru="Блокнот CRM"),
        docs="https://notebook.example.com/docs/callbridge",
        capabilities=frozenset({Capability.LOOKUP, Capability.CALL_LOG, Capability.POPUPS}),
        requirements=("a Notebook API token",),
        settings={
            "url": Title("API address", "Адрес API"),
            "token": Title("API token", "Токен API"),
            "rate_per_second": Title("Requests per second", "Запросов в секунду"),
        },
    )
    config_model: ClassVar[type[BaseModel]] = NotebookConfig
    default_event_types: ClassVar[frozenset[str] | None] = frozenset({CALL_RINGING, CALL_ENDED})

    def __init__(self, config: NotebookConfig) -> None:
        super().__init__(config, rate_limit=RateLimit(config.rate_per_second, 1))
        self.settings = config
        self._session = make_session(user_agent="callbridge-notebook")

    def __repr__(self) -> str:
        return f"NotebookConnector(url={safe_host(self.settings.url)!r})"

    def close(self) -> None:
        self._session.close()

    def _request(self, method: str, path: str, **kw: Any) -> requests.Response:
        token = self.settings.token.get_secret_value()
        headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
        return send(self._session, method, self.settings.url + path, headers=headers, timeout=5.0, **kw)

    def handle(self, event: CallEvent, refs: RefStore) -> None:
        if refs.get(event.entry_id, event.key) is not None:
            return  # delivered before: nothing to do again
        key = idempotency_key(self.name, event)
        note = {"entry_id": event.entry_id, "kind": event.type, "phone": event.customer_number}
        answer = self._request("POST", "/notes", json=note, headers={"Idempotency-Key": key})
        refs.put(event.entry_id, event.key, str(answer.json()["id"]))

    def lookup(self, phone: str) -> CallerCard | None:
        found = self._request("GET", "/contacts", params={"phone": phone}).json()
        return CallerCard(source=self.name, name=found[0]["name"]) if found else None
