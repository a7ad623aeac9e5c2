"""The ``[connectors.bitrix24]`` settings (docs/connectors/bitrix24.md has the reference with every key)."""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from bridge.connector_api import Title
from bridge.connector_api.employees import EmployeeMapping

# Bitrix24 limits.md: a leaky bucket per portal (and per source IP) that drains 2 requests/s and blocks
# above 50 (Enterprise: 5/s and 250).
VENDOR_RATE = 2.0
VENDOR_BURST = 50
OAUTH_TOKEN_URL = "https://oauth.bitrix.info/oauth/token/"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_TASK_TITLE = "Missed call from {number}"
DEFAULT_TASK_DESCRIPTION = "Call back {number}: the call at {time} was not answered."


class Bitrix24Config(EmployeeMapping):
    """Portal, credentials, what to do with calls, and the employee map (inherited from EmployeeMapping:
    ``users`` extension -> Bitrix24 user ID, ``unmapped`` "skip" | "default", ``default_user``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    portal: str = Field(
        description="The portal's address, e.g. example.bitrix24.ru or https://crm.example.com"
    )
    # Authorisation. "app": a local server application (OAuth tokens arrive at the install handler);
    # "webhook": an incoming webhook URL only. Left out: "webhook" when only webhook_url is set, else "app".
    auth: Literal["app", "webhook"] | None = None
    client_id: str | None = Field(default=None, description="The local application's client_id (app code)")
    client_secret: SecretStr | None = Field(default=None, description="The local application's key")
    webhook_url: SecretStr | None = Field(
        default=None, description="https://<portal>/rest/<user_id>/<secret>/: for the methods that accept it"
    )
    oauth_url: str = Field(default=OAUTH_TOKEN_URL, description="The OAuth server's token endpoint")
    application_token: SecretStr | None = Field(
        default=None, description="Pin the application_token (else the one from the install event is kept)"
    )

    # What is sent.
    crm_create: bool = Field(default=True, description="CRM_CREATE: create a lead for unknown numbers")
    crm_source: str | None = Field(default=None, description="CRM_SOURCE (a STATUS_ID of the SOURCE list)")
    send_line_number: bool = Field(default=True, description="Pass the Mango line as LINE_NUMBER")
    lines: list[str] = Field(
        default_factory=list, description="Lines to add with externalLine.add at install"
    )
    popups: bool = Field(default=True, description="show/hide the call card to ring-group members")
    missed_task: bool = True
    missed_task_title: str = Field(default=DEFAULT_TASK_TITLE, min_length=1, max_length=400)
    missed_task_description: str = Field(default=DEFAULT_TASK_DESCRIPTION, max_length=4000)
    missed_task_deadline_minutes: int = Field(default=60, ge=1, le=43200)
    attach_records: bool = True
    pass_phone_inner: bool = Field(
        default=False,
        description="For unmapped extensions pass USER_PHONE_INNER and let Bitrix24 find the user",
    )
    auto_import: bool = Field(default=True, description="Import the employee map with user.get when needed")
    default_region: str = Field(default="RU", min_length=2, max_length=2)

    # How.
    rate_per_second: float = Field(default=VENDOR_RATE, gt=0, le=50)
    burst: int = Field(default=VENDOR_BURST, ge=1, le=1000)
    timeout: float = Field(default=20.0, gt=0, le=60)
    lookup_cache_seconds: float = Field(default=60.0, ge=0, le=3600)

    @field_validator("portal")
    @classmethod
    def _portal(cls, value: str) -> str:
        return _base_url(value, "should look like example.bitrix24.ru or https://example.bitrix24.ru")

    @field_validator("oauth_url")
    @classmethod
    def _oauth_url(cls, value: str) -> str:
        text = value.strip()
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("should be an https URL, e.g. https://oauth.bitrix.info/oauth/token/")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
            raise ValueError("must use https (plain http is accepted for 127.0.0.1 only, for tests)")
        return text

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        parts = urlsplit(text)
        segments = [s for s in parts.path.split("/") if s]
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or len(segments) < 3
            or segments[0] != "rest"
            or not segments[1].isdigit()
        ):
            # The value is a secret: say what is wrong without repeating it.
            raise ValueError("should look like https://<portal>/rest/<user id>/<secret>/")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
            raise ValueError("must use https (plain http is accepted for 127.0.0.1 only, for tests)")
        base = f"{parts.scheme}://{parts.netloc}/rest/{segments[1]}/{segments[2]}/"
        return SecretStr(base)

    @field_validator("users", mode="before")
    @classmethod
    def _users(cls, value: Any) -> Any:
        # From an environment variable: '{"101": "1"}' or "101=1,102=7".
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("{"):
                return json.loads(text)
            pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
            if any(len(p) != 2 for p in pairs):
                raise ValueError("should be JSON or extension=user_id pairs, e.g. 101=1,102=7")
            return {k.strip(): v.strip() for k, v in pairs}
        if isinstance(value, dict):
            return {str(k): str(v) for k, v in value.items()}
        return value

    @field_validator("lines", mode="before")
    @classmethod
    def _lines(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("default_user")
    @classmethod
    def _default_user(cls, value: str | None) -> str | None:
        if value is not None and not str(value).strip().isdigit():
            raise ValueError("should be a Bitrix24 user ID (a number)")
        return value

    @model_validator(mode="after")
    def _auth_complete(self) -> Bitrix24Config:
        bad = [ext for ext, user in self.users.items() if not str(user).isdigit()]
        if bad:
            raise ValueError(
                f"users: the Bitrix24 user ID of extension(s) {', '.join(bad)} should be a number"
            )
        if self.auth_mode == "webhook" and self.webhook_url is None:
            raise ValueError(
                "auth = 'webhook' needs webhook_url (Developer resources -> Other -> Inbound webhook)"
            )
        if (self.client_id is None) != (self.client_secret is None):
            raise ValueError(
                "client_id and client_secret go together (both from the local application's card)"
            )
        if self.webhook_url is not None:
            hook = urlsplit(self.webhook_url.get_secret_value())
            if f"{hook.scheme}://{hook.netloc}" != self.portal:
                raise ValueError("webhook_url belongs to another portal than `portal`")
        return self

    @property
    def auth_mode(self) -> str:
        """ "app" or "webhook" (see `auth`)."""
        if self.auth is not None:
            return self.auth
        if self.webhook_url is not None and self.client_id is None:
            return "webhook"
        return "app"

    @property
    def rest_url(self) -> str:
        """``<portal>/rest/``: where OAuth calls go."""
        return self.portal + "/rest/"

    @property
    def host(self) -> str:
        return urlsplit(self.portal).netloc


def _base_url(value: str, message: str) -> str:
    text = value.strip().rstrip("/")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ValueError(message)
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        raise ValueError("must use https (plain http is accepted for 127.0.0.1 only, for tests)")
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        raise ValueError(message)
    return f"{parts.scheme}://{parts.netloc}"


SETTINGS_TITLES: dict[str, Title] = {
    "portal": Title("Portal address", "Адрес портала"),
    "auth": Title("Sign-in mode", "Способ входа"),
    "client_id": Title("Application client_id", "client_id приложения"),
    "client_secret": Title("Application key", "Ключ приложения"),
    "webhook_url": Title("Inbound webhook URL", "Адрес входящего вебхука"),
    "oauth_url": Title("OAuth server", "Сервер OAuth"),
    "application_token": Title("Application token", "Токен приложения"),
    "crm_create": Title("Create leads for unknown numbers", "Создавать лиды для неизвестных номеров"),
    "crm_source": Title("Lead source", "Источник лида"),
    "send_line_number": Title("Pass the line number", "Передавать номер линии"),
    "lines": Title("Lines to add at install", "Линии, добавляемые при установке"),
    "popups": Title("Call cards", "Карточки звонков"),
    "missed_task": Title("Task for a missed call", "Задача по пропущенному звонку"),
    "missed_task_title": Title("Missed-call task title", "Заголовок задачи по пропущенному"),
    "missed_task_description": Title("Missed-call task text", "Текст задачи по пропущенному"),
    "missed_task_deadline_minutes": Title("Task deadline, minutes", "Срок задачи, минут"),
    "attach_records": Title("Attach recordings", "Прикреплять записи"),
    "pass_phone_inner": Title(
        "Let Bitrix24 find unmapped users", "Искать несопоставленных пользователей в Битрикс24"
    ),
    "auto_import": Title("Import employees automatically", "Импортировать сотрудников автоматически"),
    "default_region": Title("Default region", "Регион по умолчанию"),
    "rate_per_second": Title("Requests per second", "Запросов в секунду"),
    "burst": Title("Burst", "Всплеск запросов"),
    "timeout": Title("Timeout, seconds", "Тайм-аут, секунд"),
    "lookup_cache_seconds": Title("Lookup cache, seconds", "Кэш поиска, секунд"),
}
"""Settings titles in both panel languages, by key (the manifest's `settings`)."""
