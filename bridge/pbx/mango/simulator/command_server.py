"""A faithful fake of Mango's command API (`https://app.mango-office.ru/vpbx/`), for demos and tests.

Every POST is checked as Mango does (mango.md §1, §3, §4): the product key (3105), the rate limits of §3.2
(HTTP 429 with Mango's body), the signature over the raw `json` field (3102), the JSON (3400), the required
parameters (3103). A valid command is answered `{"result":1000}` at once; then a background thread posts
`/result/<command>` and the events the command causes to the bridge, signed, in the order Mango might.

Queries answer synchronously: `config/users/request`, `groups` (with `operators` when `show_users` is 1),
`incominglines`, `queries/recording/post` (302 to a single-use link this server serves), `stats/request` and
`stats/result` (204 first, then CSV).

Every request is recorded in `received`; everything the server emits is in `outbox`, and every HTTP post
of it to the bridge in `deliveries`.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from bridge.pbx.mango.signing import dump_json, recording_link_sign, verify

from . import call_end, group_callback
from . import groups as groups_query
from .audio import silent_mp3
from .group_callback import ANSWERED
from .poster import NotificationLike, Poster, SendRecord
from .rate_limits import LOCKOUT_BODY, RATE_LIMIT_BODY, BadRequestLockout, Limit, RateLimiter
from .stats import StatsRequestError, legs_from_notifications, parse_fields, render_csv, select_rows

log = logging.getLogger(__name__)

PREFIX = "/vpbx/"
DEFAULT_LINE = "74951234567"
DEFAULT_EXTENSIONS = ("101", "102", "103")
DEFAULT_GROUP = "200"
PRODUCT_ID = 400000001

# Result codes (mango.md §4)
OK = 1000
BAD_PARAMS = 3100
NOT_POST = 3101
BAD_SIGN = 3102
MISSING_PARAM = 3103
BAD_FORMAT = 3104
BAD_KEY = 3105
BAD_JSON = 3400
UNSUPPORTED = 4001
CALL_MISSING = 4101
NOT_POSSIBLE = 4100
BAD_NUMBER = 3200
ALREADY_RECORDING = 4102
INTERCEPTED = 1182  # what the losing legs of a group call end with (mango.md §2.4: not documented)

# Required parameters per command (PDF §3.2-§3.4; dotted names are nested objects).
REQUIRED: dict[str, tuple[str, ...]] = {
    "commands/callback": ("from", "from.extension", "to_number"),
    "commands/callback_group": ("from", "to", "line_number"),
    "commands/call/hangup": ("call_id",),
    "commands/route": ("call_id", "to_number"),
    "commands/transfer": ("call_id", "to_number", "initiator"),
    "commands/recording/start": ("call_id", "call_party_number"),
    "commands/play/start": ("call_id", "internal_id"),
    "commands/sms": ("text", "from_extension", "to_number"),
    "config/users/request": (),
    "groups": (),
    "incominglines": (),
    "queries/recording/post": ("recording_id", "action"),
    "stats/request": ("date_from", "date_to"),
    "stats/result": ("key",),
}

# Optional user fields that `config/users/request` returns only when named in `ext_fields`.
_EXT_FIELDS = ("general.user_id", "general.login", "general.mobile", "general.sips", "groups")
_EXT_TELEPHONY = ("telephony.dial_alg", "telephony.line_id")


@dataclass(frozen=True)
class ReceivedCommand:
    """One request as the server received it and what it answered."""

    path: str  # relative to /vpbx/, e.g. "commands/callback"
    method: str
    form: dict[str, str]
    json: Any  # the parsed `json` field, None when absent or invalid
    signature_valid: bool
    status: int  # HTTP status answered
    result: int | None  # the `result` code answered, None for answers without one (302, 204, CSV, 429)
    received_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class _Notification:
    """A (path, payload) pair; used when `scenarios` is not needed to build one."""

    path: str
    payload: dict[str, Any]


@dataclass
class _StatsJob:
    key: str
    request_id: str | None
    csv: str
    polls_before_ready: int
    created: float
    notified: bool = False


@dataclass
class _Injection:
    result: int | None
    status: int
    body: Any
    times: int


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("mango-sim %s %s -> %s", self.command, self.path, code)

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("mango-sim: " + format, *args)


def _scenarios() -> Any:
    from bridge.pbx.mango import scenarios

    return scenarios


def _nested(payload: Mapping[str, Any], dotted: str) -> Any:
    value: Any = payload
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def default_users(extensions: Sequence[str] = DEFAULT_EXTENSIONS, group: str = DEFAULT_GROUP) -> list[dict]:
    """Users in the `config/users/request` reply shape (mango.md §3), one per extension."""
    names = ("Анна Смирнова", "Борис Иванов", "Вера Петрова", "Глеб Соколов", "Дарья Козлова")
    users = []
    for i, ext in enumerate(extensions):
        users.append(
            {
                "general": {
                    "name": names[i % len(names)] + ("" if i < len(names) else f" {i}"),
                    "email": f"user{ext}@example.com",
                    "department": "Продажи",
                    "position": "Менеджер",
                    "user_id": 300000000 + int(ext) if ext.isdigit() else 300000000 + i,
                    "login": f"user{ext}",
                    "mobile": f"7916000{int(ext) % 10000:04d}" if ext.isdigit() else "",
                    "sips": [f"user{ext}@vpbx{PRODUCT_ID}.mangosip.ru"],
                },
                "telephony": {
                    "extension": ext,
                    "outgoingline": DEFAULT_LINE,
                    "numbers": [
                        {
                            "number": f"sip:user{ext}@vpbx{PRODUCT_ID}.mangosip.ru",
                            "protocol": "sip",
                            "order": 0,
                            "wait_sec": 20,
                            "status": "on",
                        }
                    ],
                    "dial_alg": 1,
                    "line_id": 400000101,
                },
                "groups": [int(group)] if group.isdigit() else [],
            }
        )
    return users


def default_lines() -> list[dict]:
    """One DID line in the `incominglines` reply shape (mango.md §3)."""
    return [
        {
            "line_id": 400000101,
            "number": DEFAULT_LINE,
            "name": "Основная линия",
            "comment": "",
            "region": "Москва",
            "schema_id": 1,
            "schema_name": "Основная схема",
        }
    ]


class CommandServer:
    """A threaded HTTP server imitating `https://app.mango-office.ru/vpbx/` for one product.

    Configure behaviour through attributes before or while it runs:
    `users`, `lines`, `groups` (short number -> operator extensions), `outcomes` (number -> "answered" |
    "no_answer" | "busy"), `calls` (call_id -> entry_id the server knows), `results` (command -> forced
    async result code), `inject(...)` (forced synchronous answers).
    """

    def __init__(
        self,
        api_key: str,
        api_salt: str,
        *,
        bridge_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        rng: random.Random | None = None,
        rate_limits: bool | Mapping[str, Limit] = True,
        lockout: bool = False,
        pace: float = 0.0,
        line: str = DEFAULT_LINE,
        on_command: Callable[[ReceivedCommand], None] | None = None,
    ) -> None:
        self.api_key = api_key
        self._api_salt = api_salt
        self.bridge_url = bridge_url
        self.host = host
        self.port = port
        self.rng = rng or random.Random()
        self.line = line
        self.pace = pace  # real seconds per simulated second for emitted events; 0 = at once
        self.on_command = on_command
        if rate_limits is True:
            self.rate_limiter: RateLimiter | None = RateLimiter()
        elif rate_limits:
            self.rate_limiter = RateLimiter(rate_limits)  # type: ignore[arg-type]
        else:
            self.rate_limiter = None
        self.lockout = BadRequestLockout() if lockout else None

        self.users: list[dict] = default_users()
        self.lines: list[dict] = default_lines()
        self.groups: dict[str, tuple[str, ...]] = {DEFAULT_GROUP: DEFAULT_EXTENSIONS}
        self.outcomes: dict[str, str] = {}
        self.calls: dict[str, str] = {}
        self.results: dict[str, int] = {}
        self.losing_reason = INTERCEPTED
        self.record_calls = True  # calls the server creates get recording events
        self.api_v2 = True  # transfers carry `transfer`, `was_transferred`, `hold_initiator` (mango.md §2.1)
        self.stats_polls_before_ready = 1
        self.stats_ttl = 600.0

        self.received: list[ReceivedCommand] = []
        self.outbox: list[NotificationLike] = []
        self.deliveries: list[SendRecord] = []

        self._ended: set[str] = set()
        self._last_leg: dict[str, dict[str, Any]] = {}
        self._entry_events: dict[str, list[dict[str, Any]]] = {}  # entry_id -> its /events/call payloads
        self._open_recordings: dict[str, dict[str, Any]] = {}  # recording_id -> newest Started payload
        self._recording_calls: set[str] = set()
        self._entry_started: dict[str, int] = {}
        self._timers: list[threading.Timer] = []
        self._files: dict[str, tuple[str, str]] = {}
        self._stats: dict[str, _StatsJob] = {}
        self._injections: dict[str, list[_Injection]] = {}
        self._seed = self.rng.randrange(1 << 30)
        self._cond = threading.Condition()
        self._pending = 0
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._poster: Poster | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> CommandServer:
        """Bind and serve in a background thread; returns self (`url` is then known)."""
        if self._server is not None:
            return self
        self._server = make_server(self.host, self.port, self, threaded=True, request_handler=_QuietHandler)
        self.port = self._server.server_port
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05), name="mango-sim", daemon=True
        )
        self._thread.start()
        log.info("Mango command simulator listening on %s", self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving, after waiting up to `timeout` seconds for pending posts to the bridge."""
        with self._cond:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        self.wait_idle(timeout)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = None
        self._thread = None
        if self._poster is not None:
            self._poster.close()
            self._poster = None

    def __enter__(self) -> CommandServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted (Ctrl-C)."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(0.5)
        finally:
            self.stop(timeout=1.0)

    @property
    def url(self) -> str:
        """The base URL to give the bridge as its Mango API URL, e.g. `http://127.0.0.1:PORT/vpbx/`."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "", "::") else self.host
        return f"http://{host}:{self.port}{PREFIX}"

    def __repr__(self) -> str:
        return f"CommandServer(url={self.url!r}, bridge_url={self.bridge_url!r})"

    # ------------------------------------------------------------------ test helpers

    def wait_for(
        self,
        path: str,
        timeout: float = 5.0,
        *,
        where: Callable[[ReceivedCommand], bool] | None = None,
        count: int = 1,
    ) -> ReceivedCommand:
        """Block until the `count`-th request to `path` (matching `where`) has been answered; return it."""
        path = path.strip("/")
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                matches = [r for r in self.received if r.path == path and (where is None or where(r))]
                if len(matches) >= count:
                    return matches[count - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = ", ".join(sorted({r.path for r in self.received})) or "nothing"
                    raise TimeoutError(
                        f"no request #{count} to /vpbx/{path} within {timeout}s (seen: {seen})"
                    )
                self._cond.wait(left)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Block until every queued result and event has been posted; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def inject(
        self, path: str, *, result: int | None = 5000, status: int = 200, body: Any = None, times: int = 1
    ) -> None:
        """Answer the next `times` valid requests to `path` with `status` and `{"result": result}`
        (or `body`) instead of executing them: a vendor error on demand."""
        with self._cond:
            self._injections.setdefault(path.strip("/"), []).append(_Injection(result, status, body, times))

    def play(self, notifications: Iterable[NotificationLike]) -> None:
        """Post notifications to the bridge as this PBX (remembering their calls for route/hangup)."""
        self._emit(list(notifications))

    def remember(self, notifications: Iterable[NotificationLike]) -> None:
        """Learn the calls in `notifications` without posting them."""
        for note in notifications:
            self._observe(note)

    def recording_link(self, recording_id: str, action: str = "download", *, expires_in: int = 3600) -> str:
        """A GET recording link (§3.3) signed as the bridge would build it."""
        expiry = int(time.time()) + expires_in
        sign = recording_link_sign(self.api_key, expiry, recording_id, self._api_salt)
        return f"{self.url}queries/recording/link/{recording_id}/{action}/{self.api_key}/{expiry}/{sign}"

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._handle(request)
        except Exception:  # a bug in the fake must not look like a Mango answer
            log.exception("mango simulator failed on %s", request.path)
            response = _json({"result": 5000}, 500)
        return response(environ, start_response)

    def _handle(self, request: Request) -> Response:
        if not request.path.startswith(PREFIX):
            return _json({"result": UNSUPPORTED}, 404)
        path = request.path[len(PREFIX) :].strip("/")
        if path.startswith("files/") and request.method == "GET":
            return self._serve_file(path[len("files/") :])
        if path.startswith("queries/recording/link/") and request.method == "GET":
            return self._recording_get_link(path)
        if path not in REQUIRED:
            return self._finish(request, path, {}, None, False, _json({"result": UNSUPPORTED}, 404))
        form = {k: v for k, v in request.form.items()} if request.method == "POST" else {}
        if request.method != "POST":
            return self._finish(request, path, form, None, False, _json({"result": NOT_POST}))
        if self.lockout is not None and self.lockout.blocked():
            return self._finish(request, path, form, None, False, _json(LOCKOUT_BODY, 401))

        json_text = form.get("json")
        signature_valid = json_text is not None and verify(
            self.api_key, json_text, self._api_salt, form.get("sign", "")
        )
        payload: Any = None
        if json_text is not None:
            try:
                payload = json.loads(json_text)
            except ValueError:
                payload = None

        def answer(response: Response) -> Response:
            return self._finish(request, path, form, payload, signature_valid, response)

        if form.get("vpbx_api_key") != self.api_key:
            return answer(_json({"result": BAD_KEY}))
        if self.rate_limiter is not None and not self.rate_limiter.allow(path, self.api_key):
            return answer(_json(RATE_LIMIT_BODY, 429))
        if json_text is None:
            return answer(_json({"result": MISSING_PARAM}))
        if not signature_valid:
            return answer(_json({"result": BAD_SIGN}))
        if not isinstance(payload, dict):
            return answer(_json({"result": BAD_JSON}))
        for name in REQUIRED[path]:
            if _nested(payload, name) in (None, ""):
                return answer(_json({"result": MISSING_PARAM}))
        injected = self._take_injection(path)
        if injected is not None:
            body = injected.body if injected.body is not None else {"result": injected.result}
            return answer(_json(body, injected.status))
        handler = getattr(self, "_do_" + path.replace("/", "_"))
        return answer(handler(payload))

    def _finish(
        self,
        request: Request,
        path: str,
        form: dict[str, str],
        payload: Any,
        signature_valid: bool,
        response: Response,
    ) -> Response:
        result = None
        if response.mimetype == "application/json":
            body = response.get_json(silent=True)
            if isinstance(body, dict) and isinstance(body.get("result"), int):
                result = body["result"]
        if (
            self.lockout is not None
            and result is not None
            and 3000 <= result < 4000
            and self.lockout.bad_request()
        ):
            response, result = _json(LOCKOUT_BODY, 401), None
        record = ReceivedCommand(
            path=path,
            method=request.method,
            form=form,
            json=payload,
            signature_valid=signature_valid,
            status=response.status_code,
            result=result,
        )
        with self._cond:
            self.received.append(record)
            self._cond.notify_all()
        if self.on_command is not None:
            try:
                self.on_command(record)
            except Exception:
                log.exception("on_command hook failed")
        return response

    def _take_injection(self, path: str) -> _Injection | None:
        with self._cond:
            queue = self._injections.get(path)
            if not queue:
                return None
            injection = queue[0]
            injection.times -= 1
            if injection.times <= 0:
                queue.pop(0)
            return injection

    # ------------------------------------------------------------------ commands

    def _async_result(self, command: str, payload: Mapping[str, Any], default: int = OK) -> dict[str, Any]:
        result: dict[str, Any] = {}
        if payload.get("command_id") not in (None, ""):
            result["command_id"] = payload["command_id"]
        result["result"] = self.results.get(command, default)
        return result

    def _command(
        self,
        command: str,
        payload: Mapping[str, Any],
        events: list[NotificationLike],
        *,
        ends_legs: bool = False,
    ) -> Response:
        """Answer 1000 now; post `/result/<command>` and, if it succeeded, the `events` afterwards.

        With `ends_legs`, the legs the events end count as ended at once, before they are posted, so that
        a second command on one of them is answered as Mango would (4101)."""
        result = self._async_result(command, payload)
        if result["result"] != OK:
            self._emit([_Notification(f"result/{command}", result)])
            return _json({"result": OK})
        if ends_legs:
            with self._cond:
                for note in events:
                    if note.path == "events/call" and note.payload.get("call_state") == "Disconnected":
                        self._ended.add(str(note.payload["call_id"]))
        if any(n.path == f"result/{command}" for n in events):
            self._emit(events)  # the scenario places the result among its events itself
        else:
            self._emit([_Notification(f"result/{command}", result), *events])
        return _json({"result": OK})

    def _fail_async(self, command: str, payload: Mapping[str, Any], code: int) -> Response:
        result = self._async_result(command, payload, default=code)
        self._emit([_Notification(f"result/{command}", result)])
        return _json({"result": OK})

    def _known_extensions(self) -> set[str]:
        return {
            str(_nested(u, "telephony.extension")) for u in self.users if _nested(u, "telephony.extension")
        }

    def _next_seed(self) -> int:
        with self._cond:
            self._seed += 1
            return self._seed

    def _do_commands_callback(self, payload: dict[str, Any]) -> Response:
        if not isinstance(payload["from"], dict):
            return _json({"result": BAD_FORMAT})
        extension = str(payload["from"]["extension"])
        number = str(payload["to_number"])
        if self.users and extension not in self._known_extensions():
            return self._fail_async("callback", payload, BAD_PARAMS)
        outcome = self.outcomes.get(number, ANSWERED)
        scenario = _scenarios().click_to_call(
            extension=extension,
            number=number,
            command_id=str(payload.get("command_id") or ""),
            line=str(payload.get("line_number") or self.line),
            outcome=outcome,
            seed=self._next_seed(),
            start=int(time.time()),
            recording=self.record_calls,
        )
        events = [_strip_empty_command_id(n) for n in scenario.notifications]
        return self._command("callback", payload, events)

    def _do_commands_callback_group(self, payload: dict[str, Any]) -> Response:
        source, target = payload["from"], payload["to"]
        if not isinstance(source, str | int) or not isinstance(target, str | int):
            return _json({"result": BAD_FORMAT})
        source, target = str(source), str(target)
        if source in self.groups:
            group, number, group_first = source, target, True
        elif target in self.groups:
            group, number, group_first = target, source, False
        else:  # "the group's short number is required in from or to"
            return self._fail_async("callback_group", payload, BAD_PARAMS)
        pairs = group_callback.callback_group_events(
            group=group,
            operators=self.groups[group],
            number=number,
            line=str(payload["line_number"]),
            command_id=str(payload.get("command_id") or ""),
            group_first=group_first,
            operator_outcome=self.outcomes.get(group, ANSWERED),
            visitor_outcome=self.outcomes.get(number, ANSWERED),
            losing_reason=self.losing_reason,
            start=int(time.time()),
            rng=random.Random(self._next_seed()),
            product=PRODUCT_ID,
        )
        events = [_strip_empty_command_id(_Notification(p, d)) for p, d in pairs]
        return self._command("callback_group", payload, events)

    def _live(self, call_id: str) -> bool:
        with self._cond:
            return call_id in self.calls and call_id not in self._ended

    def _do_commands_call_hangup(self, payload: dict[str, Any]) -> Response:
        call_id = str(payload["call_id"])
        if not self._live(call_id):
            return self._fail_async("call/hangup", payload, CALL_MISSING)
        with self._cond:
            leg = dict(self._last_leg.get(call_id, {}))
            entry_id = self.calls[call_id]
        if leg and leg.get("location") not in ("ivr", "abonent"):  # §3: only in ivr or abonent
            return self._fail_async("call/hangup", payload, NOT_POSSIBLE)
        return self._command("call/hangup", payload, self._hangup_events(entry_id), ends_legs=True)

    def _hangup_events(self, entry_id: str) -> list[NotificationLike]:
        """The whole call ends: each live leg of the entry Disconnected 1181, the summary, the recordings."""
        with self._cond:
            events = list(self._entry_events.get(entry_id, []))
            live = [
                dict(leg)
                for call_id, leg in self._last_leg.items()
                if self.calls.get(call_id) == entry_id and call_id not in self._ended
            ]
        end = max(int(time.time()), call_end.last_moment(events) + 1)
        notes: list[NotificationLike] = [
            call_end.disconnect(leg, end, call_end.BY_EXTERNAL_COMMAND) for leg in live
        ]
        return notes + self._ending(entry_id, events, notes, end, call_end.BY_EXTERNAL_COMMAND)

    def _ending(
        self,
        entry_id: str,
        events: list[dict[str, Any]],
        notes: Sequence[NotificationLike],
        end: int,
        reason: int,
    ) -> list[NotificationLike]:
        """The entry's summary (its known `events` plus the new `notes`) and its recordings' completion."""
        with self._cond:
            running = [r for r in self._open_recordings.values() if r.get("entry_id") == entry_id]
        completed = {
            n.payload.get("recording_id") for n in notes if n.payload.get("recording_state") == "Completed"
        }
        running += [
            n.payload
            for n in notes
            if n.path == "events/recording" and n.payload.get("recording_state") == "Started"
        ]
        calls = events + [dict(n.payload) for n in notes if n.path == "events/call"]
        return [
            call_end.summary(entry_id, calls, end=end, reason=reason),
            *call_end.finished_recordings([r for r in running if r["recording_id"] not in completed], end),
        ]

    def _do_commands_route(self, payload: dict[str, Any]) -> Response:
        call_id = str(payload["call_id"])
        if not self._live(call_id):
            return self._fail_async("route", payload, CALL_MISSING)
        to_number = str(payload["to_number"])
        notes = self._route_events(
            call_id,
            to_number,
            str(payload.get("command_id") or ""),
            answered=self.outcomes.get(to_number, ANSWERED) == ANSWERED,
        )
        events = [_strip_empty_command_id(n) for n in notes]
        return self._command("route", payload, events)

    def _route_events(
        self, call_id: str, to_number: str, command_id: str, *, answered: bool = True
    ) -> list[NotificationLike]:
        """What Mango sends when the leg `call_id` (in the IVR or ringing) is routed to `to_number`."""
        with self._cond:
            entry_id = self.calls[call_id]
            leg = self._last_leg.get(call_id, {})
            started = self._entry_started.get(entry_id)
            self._ended.add(call_id)  # the IVR leg ends (1100) as the routed leg starts
        from_ = leg.get("from") or {}
        to = leg.get("to") or {}
        notes = _scenarios().routed_from_ivr(
            ivr_call_id=call_id,
            entry_id=entry_id,
            to_extension=to_number,
            command_id=command_id,
            customer=from_.get("number"),
            line=to.get("line_number") or from_.get("line_number") or leg.get("line_number") or self.line,
            ivr_seq=_as_int(leg.get("seq")) or 1,
            start=int(time.time()),
            ivr_started_at=started,
            seed=self._next_seed(),
            answered=answered,
            recording=self.record_calls,
        )
        return [_strip_empty_command_id(n) for n in notes]

    def ring_ivr(
        self,
        *,
        customer: str = "79161234567",
        line: str | None = None,
        wait: float = 10.0,
        fallback_extension: str | None = None,
        seed: int | None = None,
        run: str = "",
    ) -> str:
        """Play an incoming call that enters the IVR and waits there for `commands/route` (mango.md §5).

        The IVR leg's Appeared (and the caller's DTMF) are posted now. If no route comes within `wait`
        seconds the IVR scheme goes on, as in Mango: the call is forwarded to `fallback_extension` (default:
        the first user's) with no `command_id` and no `/result/route`. Returns the IVR leg's call_id.
        """
        scenario = _scenarios().build(
            "ivr_then_route",
            seed=self._next_seed() if seed is None else seed,
            run=run,
            customer=customer,
            line=line or self.line,
            start=int(time.time()),
            recording=self.record_calls,
        )
        ivr_call_id = str(scenario.notifications[0].payload["call_id"])
        waiting = []
        for note in scenario.notifications:
            if (
                note.payload.get("call_id") == ivr_call_id
                and note.payload.get("call_state") == "Disconnected"
            ):
                break
            waiting.append(note)
        with self._cond:  # known at once, so that a quick route finds it
            self.calls[ivr_call_id] = scenario.entry_id
        self._emit(waiting)
        extension = fallback_extension or next(iter(sorted(self._known_extensions())), "101")
        timer = threading.Timer(wait, self._ivr_fallback, args=(ivr_call_id, extension))
        timer.daemon = True
        with self._cond:
            self._timers.append(timer)
        timer.start()
        return ivr_call_id

    def _ivr_fallback(self, call_id: str, extension: str) -> None:
        self.wait_idle(5.0)
        if not self._live(call_id):
            return  # routed (or hung up) in time
        notes = self._route_events(call_id, extension, "")
        self._emit([n for n in notes if not n.path.startswith("result/")])

    def _do_commands_transfer(self, payload: dict[str, Any]) -> Response:
        method = payload.get("method", "blind")
        if method not in ("blind", "hold"):
            return _json({"result": BAD_PARAMS})
        call_id = str(payload["call_id"])
        if not self._live(call_id):
            return self._fail_async("transfer", payload, CALL_MISSING)
        with self._cond:
            leg = dict(self._last_leg.get(call_id, {}))
            entry_id = self.calls[call_id]
            events = list(self._entry_events.get(entry_id, []))
        from_, to = leg.get("from") or {}, leg.get("to") or {}
        initiator = str(payload["initiator"])
        if leg.get("call_state") != "Connected":  # §3: the leg must be Connected
            return self._fail_async("transfer", payload, NOT_POSSIBLE)
        if initiator not in {str(v) for v in (*from_.values(), *to.values())}:
            return self._fail_async("transfer", payload, BAD_PARAMS)  # not a party of this leg
        if initiator != str(to.get("extension")) or from_.get("extension"):
            # only a customer's call (the employee on the `to` side), transferred by that employee
            return self._fail_async("transfer", payload, NOT_POSSIBLE)
        target = self._transfer_target(str(payload["to_number"]))
        if target is None:
            return self._fail_async("transfer", payload, BAD_NUMBER)
        start = max(int(time.time()), call_end.last_moment(events) + 1)
        notes = _scenarios().transferred(
            call_id=call_id,
            entry_id=entry_id,
            seq=_as_int(leg.get("seq")),
            first=initiator,
            to_extension=target,
            consultative=method == "hold",
            command_id=str(payload.get("command_id") or ""),
            customer=from_.get("number"),
            line=to.get("line_number") or self.line,
            taken_from=from_.get("taken_from_call_id"),
            start=start,
            seed=self._next_seed(),
            api_v2=self.api_v2,
            recording=self.record_calls,
        )
        last = notes[-1].payload
        ending = self._ending(
            entry_id, events, notes, _as_int(last["timestamp"]), _as_int(last["disconnect_reason"])
        )
        return self._command("transfer", payload, [*notes, *ending], ends_legs=True)

    def _transfer_target(self, to_number: str) -> str | None:
        """The employee a transfer to `to_number` reaches: an extension, or a group's first operator."""
        if to_number in self._known_extensions():
            return to_number
        operators = self.groups.get(to_number)
        return str(operators[0]) if operators else None

    def _do_commands_recording_start(self, payload: dict[str, Any]) -> Response:
        call_id = str(payload["call_id"])
        if not self._live(call_id):
            return self._fail_async("recording/start", payload, CALL_MISSING)
        with self._cond:
            if call_id in self._recording_calls:
                return self._fail_async("recording/start", payload, ALREADY_RECORDING)
            self._recording_calls.add(call_id)
            entry_id = self.calls[call_id]
        event: dict[str, Any] = {
            "recording_id": base64.b64encode(f"1:{PRODUCT_ID}:{self._next_seed()}:1".encode()).decode(),
            "recording_state": "Started",
            "seq": 1,
            "entry_id": entry_id,
            "call_id": call_id,
            "extension": str(payload["call_party_number"]),
            "timestamp": int(time.time()),
        }
        if payload.get("command_id"):
            event["command_id"] = payload["command_id"]
        return self._command("recording/start", payload, [_Notification("events/recording", event)])

    def _do_commands_play_start(self, payload: dict[str, Any]) -> Response:
        if not self._live(str(payload["call_id"])):
            return self._fail_async("play/start", payload, CALL_MISSING)
        return self._command("play/start", payload, [])

    def _do_commands_sms(self, payload: dict[str, Any]) -> Response:
        text = str(payload["text"])
        if len(text) > (612 if text.isascii() else 268):  # 612 Latin or 268 Cyrillic characters
            return _json({"result": BAD_PARAMS})
        event: dict[str, Any] = {"timestamp": int(time.time()), "reason": OK}
        if payload.get("command_id"):
            event = {"command_id": payload["command_id"], **event}
        return self._command("sms", payload, [_Notification("events/sms", event)])

    # ------------------------------------------------------------------ queries

    def _do_config_users_request(self, payload: dict[str, Any]) -> Response:
        users = self.users
        if payload.get("extension") not in (None, ""):
            users = [u for u in users if str(_nested(u, "telephony.extension")) == str(payload["extension"])]
        wanted = set(payload.get("ext_fields") or [])
        shaped = []
        for user in users:
            user = copy.deepcopy(user)
            for name in (*_EXT_FIELDS, *_EXT_TELEPHONY):
                if name in wanted:
                    continue
                section, _, key = name.rpartition(".")
                if not section:
                    user.pop(key, None)
                elif isinstance(user.get(section), dict):
                    user[section].pop(key, None)
            shaped.append(user)
        return _json({"users": shaped})

    def _do_groups(self, payload: dict[str, Any]) -> Response:
        try:
            return _json(groups_query.answer(self.groups, self.users, payload))
        except groups_query.GroupsQueryError as exc:
            return _json({"result": exc.code})

    def _do_incominglines(self, payload: dict[str, Any]) -> Response:
        return _json({"result": OK, "lines": self.lines})

    def _do_queries_recording_post(self, payload: dict[str, Any]) -> Response:
        action = payload["action"]
        if action not in ("download", "play"):
            return _json({"result": BAD_PARAMS})
        return self._redirect_to_file(str(payload["recording_id"]), str(action))

    def _redirect_to_file(self, recording_id: str, action: str) -> Response:
        token = base64.urlsafe_b64encode(self.rng.randbytes(18)).decode().rstrip("=")
        with self._cond:
            self._files[token] = (recording_id, action)
        return Response(status=302, headers={"Location": f"{self.url}files/{token}"})

    def _recording_get_link(self, path: str) -> Response:
        parts = path[len("queries/recording/link/") :].split("/")
        if len(parts) < 5:
            return _json({"result": MISSING_PARAM})
        recording_id = "/".join(parts[:-4])
        action, key, expiry, sign = parts[-4:]
        if self.rate_limiter is not None and not self.rate_limiter.allow("queries/recording/link", key):
            return _json(RATE_LIMIT_BODY, 429)
        if key != self.api_key:
            return _json({"result": BAD_KEY})
        if not expiry.isdigit() or action not in ("download", "play"):
            return _json({"result": BAD_PARAMS})
        expected = recording_link_sign(self.api_key, int(expiry), recording_id, self._api_salt)
        if sign.lower() != expected:
            return _json({"result": BAD_SIGN})
        if int(expiry) < time.time():
            return _json({"result": BAD_PARAMS})
        return self._redirect_to_file(recording_id, action)

    def _serve_file(self, token: str) -> Response:
        with self._cond:
            found = self._files.pop(token, None)  # single use
        if found is None:
            return Response("link expired or unknown", status=404, mimetype="text/plain")
        recording_id, action = found
        headers = {}
        if action == "download":
            safe = "".join(ch for ch in recording_id if ch.isalnum()) or "recording"
            headers["Content-Disposition"] = f'attachment; filename="{safe}.mp3"'
        return Response(silent_mp3(), status=200, mimetype="audio/mpeg", headers=headers)

    def _do_stats_request(self, payload: dict[str, Any]) -> Response:
        try:
            fields = parse_fields(payload.get("fields"))
            with self._cond:
                notes = list(self.outbox)
            rows = select_rows(legs_from_notifications(notes), payload)
        except StatsRequestError:
            return _json({"result": BAD_PARAMS})
        key = base64.b64encode(self.rng.randbytes(24)).decode()
        request_id = payload.get("request_id")
        with self._cond:
            self._stats[key] = _StatsJob(
                key=key,
                request_id=None if request_id in (None, "") else str(request_id),
                csv=render_csv(rows, fields),
                polls_before_ready=self.stats_polls_before_ready,
                created=time.monotonic(),
            )
        if self.stats_polls_before_ready <= 0:
            self._notify_stats_ready(key)
        return _json({"key": key})

    def _notify_stats_ready(self, key: str) -> None:
        with self._cond:
            job = self._stats.get(key)
            if job is None or job.notified:
                return
            job.notified = True
        notice: dict[str, Any] = {"key": key}
        if job.request_id is not None:
            notice["request_id"] = job.request_id
        self._emit([_Notification("result/stat", notice)])

    def _do_stats_result(self, payload: dict[str, Any]) -> Response:
        key = str(payload["key"])
        with self._cond:
            job = self._stats.get(key)
            if job is not None and time.monotonic() - job.created > self.stats_ttl:
                del self._stats[key]
                job = None
            if job is None:
                return Response(status=404)
            if job.polls_before_ready > 0:
                job.polls_before_ready -= 1
                ready_now = job.polls_before_ready == 0
            else:
                ready_now = None
        if ready_now is not None:
            if ready_now:
                self._notify_stats_ready(key)
            return Response(status=204)
        return Response(job.csv, status=200, content_type="text/csv; charset=utf-8")

    # ------------------------------------------------------------------ emitting

    def _emit(self, notes: list[NotificationLike]) -> None:
        """Queue notifications for posting to the bridge in a background thread."""
        if not notes:
            return
        with self._cond:
            self.outbox.extend(notes)
            self._pending += 1
        threading.Thread(target=self._deliver, args=(notes,), name="mango-sim-post", daemon=True).start()

    def _deliver(self, notes: list[NotificationLike]) -> None:
        try:
            base: tuple[float, int] | None = None  # (monotonic time, event timestamp) of the first event
            for note in notes:
                ts = _timestamp(note) if self.pace > 0 else None
                if ts is not None:
                    if base is None:
                        base = (time.monotonic(), ts)
                    delay = base[0] + (ts - base[1]) * self.pace - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                self._observe(note)
                if self.bridge_url:
                    record = self._get_poster().post(note)
                    if not record.acked:
                        log.warning("bridge answered %s to /%s: %s", record.status, note.path, record.error)
                    with self._cond:
                        self.deliveries.append(record)
        except Exception:
            log.exception("mango simulator could not deliver notifications")
        finally:
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()

    def _get_poster(self) -> Poster:
        with self._cond:
            if self._poster is None:
                assert self.bridge_url is not None
                self._poster = Poster(self.bridge_url, self.api_key, self._api_salt, timeout=5)
            return self._poster

    def _observe(self, note: NotificationLike) -> None:
        path = note.path.strip("/")
        if path == "events/recording":
            self._observe_recording(note.payload)
            return
        if path != "events/call":
            return
        payload = note.payload
        call_id = payload.get("call_id")
        if not call_id:
            return
        with self._cond:
            entry_id = str(payload.get("entry_id", ""))
            self.calls[str(call_id)] = entry_id
            self._entry_events.setdefault(entry_id, []).append(dict(payload))
            ts = _as_int(payload.get("timestamp"))
            if ts and (entry_id not in self._entry_started or ts < self._entry_started[entry_id]):
                self._entry_started[entry_id] = ts
            previous = self._last_leg.get(str(call_id))
            if previous is None or _as_int(payload.get("seq")) >= _as_int(previous.get("seq")):
                self._last_leg[str(call_id)] = dict(payload)
            if payload.get("call_state") == "Disconnected":
                self._ended.add(str(call_id))

    def _observe_recording(self, payload: Mapping[str, Any]) -> None:
        recording_id = payload.get("recording_id")
        if not recording_id:
            return
        with self._cond:
            if payload.get("recording_state") == "Completed":
                self._open_recordings.pop(str(recording_id), None)
            else:
                self._open_recordings[str(recording_id)] = dict(payload)


def _json(body: Any, status: int = 200) -> Response:
    return Response(dump_json(body), status=status, mimetype="application/json")


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _timestamp(note: NotificationLike) -> int | None:
    payload = note.payload
    for name in ("timestamp", "end_time"):
        if payload.get(name) not in (None, ""):
            return _as_int(payload[name])
    return None


def _rebuild(note: NotificationLike, payload: dict[str, Any]) -> NotificationLike:
    try:
        return type(note)(path=note.path, payload=payload)  # type: ignore[call-arg]
    except TypeError:
        return _Notification(note.path, payload)


def _strip_empty_command_id(note: NotificationLike) -> NotificationLike:
    """A command sent without `command_id` produces events without one."""
    if note.payload.get("command_id", None) != "":
        return note
    return _rebuild(note, {k: v for k, v in note.payload.items() if k != "command_id"})
