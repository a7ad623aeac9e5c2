"""Mango VPBX API client: signed commands and queries over one `requests` session, rate-limited.

Every call is a POST of the signed three-field form (`vpbx_api_key`, `sign`, `json`) to
`<base_url><path>`, with a timeout. A reply whose `result` is not 10xx raises the specific
`MangoError` subclass (see `errors.py`). The salt and the signatures never appear in exceptions,
reprs or log lines.

Rate limits (API v1.9 §1.4.2, per product) are enforced here with token buckets, before sending:
every request takes a token from the general bucket (10/s) and, where one applies, from its own
group's bucket. Buckets hold one token (no bursts), so no one-second window ever sees more requests
than the limit. A request that would wait longer than `max_wait` raises `MangoRateLimited(local=True)`
without being sent. Mango's own HTTP 429 raises `MangoRateLimited` and empties the group's bucket
for the Retry-After time (1 s, or one token interval, when Mango gives none).
"""

from __future__ import annotations

import calendar
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, Literal
from urllib.parse import quote, urljoin

import requests

from bridge.pbx.mango.codes import is_success
from bridge.pbx.mango.errors import (
    MangoAccessBlocked,
    MangoBadRequest,
    MangoRateLimited,
    MangoServerError,
    MangoStatsKeyNotFound,
    MangoStatsTimeout,
    MangoTransportError,
    error_for,
)
from bridge.pbx.mango.signing import dump_json, recording_link_sign, signed_form
from bridge.pbx.mango.stats import DEFAULT_FIELDS, StatsResult, normalise_fields, parse_stats_csv
from bridge.pbx.port import CommandAccepted, PbxGroup, PbxUser, PbxUserNumber
from bridge.ratelimit import TokenBucket

__all__ = [
    "CHECK_OK",
    "DEFAULT_BASE_URL",
    "DEFAULT_FIELDS",
    "MIN_STATS_POLL",
    "RATE_LIMITS",
    "CommandAccepted",
    "IncomingLine",
    "MangoClient",
    "MangoGroup",
    "MangoRateLimiter",
    "MangoUser",
    "MangoUserNumber",
    "StatsResult",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://app.mango-office.ru/vpbx/"
CHECK_OK = "Connection to the server established successfully"
MIN_STATS_POLL = 5.0
"""Mango asks to poll `stats/result` no more often than every 5 seconds."""

MSK = timezone(timedelta(hours=3))
"""Mango's documented time zone (UTC+3), used to decide what "one month" of stats means."""

RATE_LIMITS: Mapping[str, float] = {
    "general": 10.0,  # any request
    "callback": 4.0,  # commands/callback, callback_group, call/hangup, recording/start
    "recording": 10.0,  # queries/recording/post
    "users": 0.5,  # config/users/request: 1 per 2 s
    "transfer": 0.5,  # commands/transfer: 1 per 2 s
    "route": 0.5,  # commands/route: 1 per 2 s
    "stats_request": 0.5,  # stats/request: 1 per 2 s
}
"""Requests per second allowed per product, by limit group."""

_PATH_GROUP: Mapping[str, str] = {
    "commands/callback": "callback",
    "commands/callback_group": "callback",
    "commands/call/hangup": "callback",
    "commands/recording/start": "callback",
    "commands/route": "route",
    "commands/transfer": "transfer",
    "config/users/request": "users",
    "queries/recording/post": "recording",
    "stats/request": "stats_request",
}

_MAX_ID_BYTES = 128
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_STATS_KEYS_REMEMBERED = 256


# ---------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class MangoUserNumber(PbxUserNumber):
    """One of an employee's numbers, in ringing order."""

    number: str
    protocol: str | None = None  # tel, sip, fmc (skype in old accounts)
    order: int | None = None
    wait_sec: int | None = None
    status: str | None = None  # on, off

    @property
    def active(self) -> bool:
        return self.status != "off"


@dataclass(frozen=True)
class MangoUser(PbxUser):
    """An employee from `config/users/request`. Ids and numbers are strings whatever Mango sent.

    The port's `PbxUser` with Mango's own fields added (login, lines, ringing algorithm, SIP ids, groups).
    """

    extension: str | None
    name: str | None = None
    email: str | None = None
    department: str | None = None
    position: str | None = None
    mobile: str | None = None
    login: str | None = None
    user_id: str | None = None
    outgoing_line: str | None = None
    line_id: str | None = None
    dial_alg: int | None = None
    numbers: tuple[MangoUserNumber, ...] = ()
    sips: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class MangoGroup(PbxGroup):
    """A ring group from `groups`: its id, name, short number and its operators' extensions in order."""

    group_id: str
    name: str | None = None
    extension: str | None = None  # the short number calls carry as `to.acd_group`
    operators: tuple[str, ...] = ()


@dataclass(frozen=True)
class IncomingLine:
    """A PBX line from `incominglines`: a DID, a 7-800 number or a SIP line."""

    line_id: str
    number: str
    name: str | None = None
    comment: str | None = None
    region: str | None = None
    schema_id: str | None = None
    schema_name: str | None = None


# ------------------------------------------------------------------------------------------- limiter


class MangoRateLimiter:
    """The per-product token buckets. Share one instance between clients that use the same API key."""

    def __init__(
        self,
        limits: Mapping[str, float] = RATE_LIMITS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if "general" not in limits:
            raise ValueError("rate limits need a 'general' group")
        self.limits = dict(limits)
        self._buckets = {
            name: TokenBucket(rate, 1, clock=clock, sleep=sleep) for name, rate in self.limits.items()
        }
        self._clock = clock

    @staticmethod
    def group_for(path: str) -> str:
        """The limit group of an API path ("general" when only the general limit applies)."""
        return _PATH_GROUP.get(path, "general")

    def acquire(self, path: str, max_wait: float) -> None:
        """Wait for the tokens `path` needs, or raise MangoRateLimited(local=True) past `max_wait`."""
        group = self.group_for(path)
        deadline = self._clock() + max_wait
        names = [group, "general"] if group != "general" else ["general"]
        for name in names:
            bucket = self._buckets[name]
            if not bucket.acquire(timeout=max(0.0, deadline - self._clock())):
                rate = self.limits[name]
                raise MangoRateLimited(
                    f"Client-side Mango rate limit '{name}' ({_rate_text(rate)}) would need a wait "
                    f"longer than max_wait={max_wait:g} s for {path}; the request was not sent",
                    retry_after=1.0 / rate,
                    local=True,
                    path=path,
                )

    def penalise(self, path: str, seconds: float) -> None:
        """Mango said 429: stop the group of `path` for `seconds`."""
        self._buckets[self.group_for(path)].penalise(seconds)

    def interval(self, path: str) -> float:
        """Seconds between two requests of `path`'s group at its sustained rate."""
        return 1.0 / self.limits[self.group_for(path)]


def _rate_text(rate: float) -> str:
    return f"{rate:g}/s" if rate >= 1 else f"1 per {1 / rate:g} s"


# -------------------------------------------------------------------------------------------- client


class MangoClient:
    """Commands, queries, recordings and call history of one Mango product (one API key)."""

    def __init__(
        self,
        api_key: str,
        api_salt: str,
        base_url: str = DEFAULT_BASE_URL,
        *,
        timeout: float | tuple[float, float] = 10,
        session: requests.Session | None = None,
        verify_tls: bool | str = True,
        max_wait: float = 5.0,
        rate_limiter: MangoRateLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
    ) -> None:
        """`api_key`/`api_salt`: "Уникальный код вашей АТС" and "Ключ для создания подписи" from the
        cabinet's "API коннектор" page. `timeout`: seconds (or (connect, read)) for every request.
        `verify_tls`: False, or a CA bundle path, as in requests. `max_wait`: the longest a request
        waits for a rate-limit token. `rate_limiter`: share one between clients of the same key.
        `clock`/`sleep` (monotonic) drive rate limits and polling; `now` (epoch) dates GET links.
        """
        if not api_key or not api_salt:
            raise ValueError("Mango needs both the API key and the API salt (cabinet page 'API коннектор')")
        if not base_url.startswith(("https://", "http://")):
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        self._api_key = api_key
        self._api_salt = api_salt
        self.base_url = base_url if base_url.endswith("/") else base_url + "/"
        self.timeout = timeout
        self.verify_tls = verify_tls
        self.max_wait = max_wait
        self._owns_session = session is None
        self._session = session if session is not None else requests.Session()
        self._clock = clock
        self._sleep = sleep
        self._now = now
        self._limiter = rate_limiter or MangoRateLimiter(clock=clock, sleep=sleep)
        self._stats_fields: OrderedDict[str, tuple[str, ...]] = OrderedDict()
        if not verify_tls:
            log.warning("mango.client tls_verify=off base_url=%s", self.base_url)

    def __repr__(self) -> str:
        return f"MangoClient(base_url={self.base_url!r}, api_key={_mask(self._api_key)!r})"

    def __enter__(self) -> MangoClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP session if this client created it."""
        if self._owns_session:
            self._session.close()

    @property
    def rate_limiter(self) -> MangoRateLimiter:
        return self._limiter

    # ------------------------------------------------------------------------------------ commands

    def callback(
        self,
        extension: str | int,
        to_number: str | int,
        *,
        line_number: str | int | None = None,
        from_number: str | int | None = None,
        sip_headers: Mapping[str, str] | None = None,
        command_id: str | None = None,
    ) -> CommandAccepted:
        """Click-to-call: ring employee `extension` first, then dial `to_number` (a number, extension
        or group). `line_number` is the caller-ID line; `from_number` picks which of the employee's
        numbers rings; e.g. `sip_headers={"Call-Info/answer-after": "0"}` auto-answers on a SIP phone.
        """
        caller: dict[str, str] = {"extension": _text(extension, "extension")}
        if from_number is not None:
            caller["number"] = _text(from_number, "from_number")
        payload: dict[str, Any] = {"from": caller, "to_number": _text(to_number, "to_number")}
        if line_number is not None:
            payload["line_number"] = _text(line_number, "line_number")
        if sip_headers:
            payload["sip_headers"] = dict(sip_headers)
        return self._command("commands/callback", payload, command_id)

    def callback_group(
        self,
        from_: str | int,
        to: str | int,
        line_number: str | int,
        *,
        command_id: str | None = None,
    ) -> CommandAccepted:
        """Call on behalf of a group: group -> number rings the group first, number -> group the client."""
        payload = {
            "from": _text(from_, "from_"),
            "to": _text(to, "to"),
            "line_number": _text(line_number, "line_number"),
        }
        return self._command("commands/callback_group", payload, command_id)

    def hangup(self, call_id: str, *, command_id: str | None = None) -> CommandAccepted:
        """End a call leg (in location ivr or abonent). An ended or unknown leg raises MangoCallNotFound."""
        return self._command("commands/call/hangup", {"call_id": _text(call_id, "call_id")}, command_id)

    def route(
        self,
        call_id: str,
        to_number: str | int,
        *,
        sip_headers: Mapping[str, str] | None = None,
        command_id: str | None = None,
    ) -> CommandAccepted:
        """Send a leg in the IVR or queue (or still ringing) to an extension, group, sip or number.
        Limited to 1 request per 2 s per product.
        """
        payload: dict[str, Any] = {
            "call_id": _text(call_id, "call_id"),
            "to_number": _text(to_number, "to_number"),
        }
        if sip_headers:
            payload["sip_headers"] = dict(sip_headers)
        return self._command("commands/route", payload, command_id)

    def transfer(
        self,
        call_id: str,
        to_number: str | int,
        method: Literal["blind", "hold"] = "blind",
        *,
        initiator: str | int,
        command_id: str | None = None,
    ) -> CommandAccepted:
        """Transfer a Connected leg; `initiator` is the transferring employee (their extension).
        Limited to 1 request per 2 s per product.
        """
        if method not in ("blind", "hold"):
            raise ValueError(f"transfer method must be 'blind' or 'hold', got {method!r}")
        payload = {
            "call_id": _text(call_id, "call_id"),
            "method": method,
            "to_number": _text(to_number, "to_number"),
            "initiator": _text(initiator, "initiator"),
        }
        return self._command("commands/transfer", payload, command_id)

    def recording_start(
        self, call_id: str, call_party_number: str | int, *, command_id: str | None = None
    ) -> CommandAccepted:
        """Start recording a leg for the party `call_party_number` (an extension). 4102 = already on."""
        payload = {
            "call_id": _text(call_id, "call_id"),
            "call_party_number": _text(call_party_number, "call_party_number"),
        }
        return self._command("commands/recording/start", payload, command_id)

    def sms(
        self,
        text: str,
        from_extension: str | int,
        to_number: str | int,
        sms_sender: str | None = None,
        *,
        command_id: str | None = None,
    ) -> CommandAccepted:
        """Send an SMS as an employee: at most 612 Latin (ASCII) or 268 other characters."""
        if not text:
            raise ValueError("SMS text is empty")
        limit = 612 if text.isascii() else 268
        if len(text) > limit:
            raise ValueError(
                f"SMS text is {len(text)} characters; Mango allows at most {limit} for this alphabet"
            )
        payload: dict[str, Any] = {
            "text": text,
            "from_extension": _text(from_extension, "from_extension"),
            "to_number": _text(to_number, "to_number"),
        }
        if sms_sender is not None:
            payload["sms_sender"] = sms_sender
        return self._command("commands/sms", payload, command_id)

    # ------------------------------------------------------------------------------------- queries

    def users(
        self, extension: str | int | None = None, ext_fields: Sequence[str] | None = None
    ) -> list[MangoUser]:
        """Employees (all, or the one with `extension`). `ext_fields` asks for extra fields, e.g.
        ["general.user_id", "general.sips", "groups"]. Limited to 1 request per 2 s per product.
        """
        payload: dict[str, Any] = {}
        if extension is not None:
            payload["extension"] = _text(extension, "extension")
        if ext_fields:
            if isinstance(ext_fields, str):
                raise TypeError("ext_fields is a list of names, not a string")
            payload["ext_fields"] = list(ext_fields)
        return [_parse_user(item) for item in self._listed("config/users/request", payload, "users")]

    def groups(self, group_id: str | int | None = None) -> list[MangoGroup]:
        """The PBX's ring groups (all, or the one with `group_id`) with their operators (`show_users`)."""
        payload: dict[str, Any] = {"show_users": 1}
        if group_id is not None:
            payload["group_id"] = _text(group_id, "group_id")
        return [_parse_group(item) for item in self._listed("groups", payload, "groups")]

    def incoming_lines(self) -> list[IncomingLine]:
        """The PBX's lines (DIDs, 7-800 numbers, SIP lines) with their routing schemes."""
        return [_parse_line(item) for item in self._listed("incominglines", {}, "lines")]

    def check(self) -> str:
        """Prove the key, salt, URL and network work (one `incominglines` query).

        Returns CHECK_OK, or raises MangoBadKey (3105), MangoBadSign (3102), MangoAccessBlocked,
        MangoTransportError, ...
        """
        self.incoming_lines()
        return CHECK_OK

    # ---------------------------------------------------------------------------------- recordings

    def recording_link(self, recording_id: str, action: Literal["play", "download"] = "play") -> str:
        """A temporary link to the mp3 of a recording (`queries/recording/post` answers 302).

        The link works once: fetch it right away and never store or cache it.
        """
        _check_action(action)
        path = "queries/recording/post"
        payload = {"recording_id": _text(recording_id, "recording_id"), "action": action}
        response = self._post(path, payload)
        if response.status_code in (301, 302, 303, 307, 308):
            location = response.headers.get("Location")
            if not location:
                raise MangoTransportError(
                    f"Mango redirected {path} (HTTP {response.status_code}) without a Location",
                    path=path,
                    http_status=response.status_code,
                )
            return urljoin(response.url or self.base_url + path, location)
        self._result_body(response, path)  # raises for an error result or an unexpected answer
        raise MangoTransportError(
            f"Mango answered {path} with HTTP {response.status_code} instead of a redirect to the file",
            path=path,
            http_status=response.status_code,
        )

    def recording_get_link(
        self,
        recording_id: str,
        action: Literal["play", "download"] = "play",
        expires_in: float = 300,
    ) -> str:
        """A signed GET link (`queries/recording/link/...`) valid for `expires_in` seconds; opening it
        redirects to the file. Needs the GET links option enabled in the cabinet. Nothing is sent now.

        The link is a bearer credential until it expires: hand it to the one who plays the file and
        do not log it.
        """
        _check_action(action)
        if expires_in <= 0:
            raise ValueError("expires_in must be a positive number of seconds")
        recording_id = _text(recording_id, "recording_id")
        expiry = int(self._now() + expires_in)
        signature = recording_link_sign(self._api_key, expiry, recording_id, self._api_salt)
        return (
            f"{self.base_url}queries/recording/link/{quote(recording_id, safe='=+')}/{action}/"
            f"{quote(self._api_key, safe='')}/{expiry}/{signature}"
        )

    # --------------------------------------------------------------------------------------- stats

    def stats_request(
        self,
        date_from: int | float | datetime,
        date_to: int | float | datetime,
        fields: str | Sequence[str] = DEFAULT_FIELDS,
        from_: Mapping[str, str | int] | None = None,
        to: Mapping[str, str | int] | None = None,
        call_party: Mapping[str, str | int] | None = None,
        request_id: str | None = None,
    ) -> str:
        """Start building a call-history report; returns the key for `stats_result`/`stats_wait`.

        `date_from`/`date_to` are epoch seconds or aware datetimes, at most one calendar month apart.
        `from_`, `to` and `call_party` filter by {"extension": ...} or {"number": ...};
        `call_party` (either side) cannot be combined with `from_`/`to`.
        Limited to 1 request per 2 s per product.
        """
        start = _epoch(date_from, "date_from")
        end = _epoch(date_to, "date_to")
        if end < start:
            raise ValueError(f"stats date_to ({end}) is before date_from ({start})")
        limit = _one_month_after(start)
        if end > limit:
            raise ValueError(
                f"stats range {start}..{end} is longer than one month, the most Mango allows; "
                f"end it by {limit} and request the rest separately"
            )
        if call_party is not None and (from_ is not None or to is not None):
            raise ValueError(
                "stats call_party cannot be combined with from_/to (Mango rule); use one or the other"
            )
        columns = normalise_fields(fields)
        payload: dict[str, Any] = {"date_from": str(start), "date_to": str(end), "fields": ", ".join(columns)}
        for name, party in (("from", from_), ("to", to), ("call_party", call_party)):
            if party is not None:
                payload[name] = _party(party, name)
        if request_id is not None:
            payload["request_id"] = _checked_id(request_id, "request_id")
        path = "stats/request"
        body = self._json_call(path, payload)
        key = body.get("key")
        if not isinstance(key, str) or not key:
            raise MangoTransportError(f"Mango's reply to {path} has no 'key'", path=path)
        self._stats_fields[key] = columns
        while len(self._stats_fields) > _STATS_KEYS_REMEMBERED:
            self._stats_fields.popitem(last=False)
        return key

    def stats_result(self, key: str, fields: str | Sequence[str] | None = None) -> StatsResult | None:
        """Fetch a report once: None while Mango builds it (HTTP 204), the parsed rows when ready.

        `fields` defaults to those of the `stats_request` that returned `key` (else DEFAULT_FIELDS).
        An unknown or expired key raises MangoStatsKeyNotFound (reports are kept at least 1 minute).
        """
        columns = (
            normalise_fields(fields) if fields is not None else self._stats_fields.get(key, DEFAULT_FIELDS)
        )
        path = "stats/result"
        response = self._post(path, {"key": _text(key, "key")})
        if response.status_code == 204:
            return None
        if response.status_code == 404:
            raise MangoStatsKeyNotFound(
                None,
                "Mango has no call-history report for this key (HTTP 404): it is expired or unknown; "
                "reports are kept about a minute after they are ready, so request a new one",
                path=path,
                http_status=404,
            )
        if response.status_code != 200:
            self._result_body(response, path)
            raise MangoTransportError(
                f"Mango answered {path} with unexpected HTTP {response.status_code}",
                path=path,
                http_status=response.status_code,
            )
        text = _decode(response)
        if text.lstrip().startswith("{"):
            body = self._result_body(response, path)  # an error result raises here
            raise MangoTransportError(
                f"Mango answered {path} with JSON instead of CSV (keys: {sorted(body)})",
                path=path,
                http_status=200,
            )
        try:
            rows = parse_stats_csv(text, columns)
        except ValueError as exc:
            raise ValueError(f"Mango call-history report for key {key!r}: {exc}") from None
        return StatsResult(key=key, fields=columns, rows=tuple(rows))

    def stats_wait(
        self,
        key: str,
        poll_every: float = MIN_STATS_POLL,
        timeout: float = 300.0,
        fields: str | Sequence[str] | None = None,
    ) -> StatsResult:
        """Poll `stats_result` until the report is ready, never more often than every 5 s.

        Raises MangoStatsTimeout after `timeout` seconds, MangoStatsKeyNotFound if the key expires.
        """
        interval = max(float(poll_every), MIN_STATS_POLL)
        deadline = self._clock() + timeout
        while True:
            result = self.stats_result(key, fields)
            if result is not None:
                return result
            if self._clock() + interval > deadline:
                raise MangoStatsTimeout(
                    None,
                    f"Mango's call-history report was not ready within {timeout:g} s; "
                    "try stats_result later with the same key, or ask for a shorter range",
                    path="stats/result",
                )
            self._sleep(interval)

    # -------------------------------------------------------------------------------------- wiring

    def _command(self, path: str, payload: dict[str, Any], command_id: str | None) -> CommandAccepted:
        cid = _checked_id(command_id, "command_id") if command_id is not None else uuid.uuid4().hex
        body = self._json_call(path, {"command_id": cid, **payload}, command_id=cid)
        result = body.get("result")
        if result is None:
            raise MangoTransportError(f"Mango's reply to {path} has no 'result'", path=path)
        return CommandAccepted(command_id=cid, result=int(result))

    def _json_call(
        self, path: str, payload: Mapping[str, Any], *, command_id: str | None = None
    ) -> dict[str, Any]:
        response = self._post(path, payload, command_id=command_id)
        return self._result_body(response, path)

    def _listed(self, path: str, payload: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
        """The objects in the `key` list of a query's reply (a reply without that list is an error)."""
        items = self._json_call(path, payload).get(key)
        if not isinstance(items, list):
            raise MangoTransportError(f"Mango's reply to {path} has no '{key}' list", path=path)
        return [item for item in items if isinstance(item, Mapping)]

    def _post(
        self, path: str, payload: Mapping[str, Any], *, command_id: str | None = None
    ) -> requests.Response:
        """Take the rate-limit tokens, send the signed form, map 429 and network failures."""
        self._limiter.acquire(path, self.max_wait)
        form = signed_form(self._api_key, self._api_salt, dump_json(payload))
        url = self.base_url + path
        started = self._clock()
        try:
            response = self._session.post(
                url,
                data=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self.timeout,
                verify=self.verify_tls,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            log.warning(
                "mango.request path=%s command_id=%s outcome=transport_error error=%s",
                path,
                command_id or "-",
                type(exc).__name__,
            )
            raise _transport_error(exc, path) from exc
        log.debug(
            "mango.request path=%s command_id=%s status=%s elapsed_ms=%.0f",
            path,
            command_id or "-",
            response.status_code,
            (self._clock() - started) * 1000,
        )
        if response.status_code == 429:
            retry_after = _retry_after(response.headers.get("Retry-After"), self._now())
            self._limiter.penalise(path, retry_after if retry_after is not None else self._penalty(path))
            wait = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            raise MangoRateLimited(
                f"Mango rate limit exceeded (HTTP 429) on {path}: slow down{wait}",
                retry_after=retry_after,
                path=path,
                http_status=429,
            )
        return response

    def _penalty(self, path: str) -> float:
        return max(1.0, self._limiter.interval(path))

    def _result_body(self, response: requests.Response, path: str) -> dict[str, Any]:
        """Mango's JSON reply; raise the specific error for a non-10xx `result` or an HTTP failure."""
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            if body.get("status") == 429:
                self._limiter.penalise(path, self._penalty(path))
                raise MangoRateLimited(
                    f"Mango rate limit exceeded on {path}: slow down", path=path, http_status=status
                )
            result = body.get("result")
            if result is not None:
                try:
                    code = int(result)
                except (TypeError, ValueError):
                    raise MangoTransportError(
                        f"Mango answered {path} with a non-numeric result {str(result)[:40]!r}",
                        path=path,
                        http_status=status,
                    ) from None
                if not is_success(code):
                    error = error_for(code, path=path, http_status=status)
                    if isinstance(error, MangoRateLimited):
                        self._limiter.penalise(path, self._penalty(path))
                    raise error
            if status < 400:
                return body
        if status == 401:
            raise MangoAccessBlocked(
                f"Mango refused access (HTTP 401) on {path}: after a second invalid (3xxx) request within "
                "2 minutes Mango blocks the API for 2 minutes; fix the earlier error, then wait. If it "
                "persists, check the key and the cabinet's IP whitelist",
                path=path,
            )
        if status == 403:
            raise MangoBadRequest(
                None,
                f"Mango refused the request (HTTP 403) on {path}: if the cabinet's 'API коннектор' page "
                "whitelists IP addresses, add this server's address",
                path=path,
                http_status=403,
            )
        if status >= 500:
            raise MangoServerError(
                None,
                f"Mango server error (HTTP {status}) on {path}: pause or slow down, then retry",
                path=path,
                http_status=status,
            )
        if status >= 400:
            raise MangoTransportError(
                f"Mango answered {path} with unexpected HTTP {status}: check base_url ({self.base_url})",
                path=path,
                http_status=status,
            )
        snippet = self._scrub(response.text[:120]) if response.content else ""
        raise MangoTransportError(
            f"Mango answered {path} with HTTP {status} but not a JSON object "
            f"(Content-Type {response.headers.get('Content-Type', '-')!r}, body {snippet!r})",
            path=path,
            http_status=status,
        )

    def _scrub(self, text: str) -> str:
        """Remove the salt and anything shaped like a signature from vendor text we quote."""
        return _HEX64.sub("***", text.replace(self._api_salt, "***"))


# ------------------------------------------------------------------------------------------- helpers


def _mask(secret: str) -> str:
    return secret[:4] + "…" if len(secret) > 8 else "…"


def _text(value: object, name: str) -> str:
    if value is None or isinstance(value, bool):
        raise TypeError(f"{name} must be a string or an integer, got {value!r}")
    text = str(value).strip()
    if not text:
        raise ValueError(f"{name} is empty")
    return text


def _checked_id(value: str, name: str) -> str:
    text = _text(value, name)
    if len(text.encode()) > _MAX_ID_BYTES:
        raise ValueError(f"{name} is longer than Mango's {_MAX_ID_BYTES} bytes")
    return text


def _check_action(action: str) -> None:
    if action not in ("play", "download"):
        raise ValueError(f"recording action must be 'play' or 'download', got {action!r}")


def _party(party: Mapping[str, str | int], name: str) -> dict[str, str]:
    keys = set(party)
    if not keys or not keys <= {"extension", "number"}:
        raise ValueError(
            f"stats {name} must be {{'extension': ...}} and/or {{'number': ...}}, got {dict(party)!r}"
        )
    return {key: _text(value, f"{name}.{key}") for key, value in party.items()}


def _epoch(value: int | float | datetime, name: str) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} is a naive datetime; give an aware one or Unix epoch seconds")
        return int(value.timestamp())
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be epoch seconds or a datetime, got {value!r}")
    return int(value)


def _one_month_after(epoch: int) -> int:
    """The same wall-clock moment one calendar month later in Moscow time (31 Jan -> 28/29 Feb)."""
    moment = datetime.fromtimestamp(epoch, MSK)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return int(moment.replace(year=year, month=month, day=day).timestamp())


def _retry_after(header: str | None, now: float) -> float | None:
    """Retry-After as seconds: either a number or an HTTP date."""
    if not header:
        return None
    header = header.strip()
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def _decode(response: requests.Response) -> str:
    content_type = response.headers.get("Content-Type", "").lower()
    encoding = response.encoding if "charset=" in content_type and response.encoding else "utf-8"
    return response.content.decode(encoding, errors="replace")


def _transport_error(exc: requests.RequestException, path: str) -> MangoTransportError:
    if isinstance(exc, requests.ConnectTimeout):
        reason, delivered = "timed out connecting", False
    elif isinstance(exc, requests.ReadTimeout):
        reason, delivered = "timed out waiting for the answer (the command may have run)", True
    elif isinstance(exc, requests.exceptions.SSLError):
        reason, delivered = "failed the TLS handshake (Mango speaks TLS 1.2 only; check the CA bundle)", False
    elif isinstance(exc, requests.ConnectionError):
        reason, delivered = "could not connect or lost the connection", True
    else:
        reason, delivered = f"failed ({type(exc).__name__})", True
    return MangoTransportError(f"Request to Mango {path} {reason}", path=path, maybe_delivered=delivered)


def _opt_text(value: object) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _opt_int(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _parse_number(item: object) -> MangoUserNumber | None:
    if not isinstance(item, Mapping):
        text = _opt_text(item)
        return MangoUserNumber(number=text) if text else None
    number = _opt_text(item.get("number"))
    if number is None:
        return None
    return MangoUserNumber(
        number=number,
        protocol=_opt_text(item.get("protocol")),
        order=_opt_int(item.get("order")),
        wait_sec=_opt_int(item.get("wait_sec")),
        status=_opt_text(item.get("status")),
    )


def _parse_user(item: Mapping[str, Any]) -> MangoUser:
    general = item.get("general") or {}
    telephony = item.get("telephony") or {}
    if not isinstance(general, Mapping):
        general = {}
    if not isinstance(telephony, Mapping):
        telephony = {}
    numbers = [_parse_number(n) for n in telephony.get("numbers") or ()]
    sips_raw = general.get("sips") or ()
    sips = [_opt_text(s.get("number") if isinstance(s, Mapping) else s) for s in sips_raw]
    groups = [_opt_text(g.get("id") if isinstance(g, Mapping) else g) for g in item.get("groups") or ()]
    return MangoUser(
        extension=_opt_text(telephony.get("extension")),
        name=_opt_text(general.get("name")),
        email=_opt_text(general.get("email")),
        department=_opt_text(general.get("department")),
        position=_opt_text(general.get("position")),
        mobile=_opt_text(general.get("mobile")),
        login=_opt_text(general.get("login")),
        user_id=_opt_text(general.get("user_id")),
        outgoing_line=_opt_text(telephony.get("outgoingline")),
        line_id=_opt_text(telephony.get("line_id")),
        dial_alg=_opt_int(telephony.get("dial_alg")),
        numbers=tuple(sorted((n for n in numbers if n), key=lambda n: (n.order is None, n.order or 0))),
        sips=tuple(s for s in sips if s),
        groups=tuple(g for g in groups if g),
    )


def _parse_group(item: Mapping[str, Any]) -> MangoGroup:
    operators = [o for o in item.get("operators") or () if isinstance(o, Mapping)]
    operators.sort(key=lambda o: (_opt_int(o.get("order")) is None, _opt_int(o.get("order")) or 0))
    extensions = (_opt_text(o.get("extension")) for o in operators)
    return MangoGroup(
        group_id=_opt_text(item.get("id")) or "",
        name=_opt_text(item.get("name")),
        extension=_opt_text(item.get("extension")),
        operators=tuple(e for e in extensions if e),
    )


def _parse_line(item: Mapping[str, Any]) -> IncomingLine:
    return IncomingLine(
        line_id=_opt_text(item.get("line_id")) or "",
        number=_opt_text(item.get("number")) or "",
        name=_opt_text(item.get("name")),
        comment=_opt_text(item.get("comment")),
        region=_opt_text(item.get("region")),
        schema_id=_opt_text(item.get("schema_id")),
        schema_name=_opt_text(item.get("schema_name")),
    )
