"""The typed settings. Every key maps to an environment variable `CALLBRIDGE_<SECTION>_<KEY>`."""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Literal

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

    api_key: str = Field(
        default="",
        description="the cabinet's unique code (`vpbx_api_key`); webhooks are refused (503) until it is set",
    )
    api_salt: SecretStr = Field(
        default=SecretStr(""),
        description="the cabinet's signature key (`vpbx_api_salt`); never logged or shown",
    )
    api_url: str = Field(
        default="https://app.mango-office.ru/vpbx/",
        description="where commands go (point it at `callbridge simulate --serve-commands` for a demo)",
    )
    verify_tls: bool = Field(default=True, description="verify Mango's certificate")
    line_number: str = Field(
        default="",
        description=(
            "caller-ID line for click-to-call (a DID, 7-800 number or SIP line name); empty = the "
            "employee's default"
        ),
    )
    allowed_ips: list[str] = Field(
        default_factory=list,
        description=(
            "empty = open to every address; else the source addresses or networks allowed to post "
            "webhooks; `mango` stands for Mango's published addresses (81.88.80.132, 81.88.80.133, "
            "81.88.82.36, 81.88.82.44, 81.88.82.45); comma-separated in the environment; when neither "
            "sets it, the list saved in the panel applies within "
            "`database.saved_settings_refresh_seconds` (2 s) without a restart"
        ),
    )
    max_body_bytes: int = Field(
        default=64 * 1024,
        ge=1024,
        le=16 * 1024 * 1024,
        description="larger requests get 413; a chunked body (no Content-Length) is read up to the same cap",
    )
    command_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description=(
            "a command Mango accepted (click-to-call, a widget callback) whose asynchronous result has "
            "not come after this long is marked `timed_out` in `commands` by the processor's periodic "
            "sweep; a result that comes later still records what Mango said"
        ),
    )

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

    @field_validator("allowed_ips")
    @classmethod
    def _networks_only(cls, value: list[str]) -> list[str]:
        """An entry that is not an address or network stops the start (it would have opened nothing)."""
        for item in value:
            try:
                ipaddress.ip_network(item.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address or network") from None
        return value


class HttpSettings(_Section):
    host: str = Field(default="127.0.0.1", description="listen address (`0.0.0.0` to listen everywhere)")
    port: int = Field(default=8080, ge=0, le=65535, description="listen port")
    workers: int = Field(default=2, ge=1, le=64, description="HTTP worker processes")
    threads: int = Field(default=4, ge=1, le=256, description="request threads per worker")
    trusted_proxies: int = Field(
        default=0,
        ge=0,
        le=5,
        description=(
            "how many reverse proxies' `X-Forwarded-For` to trust (for the allow-list, and the widget's "
            "limits per address and network)"
        ),
    )
    header_timeout_seconds: float = Field(
        default=5.0,
        ge=0.1,
        le=300,
        description=(
            "a client must send a request's headers within this time, or the connection is closed; an "
            "idle keep-alive connection is closed after it too"
        ),
    )
    body_timeout_seconds: float = Field(
        default=10.0,
        ge=0.1,
        le=300,
        description=(
            "a client must send the body within this time after the headers, or gets 408 and a closed "
            "connection; a request holds a worker thread only once its body is in"
        ),
    )
    public_url: str = Field(
        default="",
        description=(
            "the address users and vendors reach callbridge at, e.g. `https://calls.example.com`: the "
            "addresses given to CRMs (their hooks, click-to-call and signed recording links) are built "
            "from it"
        ),
    )
    metrics_token: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "when set, `/metrics` answers only requests with `Authorization: Bearer <token>` (401 "
            "otherwise); empty = open to whoever reaches it, so keep it behind the proxy's own rule "
            "([deploy.md](deploy.md#protecting-metrics)); never logged"
        ),
    )


class WsSettings(_Section):
    """The WebSocket hub for live popups (runs in the `callbridge run` parent process)."""

    enabled: bool = Field(
        default=True, description="run the WebSocket hub for live popups ([realtime.md](realtime.md))"
    )
    host: str = Field(default="", description="the hub's listen address; empty = `http.host`")
    port: int = Field(
        default=8081,
        ge=0,
        le=65535,
        description="the hub's port: clients connect to `ws://HOST:PORT/ws?token=...`",
    )
    public_url: str = Field(
        default="",
        description=(
            "where browsers reach the hub behind a proxy, e.g. `wss://calls.example.com/ws`; empty = the "
            "operator page's host and `ws.port`"
        ),
    )
    heartbeat_seconds: float = Field(
        default=25.0, gt=0, le=3600, description="a `heartbeat` frame to every client this often"
    )
    resume_seconds: float = Field(
        default=300.0,
        ge=0,
        le=3600,
        description="a client that reconnects with its last event id gets what it missed within this window",
    )
    token_ttl_seconds: int = Field(
        default=12 * 3600,
        ge=60,
        le=90 * 86400,
        description="lifetime of the tokens the operator page gets after login",
    )
    max_clients: int = Field(
        default=10_000, ge=1, le=1_000_000, description="more connections are refused with 503"
    )


class SecuritySettings(_Section):
    secret_key: SecretStr = Field(
        default=SecretStr(""),
        description=(
            "signs popup/operator tokens; empty = a random key generated once and kept in the database "
            "(shared by every process and instance); changing it revokes every token; never logged"
        ),
    )


class RedisSettings(_Section):
    url: str = Field(
        default="",
        description=(
            "`redis://[:password@]host:6379/0`: set it when several instances share a PostgreSQL "
            "database, so that every instance's hub gets every call event"
        ),
    )
    channel: str = Field(
        default="callbridge:realtime",
        min_length=1,
        max_length=200,
        description="the pub/sub channel (one per installation sharing a Redis)",
    )

    @field_validator("url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if value and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value


class LookupSettings(_Section):
    """Caller cards: every connector that can look a number up is asked in parallel."""

    deadline_ms: int = Field(
        default=700,
        ge=0,
        le=30_000,
        description=(
            "how long a ringing popup waits for the caller card; a later card follows as `call.card`; `0`"
            " = never wait"
        ),
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=120, description="give up on a connector's lookup after this long"
    )
    cache_seconds: float = Field(
        default=300.0, ge=0, le=7 * 86400, description="how long a found caller card is reused"
    )
    miss_cache_seconds: float = Field(
        default=60.0, ge=0, le=7 * 86400, description='how long "nobody knows this number" is remembered'
    )


class RecordingsSettings(_Section):
    """Recordings served by callbridge: the panel's player and the signed links CRMs keep."""

    cache_dir: str = Field(
        default="",
        description=(
            "where recordings fetched from Mango are kept; Mango's download link works once, so the "
            "panel's player and CRM links seek in the cached copy. Holds audio only (named by a hash of "
            "the id); who may hear it is checked on every request. Empty = `recordings-cache` next to the"
            " SQLite database, or `var/recordings-cache` with PostgreSQL"
        ),
    )
    cache_max_mb: int = Field(
        default=512,
        ge=1,
        le=1_000_000,
        description=(
            "the cache's size; the least recently played files are removed beyond it (a single larger "
            "recording is refused with 502)"
        ),
    )
    link_ttl_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description=(
            "how long the signed recording links attached to CRM calls "
            "(`<http.public_url>/recordings/<id>?t=...`) work; they are signed with "
            '`security.secret_key`, so changing the secret revokes them. "Recordings may be linked" off '
            "in the panel refuses them all"
        ),
    )


class DatabaseSettings(_Section):
    url: str = Field(
        default="sqlite:///var/callbridge.db",
        description=(
            "SQLite file (relative to the working directory) or `postgresql+psycopg://user:pass@host/db`"
        ),
    )
    saved_settings_refresh_seconds: float = Field(
        default=2.0,
        ge=0.05,
        le=300,
        description=(
            "each process re-reads the settings saved in the panel at most this often: a change applies "
            "everywhere within it (0.05-300)"
        ),
    )


class ApiSettings(_Section):
    token: SecretStr = Field(
        default=SecretStr(""),
        description="bearer token for `/api/calls`; the read API answers 503 until it is set",
    )


class TrackerSettings(_Section):
    close_after_seconds: float = Field(
        default=120.0,
        gt=0,
        description=(
            "close a call from its legs when every leg has ended and Mango's summary has not come for "
            "this long"
        ),
    )
    max_call_seconds: float = Field(
        default=14400.0,
        gt=0,
        description=(
            "a call with no event for this long (callbridge's clock) is closed as ended, incomplete: its "
            "final events are not coming. It shows `incomplete: true` in `/api/calls` and `call.ended` "
            "goes out once with `extra.incomplete = true`; final events that come later still complete "
            "it, without a second `call.ended` ([tracker.md](tracker.md#closing))"
        ),
    )


class DispatcherSettings(_Section):
    max_attempts: int = Field(
        default=12, ge=1, le=100, description="delivery attempts before a row is parked as dead"
    )
    base_delay_seconds: float = Field(
        default=10.0,
        gt=0,
        description=(
            "first retry delay (doubles each attempt, with full jitter; about 50 minutes on average "
            "before a row is dead)"
        ),
    )
    max_delay_seconds: float = Field(default=1200.0, gt=0, description="longest retry delay")
    claim_seconds: float = Field(
        default=60.0,
        ge=5,
        le=3600,
        description=(
            "how long a dispatcher holds a row it is delivering; keep it above every connector's HTTP "
            "timeout. When a process is killed mid-delivery, its rows go out again after this long on "
            "PostgreSQL (on SQLite, where one process delivers, as soon as callbridge starts again); 5 to"
            " 3600"
        ),
    )
    enabled: bool = Field(default=True, description="run the delivery worker in this instance")


class PhoneSettings(_Section):
    default_region: str = Field(
        default="RU",
        min_length=2,
        max_length=2,
        description=(
            "region assumed for numbers written without a country code (ISO 3166 code, e.g. RU, KZ, BY)"
        ),
    )


class HistorySettings(_Section):
    stale_seconds: float = Field(
        default=60.0,
        ge=10,
        le=3600,
        description=(
            "a running history import that has not refreshed its heartbeat (every 5 s, or a quarter of "
            "this time if shorter) for this long is marked failed, because the callbridge process running"
            " it stopped; 10 to 3600 ([admin.md](admin.md#history-import))"
        ),
    )


class LoginSettings(_Section):
    """Password logins to the panel and the operator page: failed attempts allowed per window."""

    window_seconds: float = Field(
        default=300.0,
        ge=1,
        le=86400,
        description=(
            "failed password logins to the panel and the operator page are counted over this window, from"
            " the first failure; 1 to 86400 ([admin.md](admin.md#sessions-and-login-limits))"
        ),
    )
    per_user_address: int = Field(
        default=5,
        ge=1,
        le=1000,
        description=(
            "failed logins allowed per window for one user name from one address; then even the right "
            "password waits (429)"
        ),
    )
    per_user: int = Field(
        default=20,
        ge=1,
        le=10_000,
        description="failed logins allowed per window for one user name from any address",
    )
    per_address: int = Field(
        default=50,
        ge=1,
        le=100_000,
        description=(
            "failed logins allowed per window from one address for all user names together; keep it well "
            "above `login.per_user_address` so colleagues behind one NAT still log in while one name is "
            "locked"
        ),
    )


_LDAP_FIELDS: tuple[str, ...] = ("extension", "name", "email", "department", "position")
LDAP_ROLES: tuple[str, ...] = ("employee", "team_leader", "marketer", "accountant", "admin")


def _json_mapping(value: Any) -> Any:
    """A mapping given as JSON text (its environment variable) becomes a dict."""
    if isinstance(value, str):
        try:
            return json.loads(value) if value.strip() else {}
        except ValueError as exc:
            raise ValueError(f"must be a JSON object: {exc}") from None
    return value


class LdapSettings(_Section):
    """Employees and panel users from an LDAP directory or Active Directory ([ldap.md](ldap.md))."""

    url: str = Field(
        default="",
        description=(
            "the directory server, e.g. `ldaps://dc.example.com:636`; `ldap://` only with `ldap.start_tls` "
            "or `ldap.allow_plain`; empty = no directory"
        ),
    )
    start_tls: bool = Field(default=False, description="with an `ldap://` address, upgrade to TLS (StartTLS)")
    allow_plain: bool = Field(
        default=False,
        description="allow `ldap://` without TLS (passwords cross the network in clear; a test lab only)",
    )
    ca_file: str = Field(
        default="", description="a PEM file of the private CA to trust; empty = the system's trusted CAs"
    )
    bind_dn: str = Field(default="", description="the service account that reads the directory")
    password: SecretStr = Field(
        default=SecretStr(""), description="the service account's password; never logged or shown"
    )
    base_dn: str = Field(
        default="", description="where employees are searched, e.g. `ou=people,dc=example,dc=com`"
    )
    filter: str = Field(default="(objectClass=person)", description="which entries are employees")
    timeout_seconds: float = Field(
        default=10.0, gt=0, le=300, description="connecting and each answer of the server"
    )
    page_size: int = Field(default=500, ge=1, le=5000, description="entries per page of a search")
    sync_minutes: int = Field(
        default=60, ge=0, description="the daemon syncs employees this often; 0 = only on demand"
    )
    login: bool = Field(default=False, description="panel sign-in with directory accounts")
    login_attribute: str = Field(
        default="uid",
        description=(
            "the attribute matched against the name typed at sign-in (Active Directory: `sAMAccountName`)"
        ),
    )
    group_attribute: str = Field(
        default="member",
        description=(
            "the groups' attribute that lists members' DNs (`member`, `uniqueMember`); groups are read by "
            "DN from `ldap.roles`"
        ),
    )
    fields: dict[str, str] = Field(
        default_factory=lambda: {
            "extension": "telephoneNumber",
            "name": "displayName",
            "email": "mail",
            "department": "department",
            "position": "title",
        },
        description=(
            "callbridge field -> directory attribute (`extension`, `name`, `email`, `department`, "
            "`position`); a JSON object in the environment"
        ),
    )
    keep_local: list[str] = Field(
        default_factory=list,
        description=(
            "fields (`name`, `email`, `department`, `position`) whose local edit wins: a sync overwrites "
            "them only while they still hold what the directory gave last; comma-separated in the environment"
        ),
    )
    roles: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "group DN -> panel role (`employee`, `team_leader`, `marketer`, `accountant`, `admin`); a "
            "directory user in none of them cannot sign in; a JSON object in the environment"
        ),
    )

    @field_validator("fields", "roles", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        return _json_mapping(value)

    @field_validator("keep_local", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        if value and not value.lower().startswith(("ldap://", "ldaps://")):
            raise ValueError("must start with ldaps:// or ldap://")
        return value

    @field_validator("fields")
    @classmethod
    def _known_fields(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(_LDAP_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(_LDAP_FIELDS)}")
        if not value.get("extension"):
            raise ValueError("`extension` must name the attribute that holds the extension")
        return value

    @field_validator("keep_local")
    @classmethod
    def _known_keep(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(_LDAP_FIELDS[1:]))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}")
        return value

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: dict[str, str]) -> dict[str, str]:
        for group, role in value.items():
            if role not in LDAP_ROLES:
                raise ValueError(f"{group}: unknown role {role!r}; known: {', '.join(LDAP_ROLES)}")
        return value

    def refusal(self) -> str | None:
        """Why this address may not be used as it is, in plain words; None when it may."""
        if not self.url:
            return "no directory is configured (ldap.url is empty)"
        plain = self.url.lower().startswith("ldap://")
        if plain and not (self.start_tls or self.allow_plain):
            return (
                f"{self.url} is not encrypted: use ldaps://, or set ldap.start_tls = true "
                "(ldap.allow_plain = true only for a test lab)"
            )
        return None


class RoutingSettings(_Section):
    """Calls waiting in an IVR step put through to the familiar or the CRM's responsible employee."""

    enabled: bool = Field(
        default=False, description="route calls that wait in the IVR (Mango's `commands/route`)"
    )
    lines: list[str] = Field(
        default_factory=list,
        description="lines (DIDs) where routing applies; empty = all; comma-separated in the environment",
    )
    groups: list[str] = Field(
        default_factory=list,
        description=(
            "route only to operators of these ring groups (short number, id or name), as Mango offers it per"
            " department; empty = the whole company"
        ),
    )
    familiar_window_hours: float = Field(
        default=24.0,
        gt=0,
        le=24 * 366,
        description="an employee who talked with the number within this many hours is its familiar employee",
    )
    order: list[Literal["familiar", "crm_responsible"]] = Field(
        default_factory=lambda: ["familiar", "crm_responsible"],
        min_length=1,
        description="which reasons are tried, in order: `familiar`, `crm_responsible`",
    )
    decide_within_ms: int = Field(
        default=1500,
        ge=50,
        le=30_000,
        description="no decision within this long: nothing is sent and the IVR scheme goes on",
    )
    skip_busy: bool = Field(
        default=True, description="skip an employee already on a call (as callbridge sees their legs)"
    )
    intercept: bool = Field(
        default=False,
        description=(
            "also move a call ringing at a ring group (of `groups`, or any) to the familiar or responsible"
            " employee when they are not rung, for lines whose scheme has no IVR step"
        ),
    )

    @field_validator("lines", "groups", "order", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("order")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each reason may appear once")
        return value


class LogSettings(_Section):
    level: str = Field(default="INFO", description="`DEBUG`, `INFO`, `WARNING`, `ERROR`")


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
    ldap: LdapSettings = Field(default_factory=LdapSettings)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    log: LogSettings = Field(default_factory=LogSettings)
    # Per-connector sections, validated by each connector's own config model (see bridge.registry).
    connectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
