"""The typed settings. Every key maps to an environment variable `CALLBRIDGE_<SECTION>_<KEY>`."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# Mango Office's published notification source addresses (mango.md §1).
MANGO_SOURCE_IPS: tuple[str, ...] = (
    "81.88.80.132",
    "81.88.80.133",
    "81.88.82.36",
    "81.88.82.44",
    "81.88.82.45",
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MangoSettings(_Section):
    """The Mango Office VPBX API connector (cabinet: Integrations -> API connector)."""

    api_key: str = ""
    api_salt: SecretStr = SecretStr("")
    api_url: str = "https://app.mango-office.ru/vpbx/"
    verify_tls: bool = True
    # Caller-ID line for click-to-call (a DID, 7-800 number or SIP line name); empty = the employee's default.
    line_number: str = ""
    # Source-IP allow-list for webhooks: empty = open; "mango" = Mango's published addresses; or a list.
    allowed_ips: list[str] = Field(default_factory=list)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    # A command accepted (or maybe sent) with no asynchronous result after this long is marked timed_out.
    command_timeout_seconds: float = Field(default=120.0, gt=0)

    @field_validator("api_url")
    @classmethod
    def _url_with_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value if value.endswith("/") else value + "/"

    @field_validator("allowed_ips", mode="before")
    @classmethod
    def _expand_preset(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and "mango" in value:
            value = [v for v in value if v != "mango"] + list(MANGO_SOURCE_IPS)
        return value


class HttpSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    workers: int = Field(default=2, ge=1, le=64)
    threads: int = Field(default=4, ge=1, le=256)
    # Trust X-Forwarded-For from this many proxies (for the IP allow-list behind a reverse proxy).
    trusted_proxies: int = Field(default=0, ge=0, le=5)
    # A client must send its request headers, and then its body, within these many seconds (slow clients).
    header_timeout_seconds: float = Field(default=5.0, ge=0.1, le=300)
    body_timeout_seconds: float = Field(default=10.0, ge=0.1, le=300)
    # The address users and vendors reach callbridge at, e.g. https://calls.example.com (for hook URLs).
    public_url: str = ""


class WsSettings(_Section):
    """The WebSocket hub for live popups (runs in the `callbridge run` parent process)."""

    enabled: bool = True
    # Listen address; empty = the same as http.host.
    host: str = ""
    port: int = Field(default=8081, ge=0, le=65535)
    # The address browsers connect to, e.g. wss://calls.example.com/ws behind a reverse proxy;
    # empty = ws://<the operator page's host>:<port>/ws.
    public_url: str = ""
    # An application heartbeat frame every this many seconds (browsers cannot see protocol pings).
    heartbeat_seconds: float = Field(default=25.0, gt=0, le=3600)
    # A client that reconnects with its last event id gets what it missed within this window.
    resume_seconds: float = Field(default=300.0, ge=0, le=3600)
    # Lifetime of the tokens the operator page gets after login.
    token_ttl_seconds: int = Field(default=12 * 3600, ge=60, le=90 * 86400)
    max_clients: int = Field(default=10_000, ge=1, le=1_000_000)


class SecuritySettings(_Section):
    # Signs WebSocket/operator tokens. Empty: a random key is generated once and kept in the store,
    # so every process and instance sharing the database uses the same one.
    secret_key: SecretStr = SecretStr("")


class RedisSettings(_Section):
    # redis://[:password@]host:6379/0. Set it when several instances share a PostgreSQL database, so
    # every instance's WebSocket hub gets every call event.
    url: str = ""
    channel: str = Field(default="callbridge:realtime", min_length=1, max_length=200)

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class LookupSettings(_Section):
    """Caller cards: every connector that can look a number up is asked in parallel."""

    # How long a ringing popup waits for the card; a card that comes later follows as `call.card`.
    deadline_ms: int = Field(default=700, ge=0, le=30_000)
    # Give up on a connector that has not answered after this long.
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # How long found cards, and numbers nobody knows, are remembered.
    cache_seconds: float = Field(default=300.0, ge=0, le=7 * 86400)
    miss_cache_seconds: float = Field(default=60.0, ge=0, le=7 * 86400)


class RecordingsSettings(_Section):
    """Recordings served by callbridge: the panel's player and the signed links CRMs keep."""

    # Where fetched recordings are kept (Mango's links work once); empty = `recordings-cache` next to the
    # SQLite database, or `var/recordings-cache` with PostgreSQL.
    cache_dir: str = ""
    # The cache's size; the least recently played files are removed beyond it.
    cache_max_mb: int = Field(default=512, ge=1, le=1_000_000)
    # How long a link attached to a CRM call works (CRMs keep the link).
    link_ttl_days: int = Field(default=90, ge=1, le=3650)


class DatabaseSettings(_Section):
    url: str = "sqlite:///var/callbridge.db"
    # Each process re-reads the settings saved in the panel at most this often (they apply within it).
    saved_settings_refresh_seconds: float = Field(default=2.0, ge=0.05, le=300)


class ApiSettings(_Section):
    token: SecretStr = SecretStr("")


class TrackerSettings(_Section):
    # Close a call from its legs when every leg is disconnected and no summary came for this long.
    close_after_seconds: float = Field(default=120.0, gt=0)
    # Close a call as ended, incomplete, when no event came for this long (its final events never came).
    max_call_seconds: float = Field(default=14400.0, gt=0)


class DispatcherSettings(_Section):
    max_attempts: int = Field(default=12, ge=1, le=100)
    base_delay_seconds: float = Field(default=10.0, gt=0)
    max_delay_seconds: float = Field(default=1200.0, gt=0)
    # How long a claimed row is held for one delivery attempt; longer than a connector's HTTP timeouts.
    claim_seconds: float = Field(default=60.0, ge=5, le=3600)
    enabled: bool = True


class PhoneSettings(_Section):
    # Region assumed for numbers written without a country code (ISO 3166 code, e.g. RU, KZ, BY).
    default_region: str = Field(default="RU", min_length=2, max_length=2)


class HistorySettings(_Section):
    # A running history import with no heartbeat for this long (its process stopped) is marked failed.
    stale_seconds: float = Field(default=60.0, ge=10, le=3600)


class LoginSettings(_Section):
    """Password logins to the panel and the operator page: failed attempts allowed per window."""

    window_seconds: float = Field(default=300.0, ge=1, le=86400)
    per_user_address: int = Field(default=5, ge=1, le=1000)  # one user name from one address
    per_user: int = Field(default=20, ge=1, le=10_000)  # one user name from anywhere
    per_address: int = Field(default=50, ge=1, le=100_000)  # every user name from one address


class LogSettings(_Section):
    level: str = "INFO"


class Settings(_Section):
    """All of callbridge's settings."""

    mango: MangoSettings = Field(default_factory=MangoSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    ws: WsSettings = Field(default_factory=WsSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    lookup: LookupSettings = Field(default_factory=LookupSettings)
    recordings: RecordingsSettings = Field(default_factory=RecordingsSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    tracker: TrackerSettings = Field(default_factory=TrackerSettings)
    dispatcher: DispatcherSettings = Field(default_factory=DispatcherSettings)
    phones: PhoneSettings = Field(default_factory=PhoneSettings)
    history: HistorySettings = Field(default_factory=HistorySettings)
    login: LoginSettings = Field(default_factory=LoginSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    # Per-connector sections, validated by each connector's own config model (see bridge.registry).
    connectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
