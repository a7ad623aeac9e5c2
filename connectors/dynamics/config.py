"""The ``[connectors.dynamics]`` settings (docs/connectors/dynamics.md has the reference with every key)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from bridge.connector_api import Title
from bridge.connector_api.employees import EMPLOYEE_SETTINGS, EmployeeMapping

# Service protection (dynamics.md, "Limits"): 6000 requests per user in a 5-minute sliding window, 52 at
# once; beyond that 429 with Retry-After. 6000 / 300 s = 20/s on average; the default stays at half of it.
VENDOR_REQUESTS = 6000
VENDOR_WINDOW_SECONDS = 300.0
VENDOR_MAX_RATE = VENDOR_REQUESTS / VENDOR_WINDOW_SECONDS
DEFAULT_RATE = 10.0
MICROSOFT_AUTHORITY = "https://login.microsoftonline.com"
_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$")


def _https_origin(value: str, example: str) -> str:
    """``https://host[:port]`` or a ValueError naming the expected shape (never plain http: TLS always)."""
    text = value.strip().rstrip("/")
    if "://" not in text:
        text = "https://" + text
    parts = urlsplit(text)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"must be an https address, e.g. {example}")
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        raise ValueError(f"should be the address only, e.g. {example}")
    return f"https://{parts.netloc}"


def _guid(value: str) -> str:
    return str(uuid.UUID(str(value).strip()))


class DynamicsConfig(EmployeeMapping):
    """The environment, the app registration's credentials, what is sent, and the employee map (inherited
    from EmployeeMapping: ``users`` extension -> systemuser id, ``unmapped``, ``default_user``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(
        title="Environment address",
        description="the Dataverse environment, e.g. https://example.crm4.dynamics.com",
    )
    tenant_id: str = Field(title="Tenant id", description="Microsoft Entra ID: the directory (tenant) id")
    client_id: str = Field(title="Client id", description="the app registration's application (client) id")
    client_secret: SecretStr = Field(title="Client secret", description="the app registration's secret value")
    authority_host: str = Field(
        default=MICROSOFT_AUTHORITY, description="where tokens are asked for (another one only for clouds)"
    )
    unknown_caller: Literal["lead", "contact", "none"] = Field(
        default="lead", description="what an unknown caller becomes: a lead, a contact, or nothing"
    )
    log_calls: bool = Field(default=True, description="one phone call activity per call")
    missed_task: bool = Field(default=True, description="a task to call back for a missed incoming call")
    task_due_minutes: int = Field(
        default=30, ge=0, le=10080, description="the task's due time after the call"
    )
    default_region: str = Field(default="RU", min_length=2, max_length=2)
    requests_per_second: float = Field(default=DEFAULT_RATE, gt=0, le=VENDOR_MAX_RATE)
    timeout: float = Field(default=10.0, gt=0, le=60)
    lookup_cache_seconds: float = Field(default=60.0, ge=0, le=3600, description="a found contact")
    lookup_max_wait_seconds: float = Field(default=3.0, gt=0, le=30)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _https_origin(value, "https://example.crm4.dynamics.com")

    @field_validator("authority_host")
    @classmethod
    def _authority(cls, value: str) -> str:
        return _https_origin(value, MICROSOFT_AUTHORITY)

    @field_validator("tenant_id")
    @classmethod
    def _tenant(cls, value: str) -> str:
        text = value.strip()
        if not _TENANT.match(text):
            raise ValueError("the directory (tenant) id: a GUID or a domain such as contoso.onmicrosoft.com")
        return text

    @field_validator("client_id")
    @classmethod
    def _client(cls, value: str) -> str:
        try:
            return _guid(value)
        except ValueError:
            raise ValueError("the application (client) id is a GUID") from None

    @field_validator("client_secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("should not be empty")
        return value

    @field_validator("users", mode="before")
    @classmethod
    def _users(cls, value: Any) -> Any:
        if isinstance(value, str):  # from an environment variable: a JSON object
            text = value.strip()
            value = json.loads(text) if text else {}
        if isinstance(value, dict):
            return {str(k).strip(): str(v).strip() for k, v in value.items()}
        return value

    @field_validator("users")
    @classmethod
    def _user_ids(cls, value: dict[str, str]) -> dict[str, str]:
        out, bad = {}, []
        for extension, user in value.items():
            try:
                out[extension] = _guid(user)
            except ValueError:
                bad.append(f"{extension} = {user!r}")
        if bad:
            raise ValueError(
                f"systemuser ids are GUIDs (Settings -> Users, the record's id): {', '.join(bad)}"
            )
        return out

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        return value.upper()

    @model_validator(mode="after")
    def _default_user_is_a_guid(self) -> DynamicsConfig:
        if self.default_user is not None:
            try:
                _guid(self.default_user)
            except ValueError:
                raise ValueError("default_user: should be a systemuser id (a GUID)") from None
        return self

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def authority(self) -> str:
        return f"{self.authority_host}/{self.tenant_id}"

    @property
    def microsoft_authority(self) -> bool:
        """Whether tokens come from Microsoft's own sign-in host (msal may then validate it online)."""
        return self.authority_host == MICROSOFT_AUTHORITY

    @property
    def scope(self) -> str:
        return f"{self.url}/.default"


SETTINGS_TITLES: dict[str, Title] = {
    "url": Title("Environment address", "Адрес среды"),
    "tenant_id": Title("Tenant id", "Идентификатор клиента (tenant)"),
    "client_id": Title("Application (client) id", "Идентификатор приложения"),
    "client_secret": Title("Client secret", "Секрет клиента"),
    "authority_host": Title("Sign-in host", "Адрес входа"),
    "unknown_caller": Title("Unknown caller becomes", "Неизвестный звонящий становится"),
    "log_calls": Title("Log calls", "Записывать звонки"),
    "missed_task": Title("Task for a missed call", "Задача по пропущенному звонку"),
    "task_due_minutes": Title("Task deadline, minutes", "Срок задачи, минут"),
    "default_region": Title("Default region", "Регион по умолчанию"),
    "requests_per_second": Title("Requests per second", "Запросов в секунду"),
    "timeout": Title("Timeout, seconds", "Тайм-аут, секунд"),
    "lookup_cache_seconds": Title("Cache of caller cards, seconds", "Кэш карточек звонящих, секунд"),
    "lookup_max_wait_seconds": Title(
        "Lookup wait for a request slot, seconds", "Ожидание очереди при поиске, секунд"
    ),
    **EMPLOYEE_SETTINGS,
}
"""Settings titles in both panel languages, by key (the manifest's `settings`)."""
