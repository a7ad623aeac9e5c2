"""The ``[connectors.retailcrm]`` settings (docs/connectors/retailcrm.md has the reference with every key)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from bridge.connector_api import Title
from bridge.connector_api.employees import EmployeeMapping

# retailCRM allows about 10 requests/s per account (retailcrm.md §3.1) and answers 503 beyond it. The client
# spaces requests evenly at `requests_per_second` (a token bucket, burst 1); at 10/s any delay of one request
# on its way would put 11 into some second, so the setting stays below the vendor's figure (at most 9) and the
# default (8) leaves a quarter of a second of jitter before a violation is possible.
VENDOR_MAX_RATE = 10.0
MAX_RATE = 9.0
DEFAULT_RATE = 8.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_CODE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _json_map(value: Any) -> Any:
    """From an environment variable a map arrives as a JSON object; from TOML values may be integers."""
    if isinstance(value, str):
        text = value.strip()
        value = json.loads(text) if text else {}
    if isinstance(value, dict):
        return {str(k).strip(): str(v).strip() for k, v in value.items()}
    return value


class RetailCrmConfig(EmployeeMapping):
    """The account, its API key, the integration module, what is sent, and the employee map (inherited from
    EmployeeMapping: ``users`` extension -> retailCRM user id, ``unmapped`` "skip" | "default",
    ``default_user``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(title="Account address", description="e.g. https://example.retailcrm.ru")
    api_key: SecretStr = Field(title="API key", description="Settings -> Integration -> API access keys")
    code: str = Field(
        default="callbridge",
        description="The integration module's code in retailCRM (lower-case letters, digits, '-', '_')",
    )
    module_name: str = Field(default="callbridge (Mango Office)", min_length=1, max_length=255)
    external_phones: dict[str, str] = Field(
        default_factory=dict, description="Mango line (digits) -> retailCRM site code"
    )
    popups: bool = True
    log_calls: bool = True
    missed_task: bool = True
    upload_recordings: bool = True
    register_on_start: bool = Field(default=True, description="register the telephony in retailCRM on start")
    task_text: str | None = Field(default=None, description="'{number}' is replaced by the caller's number")
    task_due_minutes: int = Field(default=30, ge=0, le=10080)
    timezone: str = Field(default="Europe/Moscow", description="the account's time zone (dates it reads)")
    default_region: str = Field(default="RU", min_length=2, max_length=2)
    popup_max_age_seconds: float = Field(default=120.0, ge=0, description="0 = never drop a late popup")
    last_orders: int = Field(default=3, ge=0, le=20, description="orders shown on the caller card")

    requests_per_second: float = Field(default=DEFAULT_RATE, gt=0, le=MAX_RATE)
    timeout: float = Field(default=10.0, gt=0, le=60)
    lookup_cache_seconds: float = Field(default=300.0, ge=0, le=3600)
    lookup_max_wait_seconds: float = Field(default=3.0, gt=0, le=30)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        text = value.strip().rstrip("/")
        if "://" not in text:
            text = "https://" + text
        parts = urlsplit(text)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError("should look like https://example.retailcrm.ru")
        if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
            raise ValueError("must use https (plain http is accepted for 127.0.0.1 only, for tests)")
        if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
            raise ValueError("should be the account's address only, e.g. https://example.retailcrm.ru")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("code")
    @classmethod
    def _code(cls, value: str) -> str:
        if not _CODE.match(value):
            raise ValueError("lower-case letters, digits, '-' and '_' only, at most 64 characters")
        return value

    @field_validator("users", "external_phones", mode="before")
    @classmethod
    def _maps(cls, value: Any) -> Any:
        return _json_map(value)

    @field_validator("default_user", mode="before")
    @classmethod
    def _default_user(cls, value: Any) -> Any:
        return str(value).strip() if isinstance(value, int) else value

    @field_validator("users")
    @classmethod
    def _user_ids_are_numbers(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [f"{ext} = {uid!r}" for ext, uid in value.items() if not uid.isdigit() or not ext]
        if bad:
            raise ValueError(f"retailCRM user ids are numbers (Settings -> Users): {', '.join(bad)}")
        return value

    @field_validator("external_phones")
    @classmethod
    def _lines(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [line for line in value if not re.sub(r"\D", "", line)]
        if bad:
            raise ValueError(f"lines are phone numbers: {', '.join(bad)}")
        return {re.sub(r"\D", "", line): site for line, site in value.items()}

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. Europe/Moscow)") from None
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _default_user_is_an_id(self) -> RetailCrmConfig:
        if self.default_user is not None and not self.default_user.isdigit():
            raise ValueError("default_user: should be a retailCRM user id (a number)")
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""


SETTINGS_TITLES: dict[str, Title] = {
    "url": Title("Account address", "Адрес аккаунта"),
    "api_key": Title("API key", "API-ключ"),
    "code": Title("Integration module code", "Код модуля интеграции"),
    "module_name": Title("Integration module name", "Название модуля интеграции"),
    "external_phones": Title("Line → site", "Линия → магазин"),
    "popups": Title("Popups on ringing", "Всплывающие окна при звонке"),
    "log_calls": Title("Log calls", "Записывать звонки"),
    "missed_task": Title("Task for a missed call", "Задача по пропущенному звонку"),
    "upload_recordings": Title("Link recordings", "Ссылки на записи"),
    "register_on_start": Title("Register the telephony on start", "Регистрировать телефонию при запуске"),
    "task_text": Title("Task text", "Текст задачи"),
    "task_due_minutes": Title("Task deadline, minutes", "Срок задачи, минут"),
    "timezone": Title("Account time zone", "Часовой пояс аккаунта"),
    "default_region": Title("Default region", "Регион по умолчанию"),
    "popup_max_age_seconds": Title(
        "Drop popups older than, seconds", "Не показывать уведомления старше, секунд"
    ),
    "last_orders": Title("Orders on the caller card", "Заказов в карточке звонящего"),
    "requests_per_second": Title("Requests per second", "Запросов в секунду"),
    "timeout": Title("Timeout, seconds", "Тайм-аут, секунд"),
    "lookup_cache_seconds": Title("Cache of caller cards, seconds", "Кэш карточек звонящих, секунд"),
    "lookup_max_wait_seconds": Title(
        "Lookup wait for a request slot, seconds", "Ожидание очереди при поиске, секунд"
    ),
}
"""Settings titles in both panel languages, by key (the manifest's `settings`)."""
