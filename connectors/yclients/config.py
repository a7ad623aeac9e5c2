"""The ``[connectors.yclients]`` settings (docs/connectors/yclients.md has the reference with every key)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from bridge.connector_api import Title

# YClients allows 200 requests a minute (5 a second at most) per address (yclients.md). The client sends
# at most `requests_per_second` with a burst of 1; the default keeps 10 % under the minute's average.
VENDOR_PER_MINUTE = 200
VENDOR_PER_SECOND = 5
VENDOR_MAX_RATE = VENDOR_PER_MINUTE / 60
DEFAULT_RATE = 3.0
DEFAULT_API_URL = "https://api.yclients.com"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class YClientsConfig(BaseModel):
    """The partner's and the network's credentials, the branch, and the staff map."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_url: str = Field(default=DEFAULT_API_URL, description="YClients' API address")
    partner_token: SecretStr = Field(description="The partner (developer) token: Authorization: Bearer")
    crm_token: SecretStr = Field(
        description="From the network's settings: Telephony -> Integration (sent in every telephony request)"
    )
    company_id: int = Field(gt=0, description="The branch (company) whose clients and visits are read")
    user_token: SecretStr | None = Field(
        default=None, description="A YClients user's token: client search and visits (caller card, routing)"
    )
    staff: dict[str, str] = Field(
        default_factory=dict, description="Mango extension -> YClients staff id (for the usual staff)"
    )
    popup: bool = Field(default=True, description="Show incoming calls in YClients while they ring")
    log_calls: bool = Field(default=True, description="Write one history row per call")
    popup_max_age_seconds: float = Field(default=120.0, ge=0, description="0 = never drop a late popup")
    visits_days: int = Field(default=365, ge=7, le=3650, description="How far back visits are read")
    default_region: str = Field(default="RU", min_length=2, max_length=2)
    requests_per_second: float = Field(default=DEFAULT_RATE, gt=0, le=VENDOR_MAX_RATE)
    timeout: float = Field(default=10.0, gt=0, le=60)
    lookup_cache_seconds: float = Field(default=300.0, ge=0, le=3600, description="a found client")
    lookup_miss_cache_seconds: float = Field(default=10.0, ge=0, le=3600, description="a number not found")
    lookup_max_wait_seconds: float = Field(
        default=3.0, gt=0, le=30, description="how long a caller-card lookup may wait for a request slot"
    )

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        text = value.strip().rstrip("/")
        if "://" not in text:
            text = "https://" + text
        parts = urlsplit(text)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError("should look like https://api.yclients.com")
        if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
            raise ValueError("must use https (plain http is accepted for 127.0.0.1 only, for tests)")
        if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
            raise ValueError("should be the API's address only, e.g. https://api.yclients.com")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("partner_token", "crm_token", "user_token")
    @classmethod
    def _not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("should not be empty")
        return value

    @field_validator("staff", mode="before")
    @classmethod
    def _staff(cls, value: Any) -> Any:
        # From an environment variable: a JSON object {"201": 12}. From TOML: ids may be integers.
        if isinstance(value, str):
            text = value.strip()
            try:
                value = json.loads(text) if text else {}
            except ValueError:
                raise ValueError('should be a JSON object like {"201": "12"}') from None
        if isinstance(value, dict):
            return {str(k).strip(): str(v).strip() for k, v in value.items()}
        return value

    @field_validator("staff")
    @classmethod
    def _staff_ids(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [f"{ext} = {sid!r}" for ext, sid in value.items() if not ext or not sid.isdigit()]
        if bad:
            raise ValueError(f"YClients staff ids are numbers (see GET /api/v1/staff/{{company_id}}): {bad}")
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        return value.upper()

    @property
    def host(self) -> str:
        return urlsplit(self.api_url).hostname or ""


SETTINGS_TITLES: dict[str, Title] = {
    "api_url": Title("API address", "Адрес API"),
    "partner_token": Title("Partner token", "Токен партнёра"),
    "crm_token": Title("Telephony integration token (crm_token)", "Токен интеграции телефонии (crm_token)"),
    "company_id": Title("Branch (company) ID", "ID филиала (компании)"),
    "user_token": Title("User token", "Токен пользователя"),
    "staff": Title("Extension → YClients staff", "Добавочный → сотрудник YClients"),
    "popup": Title("Popups on ringing", "Уведомления о звонке"),
    "log_calls": Title("Call history", "История звонков"),
    "popup_max_age_seconds": Title(
        "Drop popups older than, seconds", "Не показывать уведомления старше, секунд"
    ),
    "visits_days": Title("Visits read for the card, days back", "Визиты для карточки, дней назад"),
    "default_region": Title("Default region", "Регион по умолчанию"),
    "requests_per_second": Title("Requests per second", "Запросов в секунду"),
    "timeout": Title("Timeout, seconds", "Тайм-аут, секунд"),
    "lookup_cache_seconds": Title("Cache of found clients, seconds", "Кэш найденных клиентов, секунд"),
    "lookup_miss_cache_seconds": Title(
        "Cache of unknown numbers, seconds", "Кэш неизвестных номеров, секунд"
    ),
    "lookup_max_wait_seconds": Title(
        "Lookup wait for a request slot, seconds", "Ожидание очереди при поиске, секунд"
    ),
}
"""Settings titles in both panel languages, by key (the manifest's `settings`)."""

__all__ = ["DEFAULT_RATE", "SETTINGS_TITLES", "VENDOR_PER_MINUTE", "VENDOR_PER_SECOND", "YClientsConfig"]
