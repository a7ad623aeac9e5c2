"""The ``[connectors.webhook]`` settings."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, field_validator

from bridge.connector_api import CALL_EVENT_TYPES, Title

MIN_SECRET_LENGTH = 16


class WebhookConfig(BaseModel):
    """Where to POST events, the shared signing secret, which events, how fast."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: HttpUrl = Field(description="The receiver's http(s) URL; redirects are not followed.")
    secret: SecretStr = Field(description=f"HMAC-SHA256 key, at least {MIN_SECRET_LENGTH} characters.")
    event_types: list[str] | None = Field(
        default=None, description="Event types to send; left out means every type."
    )
    timeout: float = Field(default=10.0, gt=0, le=120, description="Seconds to wait for the answer.")
    rate_per_second: float = Field(default=20.0, gt=0, le=1000, description="Most requests per second.")

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"should be at least {MIN_SECRET_LENGTH} characters long")
        return value

    @field_validator("event_types", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # From an environment variable: "call.ended,call.missed" or a JSON list.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("event_types")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("should name at least one event type (leave it out to send every type)")
        unknown = [t for t in value if t not in CALL_EVENT_TYPES]
        if unknown:
            raise ValueError(
                f"unknown event type {', '.join(map(repr, unknown))}; known: {', '.join(CALL_EVENT_TYPES)}"
            )
        return list(dict.fromkeys(value))


SETTINGS_TITLES: dict[str, Title] = {
    "url": Title("Receiver URL", "Адрес получателя"),
    "secret": Title("Signing secret", "Секрет подписи"),
    "event_types": Title("Event types", "Типы событий"),
    "timeout": Title("Timeout, seconds", "Тайм-аут, секунд"),
    "rate_per_second": Title("Requests per second", "Запросов в секунду"),
}
"""Settings titles in both panel languages, by key (the manifest's `settings`)."""
