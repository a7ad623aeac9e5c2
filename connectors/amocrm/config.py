"""The ``[connectors.amocrm]`` settings (docs/connectors/amocrm.md has the reference with every key)."""

from __future__ import annotations

import json
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from bridge.connector_api import Title
from bridge.connector_api.employees import EmployeeMapping

# amoCRM allows 7 requests/s per account (amocrm.md §2.3). The client spaces requests at this rate and,
# whatever the jitter, never lets more than floor(rate) of them into any one second (client.RequestWindow).
VENDOR_MAX_RATE = 7.0
DEFAULT_RATE = 7.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


class AmoCrmConfig(EmployeeMapping):
    """Account, credentials, what to do with calls, and the employee map (inherited from EmployeeMapping:
    ``users`` extension -> amoCRM user id, ``unmapped`` "skip" | "default", ``default_user``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    account_url: str = Field(
        description="The account's address, e.g. https://example.amocrm.ru or https://example.kommo.com"
    )
    # Authorisation: a long-lived token, or OAuth (client_id + client_secret, then a code).
    long_lived_token: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    redirect_uri: str | None = Field(
        default=None, description="Defaults to <http.public_url>/connectors/amocrm/oauth/callback"
    )
    authorization_code: SecretStr | None = Field(
        default=None, description="A code from the integration's Keys tab (valid 20 minutes), exchanged once"
    )
    refresh_token: SecretStr | None = Field(
        default=None, description="Or a refresh token obtained elsewhere, used once to seed the stored tokens"
    )

    # What is sent.
    popup: bool = Field(
        default=True,
        description="amoCRM's own popup (POST /api/v2/events); off when the users have a widget popup",
    )
    log_calls: bool = True
    unsorted_for_unknown: bool = True
    missed_task: bool = True
    source: str = Field(default="Mango Office", min_length=1, max_length=100)
    service_code: str = Field(default="callbridge", min_length=1, max_length=100)
    source_uid: str = Field(default="callbridge-mango", min_length=1, max_length=100)
    pipeline_id: int | None = Field(default=None, gt=0)
    language: Literal["ru", "en"] = "ru"
    task_text: str | None = Field(default=None, description="'{number}' is replaced by the caller's number")
    task_due_minutes: int = Field(default=30, ge=1, le=10080)
    popup_max_age_seconds: float = Field(default=120.0, ge=0, description="0 = never drop a late popup")
    default_region: str = Field(default="RU", min_length=2, max_length=2)

    # How.
    requests_per_second: float = Field(default=DEFAULT_RATE, gt=0, le=VENDOR_MAX_RATE)
    timeout: float = Field(default=10.0, gt=0, le=60)
    lookup_cache_seconds: float = Field(default=300.0, ge=0, le=3600, description="a found contact")
    lookup_miss_cache_seconds: float = Field(default=10.0, ge=0, le=3600, description="a number not found")
    lookup_max_wait_seconds: float = Field(
        default=3.0, gt=0, le=30, description="how long a caller-card lookup may wait for a request slot"
    )

    @field_validator("account_url")
    @classmethod
    def _account_url(cls, value: str) -> str:
        text = value.strip().rstrip("/")
        if "://" not in text:
            text = "https://" + text
        parts = urlsplit(text)
        host = parts.hostname or ""
        if parts.scheme not in ("http", "https") or not host:
            raise ValueError("should look like https://example.amocrm.ru")
        if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
            raise ValueError("must use https (plain http is accepted for 127.0.0.1 only, for tests)")
        if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
            raise ValueError("should be the account's address only, e.g. https://example.amocrm.ru")
        return f"{parts.scheme}://{parts.netloc}"

    @field_validator("users", mode="before")
    @classmethod
    def _users(cls, value: Any) -> Any:
        # From an environment variable: a JSON object {"101": 1234567}. From TOML: ids may be integers.
        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text else {}
        if isinstance(value, dict):
            return {str(k).strip(): str(v).strip() for k, v in value.items()}
        return value

    @field_validator("default_user", mode="before")
    @classmethod
    def _default_user(cls, value: Any) -> Any:
        return str(value).strip() if isinstance(value, int) else value

    @field_validator("users")
    @classmethod
    def _user_ids_are_numbers(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [f"{ext} = {uid!r}" for ext, uid in value.items() if not uid.isdigit() or not ext]
        if bad:
            raise ValueError(f"amoCRM user ids are numbers (see GET /api/v4/users): {', '.join(bad)}")
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _one_auth_mode(self) -> AmoCrmConfig:
        if self.default_user is not None and not self.default_user.isdigit():
            raise ValueError("default_user: should be an amoCRM user id (a number)")
        keys = self.client_id is not None or self.client_secret is not None
        if self.long_lived_token is None and not keys:
            raise ValueError(
                "no credentials: set long_lived_token (private integration -> Keys and scopes), "
                "or client_id and client_secret for OAuth"
            )
        if self.long_lived_token is None and not (self.client_id and self.client_secret):
            raise ValueError("OAuth needs both client_id and client_secret")
        # Beside a long-lived token, the integration's secret key only checks the widget's one-time tokens.
        if self.long_lived_token is not None and self.client_id and not self.client_secret:
            raise ValueError(
                "client_id is set without client_secret: the widget needs the integration's secret key"
            )
        if self.long_lived_token is not None and (self.authorization_code or self.refresh_token):
            raise ValueError(
                "authorization_code and refresh_token are for OAuth (without long_lived_token; "
                "set client_id and client_secret)"
            )
        if self.redirect_uri is not None and not self.redirect_uri.startswith(("https://", "http://")):
            raise ValueError("redirect_uri: should be an http(s) URL")
        return self

    @property
    def oauth(self) -> bool:
        return self.long_lived_token is None

    @property
    def widget(self) -> bool:
        """Whether the widget's endpoints are served: they need the integration's secret key."""
        return self.client_secret is not None

    @property
    def origin(self) -> str:
        """The account's web origin (``scheme://host[:port]``): the only one CORS lets in."""
        return self.account_url

    @property
    def host(self) -> str:
        return urlsplit(self.account_url).hostname or ""


SETTINGS_TITLES: dict[str, Title] = {
    "account_url": Title("Account address", "Адрес аккаунта"),
    "long_lived_token": Title("Long-lived token", "Долгосрочный токен"),
    "client_id": Title("Integration ID", "ID интеграции"),
    "client_secret": Title("Integration secret key", "Секретный ключ интеграции"),
    "redirect_uri": Title("Redirect URI", "Адрес перенаправления"),
    "authorization_code": Title("Authorization code", "Код авторизации"),
    "refresh_token": Title("Refresh token", "Токен обновления"),
    "popup": Title("Popups on ringing", "Уведомления о звонке"),
    "log_calls": Title("Log calls", "Записывать звонки"),
    "unsorted_for_unknown": Title("Unsorted leads for unknown callers", "Неразобранное для неизвестных"),
    "missed_task": Title("Task for a missed call", "Задача по пропущенному звонку"),
    "source": Title("Call source", "Источник звонка"),
    "service_code": Title("Service code", "Код сервиса"),
    "source_uid": Title("Source UID", "UID источника"),
    "pipeline_id": Title("Pipeline", "Воронка"),
    "language": Title("Language of texts", "Язык текстов"),
    "task_text": Title("Task text", "Текст задачи"),
    "task_due_minutes": Title("Task deadline, minutes", "Срок задачи, минут"),
    "popup_max_age_seconds": Title(
        "Drop popups older than, seconds", "Не показывать уведомления старше, секунд"
    ),
    "default_region": Title("Default region", "Регион по умолчанию"),
    "requests_per_second": Title("Requests per second", "Запросов в секунду"),
    "timeout": Title("Timeout, seconds", "Тайм-аут, секунд"),
    "lookup_cache_seconds": Title("Cache of found contacts, seconds", "Кэш найденных контактов, секунд"),
    "lookup_miss_cache_seconds": Title(
        "Cache of unknown numbers, seconds", "Кэш неизвестных номеров, секунд"
    ),
    "lookup_max_wait_seconds": Title(
        "Lookup wait for a request slot, seconds", "Ожидание очереди при поиске, секунд"
    ),
}
"""Settings titles in both panel languages, by key (the manifest's `settings`)."""
