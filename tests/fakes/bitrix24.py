"""A contract fake of a Bitrix24 portal and its OAuth server, on loopback, for tests and benchmarks.

It answers like the real thing as far as the vendor documents it (docs/apis/bitrix24.md and the
b24restdocs pages it cites):

* Paths: ``POST /rest/<method>[.json]`` with ``auth=<access token>`` in the JSON body, the form or the
  query; ``/rest/<user id>/<secret>/<method>[.json]`` for an incoming webhook; ``/oauth/token/`` (GET or
  POST) for ``grant_type=refresh_token``. Refresh tokens are single-use (a used one answers
  ``invalid_grant``), so a client that loses a rotated token is caught.
* Auth errors: ``NO_AUTH_FOUND``, ``invalid_token``, ``expired_token`` (401), ``INVALID_CREDENTIALS`` for
  a bad webhook, ``WRONG_AUTH_TYPE`` for the application-only methods called through a webhook.
* Limits: a leaky bucket per portal: every accepted request adds 1, the counter drains `rate` per
  second, and a request that would take it above `burst` is refused with HTTP 503
  ``QUERY_LIMIT_EXCEEDED`` and counted in `violations` (a well-behaved client keeps it at 0). ``batch``
  counts as one request. `throttle(seconds)` refuses everything with 503 for a while (not a violation:
  the portal being busy for other reasons). `block_method` answers 429 ``OPERATION_TIME_LIMIT``.
* Methods: ``telephony.externalCall.register`` (required fields, TYPE 1..5, the user by USER_ID or
  USER_PHONE_INNER, the phone format, CRM matching and CRM_CREATE, the 30-minute dedup on
  PHONE_NUMBER+TYPE+USER+LINE_NUMBER+EXTERNAL_CALL_ID), ``show``/``hide``, ``finish`` (STATUS_CODE
  values, the statistics row), ``attachRecord`` (only after finish, RECORD_URL or FILENAME, wav/mp3),
  ``searchCrmEntities``, ``telephony.externalLine.add/get``, ``user.get`` (FILTER, 50 per page),
  ``event.bind``, ``tasks.task.add`` and ``tasks.task.complete``, and ``batch`` (``cmd`` of
  ``method?query`` strings in PHP ``http_build_query`` form, ``$result[key][field]`` references, at most
  50, no nesting).
* Every answer carries the ``time`` block with ``operating_reset_at``.

Everything executed is in `calls` (one `Call` per method, batch commands included) and every HTTP request
in `requests`, for assertions. `install(url)` plays the portal's ONAPPINSTALL POST to the install
handler; `click_to_call(...)` plays a user clicking a number (ONEXTERNALCALLSTART to the bound handler).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

APP_ONLY = frozenset(
    {
        "telephony.externalCall.register",
        "telephony.externalCall.finish",
        "telephony.externalLine.add",
        "telephony.externalLine.get",
        "event.bind",
    }
)
STATUS_CODES = frozenset(
    {"200", "304", "603", "603-S", "403", "404", "486", "484", "503", "480", "402", "423", "OTHER"}
)
DEDUP_SECONDS = 1800
WRONG_AUTH_TYPE_STATUS = 401  # the status is not documented; the code is


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args: Any) -> None:
        return

    def log_error(self, *args: Any) -> None:
        return


class ApiError(Exception):
    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status, self.code, self.description = status, code, description


@dataclass(frozen=True)
class Call:
    """One executed method (a plain call, or one command of a batch)."""

    method: str
    params: dict[str, Any]
    via: str  # "oauth" | "webhook"
    in_batch: bool
    at: float
    ok: bool
    error: str | None = None


@dataclass(frozen=True)
class HttpRequest:
    path: str  # "/rest/<method>" (webhook secret removed) or "/oauth/token/"
    at: float
    status: int
    counted: bool  # taken by the leaky bucket


@dataclass
class ExternalCall:
    call_id: str
    user_id: int
    phone: str
    type: int
    external_call_id: str | None
    line: str | None
    registered_at: float
    by_bitrix: bool = False  # registered by the portal itself (click-to-call)
    crm: tuple[str, int] | None = None
    shown: list[list[int]] = field(default_factory=list)  # each show call's users, in order
    hidden: list[list[int]] = field(default_factory=list)
    finishes: list[dict[str, Any]] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)


def default_users() -> list[dict[str, Any]]:
    return [
        {"ID": 1, "NAME": "Anna", "LAST_NAME": "Smirnova", "ACTIVE": True, "UF_PHONE_INNER": "101"},
        {"ID": 7, "NAME": "Boris", "LAST_NAME": "Ivanov", "ACTIVE": True, "UF_PHONE_INNER": "102"},
        {"ID": 9, "NAME": "Vera", "LAST_NAME": "Petrova", "ACTIVE": True, "UF_PHONE_INNER": "103"},
        {"ID": 12, "NAME": "Gleb", "LAST_NAME": "Sokolov", "ACTIVE": False, "UF_PHONE_INNER": "104"},
    ]


# ------------------------------------------------------------------ PHP-style query strings


def parse_php_query(text: str) -> dict[str, Any]:
    """PHP ``parse_str``: ``a[b][0]=1&a[b][1]=2`` -> ``{"a": {"b": ["1", "2"]}}`` (values stay strings)."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        m = re.match(r"^([^\[]+)((?:\[[^\]]*\])*)$", key)
        if not m:
            root[key] = value
            continue
        parts = [m.group(1)] + re.findall(r"\[([^\]]*)\]", m.group(2))
        node: dict[str, Any] = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if part == "":
                part = str(len(node))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = node[part] = {}
                node = child
    return _listify(root)


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        value = {k: _listify(v) for k, v in value.items()}
        if value and all(k.isdigit() for k in value):
            return [value[k] for k in sorted(value, key=int)]
    return value


def _phone_digits(text: str) -> str:
    return re.sub(r"\D", "", text or "")


def _int(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _truthy(value: Any) -> bool:
    return str(value).strip().lower() in ("1", "true", "y", "yes")


class FakeBitrix24:
    """See the module docstring."""

    def __init__(
        self,
        *,
        rate: float = 2.0,
        burst: int = 50,
        client_id: str = "local.66aa11bb22cc33.12345678",
        client_secret: str = "fake-client-secret-0123456789",
        webhook_user: int = 1,
        webhook_secret: str = "w3bh00ks3cr3t0123",
        token_ttl: float = 3600.0,
        users: list[dict[str, Any]] | None = None,
        latency: float = 0.0,
        block_private_record_urls: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst = rate, burst
        self.client_id, self.client_secret = client_id, client_secret
        self.webhook_user, self.webhook_secret = webhook_user, webhook_secret
        self.token_ttl = token_ttl
        self.users = users if users is not None else default_users()
        self.latency = latency
        self.block_private_record_urls = block_private_record_urls
        self._clock = clock
        self.member_id = secrets.token_hex(16)
        self.application_token = secrets.token_hex(16)
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        # what happened
        self.calls: list[Call] = []
        self.requests: list[HttpRequest] = []
        self.violations = 0
        self.forced_503 = 0
        self.refreshes = 0
        self.refresh_failures = 0
        self.external: dict[str, ExternalCall] = {}
        self.tasks: list[dict[str, Any]] = []
        self.lines: list[dict[str, Any]] = []
        self.bound: dict[str, str] = {}  # event -> handler URL
        self.crm: list[dict[str, Any]] = []  # {"TYPE", "ID", "NAME", "PHONE", "ASSIGNED_BY_ID"}
        self.max_level = 0.0
        # tokens
        self._access: dict[str, float] = {}  # token -> expires at (clock)
        self._refresh: set[str] = set()
        # controls
        self._throttle_until = 0.0
        self._blocked: dict[str, float] = {}
        self._failures: dict[str, list[tuple[int, str, str]]] = {}
        self._lose: dict[str, int] = {}
        # leaky bucket
        self._level = 0.0
        self._stamp = clock()
        self._ids = 100
        self._server: BaseWSGIServer | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeBitrix24:
        self._server = make_server("127.0.0.1", 0, self, threaded=True, request_handler=_Quiet)
        server = self._server
        threading.Thread(target=lambda: server.serve_forever(poll_interval=0.05), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeBitrix24:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def host(self) -> str:
        return urlsplit(self.url).netloc

    @property
    def oauth_url(self) -> str:
        return self.url + "/oauth/token/"

    @property
    def webhook_url(self) -> str:
        return f"{self.url}/rest/{self.webhook_user}/{self.webhook_secret}/"

    # ------------------------------------------------------------------ controls

    def issue_tokens(self) -> tuple[str, str]:
        """A fresh access/refresh pair (what an install hands over)."""
        with self.lock:
            access, refresh = secrets.token_hex(16), secrets.token_hex(16)
            self._access[access] = self._clock() + self.token_ttl
            self._refresh.add(refresh)
            return access, refresh

    def expire_tokens(self) -> None:
        """Every access token issued so far answers 401 expired_token from now on."""
        with self.lock:
            now = self._clock()
            for token in self._access:
                self._access[token] = min(self._access[token], now - 1)

    def throttle(self, seconds: float) -> None:
        """Answer 503 QUERY_LIMIT_EXCEEDED to every REST request for `seconds`."""
        with self.lock:
            self._throttle_until = self._clock() + seconds

    def block_method(self, method: str, seconds: float) -> None:
        with self.lock:
            self._blocked[method] = self._clock() + seconds

    def fail_next(self, method: str, status: int, code: str, description: str, times: int = 1) -> None:
        with self.lock:
            self._failures.setdefault(method, []).extend([(status, code, description)] * times)

    def lose_answer_next(self, method: str, times: int = 1) -> None:
        """Execute the next `times` calls of `method`, then answer 500 as if the answer got lost."""
        with self.lock:
            self._lose[method] = self._lose.get(method, 0) + times

    def add_crm(self, kind: str, name: str, phone: str, assigned_by: int = 1) -> int:
        with self.lock:
            self._ids += 1
            self.crm.append(
                {"TYPE": kind, "ID": self._ids, "NAME": name, "PHONE": phone, "ASSIGNED_BY_ID": assigned_by}
            )
            return self._ids

    # ------------------------------------------------------------------ queries for tests

    def calls_of(self, method: str, *, ok: bool | None = True) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method and (ok is None or c.ok == ok)]

    def registered(self, external_call_id: str) -> list[ExternalCall]:
        with self.lock:
            return [c for c in self.external.values() if c.external_call_id == external_call_id]

    def tasks_for(self, call: ExternalCall) -> list[dict[str, Any]]:
        """Tasks whose description names the call's EXTERNAL_CALL_ID (tests put ``{entry_id}`` in it)."""
        with self.lock:
            key = call.external_call_id or call.call_id
            return [t for t in self.tasks if key in str(t.get("DESCRIPTION", ""))]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.2))
            return True

    def user(self, user_id: int) -> dict[str, Any] | None:
        return next((u for u in self.users if int(u["ID"]) == int(user_id)), None)

    # ------------------------------------------------------------------ the portal playing Bitrix24

    def install(self, install_url: str) -> requests.Response:
        """POST ONAPPINSTALL to the application's install handler, as the portal does on saving the app."""
        access, refresh = self.issue_tokens()
        form = {
            "event": "ONAPPINSTALL",
            "data[VERSION]": "1",
            "data[ACTIVE]": "Y",
            "data[INSTALLED]": "Y",
            "data[LANGUAGE_ID]": "ru",
            "ts": str(int(time.time())),
            "auth[access_token]": access,
            "auth[expires_in]": str(int(self.token_ttl)),
            "auth[scope]": "telephony,crm,user,task",
            "auth[domain]": self.host,
            "auth[server_endpoint]": self.url + "/rest/",
            "auth[status]": "L",
            "auth[client_endpoint]": self.url + "/rest/",
            "auth[member_id]": self.member_id,
            "auth[refresh_token]": refresh,
            "auth[application_token]": self.application_token,
        }
        return requests.post(install_url, data=form, timeout=10)

    def click_to_call(
        self, user_id: int, phone: str, *, application_token: str | None = None, line: str = ""
    ) -> tuple[str, requests.Response]:
        """A user clicks a number: the portal registers the call and posts ONEXTERNALCALLSTART."""
        handler = self.bound.get("ONEXTERNALCALLSTART")
        if handler is None:
            raise AssertionError("nobody bound ONEXTERNALCALLSTART (event.bind)")
        with self.lock:
            call = self._new_call(int(user_id), phone, 1, None, line or None, by_bitrix=True)
        access, refresh = self.issue_tokens()
        form = {
            "event": "ONEXTERNALCALLSTART",
            "event_handler_id": "1055",
            "data[PHONE_NUMBER]": phone,
            "data[PHONE_NUMBER_INTERNATIONAL]": phone
            if phone.startswith("+")
            else "+" + _phone_digits(phone),
            "data[EXTENSION]": "",
            "data[USER_ID]": str(user_id),
            "data[CALL_LIST_ID]": "0",
            "data[LINE_NUMBER]": line,
            "data[IS_MOBILE]": "0",
            "data[CALL_ID]": call.call_id,
            "data[CRM_ENTITY_TYPE]": "CONTACT",
            "data[CRM_ENTITY_ID]": "797",
            "ts": str(int(time.time())),
            "auth[access_token]": access,
            "auth[expires_in]": "3600",
            "auth[scope]": "telephony",
            "auth[domain]": self.host,
            "auth[client_endpoint]": self.url + "/rest/",
            "auth[member_id]": self.member_id,
            "auth[refresh_token]": refresh,
            "auth[application_token]": application_token or self.application_token,
        }
        return call.call_id, requests.post(handler, data=form, timeout=10)

    # ------------------------------------------------------------------ WSGI

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        try:
            response = self._dispatch(request)
        except Exception as exc:  # a bug in the fake must not look like a Bitrix answer
            response = Response(json.dumps({"error": "FAKE_BUG", "error_description": repr(exc)}), status=599)
        if self.latency:
            time.sleep(self.latency)
        return response(environ, start_response)

    def _dispatch(self, request: Request) -> Response:
        path = request.path
        if path.rstrip("/") == "/oauth/token":
            return self._oauth(request)
        if not path.startswith("/rest/"):
            return _error(404, "NOT_FOUND", "Not found")
        parts = [p for p in path[len("/rest/") :].split("/") if p]
        params = self._params(request)
        if len(parts) == 1:
            method, via, hook = parts[0], "oauth", None
        elif len(parts) == 3:
            method, via, hook = parts[2], "webhook", (parts[0], parts[1])
        else:
            return _error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        method = method.removesuffix(".json")
        shown_path = f"/rest/{method}"
        with self.cond:
            now = self._clock()
            status, counted, refusal = self._gate(now)
            if refusal is not None:
                self._log_request(shown_path, now, status, counted)
                return refusal
            try:
                self._authorise(via, hook, params, method, now)
                if method == "batch":
                    result = self._batch(params, via, now)
                else:
                    result = self._execute(method, params, via, now, in_batch=False)
                response = self._ok(result, now)
            except ApiError as exc:
                if method != "batch":
                    self.calls.append(Call(method, _strip(params), via, False, now, False, exc.code))
                response = _error(exc.status, exc.code, exc.description)
            self._log_request(shown_path, now, response.status_code, counted)
            self.cond.notify_all()
            return response

    def _log_request(self, path: str, now: float, status: int, counted: bool) -> None:
        self.requests.append(HttpRequest(path, now, status, counted))

    def _gate(self, now: float) -> tuple[int, bool, Response | None]:
        """The leaky bucket (limits.md): (status, counted, refusal or None)."""
        self._level = max(0.0, self._level - (now - self._stamp) * self.rate)
        self._stamp = now
        if now < self._throttle_until:
            self.forced_503 += 1
            return 503, False, _error(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
        if self._level + 1 > self.burst + 1e-9:
            self.violations += 1
            return 503, False, _error(503, "QUERY_LIMIT_EXCEEDED", "Too many requests")
        self._level += 1
        self.max_level = max(self.max_level, self._level)
        return 200, True, None

    def _params(self, request: Request) -> dict[str, Any]:
        params: dict[str, Any] = parse_php_query(request.query_string.decode("latin-1"))
        if request.is_json:
            body = request.get_json(silent=True)
            if isinstance(body, dict):
                params.update(body)
        elif request.content_length:
            params.update(parse_php_query(request.get_data(as_text=True)))
        return params

    def _authorise(
        self, via: str, hook: tuple[str, str] | None, params: dict[str, Any], method: str, now: float
    ) -> None:
        if via == "webhook":
            assert hook is not None
            if hook != (str(self.webhook_user), self.webhook_secret):
                raise ApiError(401, "INVALID_CREDENTIALS", "Invalid request credentials")
            return
        token = params.get("auth")
        if not token:
            raise ApiError(401, "NO_AUTH_FOUND", "Wrong authorization data")
        expires = self._access.get(str(token))
        if expires is None:
            raise ApiError(401, "invalid_token", "The access token provided is invalid.")
        if expires <= now:
            raise ApiError(401, "expired_token", "The access token provided has expired.")

    def _ok(self, result: Any, now: float) -> Response:
        wall = time.time()
        body = {
            "result": result,
            "time": {
                "start": wall,
                "finish": wall + 0.001,
                "duration": 0.001,
                "processing": 0.0005,
                "date_start": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(wall)),
                "date_finish": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(wall)),
                "operating_reset_at": int(wall) + 600,
                "operating": 0,
            },
        }
        return Response(json.dumps(body), status=200, mimetype="application/json")

    # ------------------------------------------------------------------ OAuth server

    def _oauth(self, request: Request) -> Response:
        params = {**dict(request.args), **dict(request.form)}
        now = self._clock()
        with self.cond:
            self.requests.append(HttpRequest("/oauth/token/", now, 200, False))
            if params.get("client_id") != self.client_id or params.get("client_secret") != self.client_secret:
                self.refresh_failures += 1
                return _error(401, "invalid_client", "Invalid client credentials")
            if params.get("grant_type") != "refresh_token":
                return _error(400, "invalid_request", "Only refresh_token is supported by this fake")
            token = params.get("refresh_token", "")
            if token not in self._refresh:
                self.refresh_failures += 1
                return _error(400, "invalid_grant", "Invalid authorization tokens")
            self._refresh.discard(token)  # single use: the old refresh token is dead from now on
            access, refresh = secrets.token_hex(16), secrets.token_hex(16)
            self._access[access] = now + self.token_ttl
            self._refresh.add(refresh)
            self.refreshes += 1
            self.cond.notify_all()
            body = {
                "access_token": access,
                "client_endpoint": self.url + "/rest/",
                "domain": "oauth.bitrix.info",
                "expires_in": int(self.token_ttl),
                "member_id": self.member_id,
                "refresh_token": refresh,
                "scope": "app",
                "server_endpoint": self.url + "/rest/",
                "status": "L",
            }
            return Response(json.dumps(body), status=200, mimetype="application/json")

    # ------------------------------------------------------------------ batch

    def _batch(self, params: dict[str, Any], via: str, now: float) -> dict[str, Any]:
        cmd = params.get("cmd")
        if not isinstance(cmd, dict) or not cmd:
            raise ApiError(400, "INVALID_ARG_VALUE", "cmd should be a non-empty object")
        if len(cmd) > 50:
            raise ApiError(400, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
        halt = _truthy(params.get("halt", 0))
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        times: dict[str, Any] = {}
        for key, text in cmd.items():
            method, _, query = str(text).partition("?")
            sub = _resolve_refs(parse_php_query(query), results)
            if method == "batch":
                errors[key] = {
                    "error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
                    "error_description": "Batch call is not allowed",
                }
            else:
                try:
                    results[key] = self._execute(method, sub, via, now, in_batch=True)
                    times[key] = {"operating_reset_at": int(time.time()) + 600, "operating": 0}
                except ApiError as exc:
                    self.calls.append(Call(method, _strip(sub), via, True, now, False, exc.code))
                    errors[key] = {"error": exc.code, "error_description": exc.description}
            if halt and errors:
                break
        return {
            "result": results or [],
            "result_error": errors or [],
            "result_total": [],
            "result_next": [],
            "result_time": times or [],
        }

    # ------------------------------------------------------------------ methods

    def _execute(self, method: str, params: dict[str, Any], via: str, now: float, *, in_batch: bool) -> Any:
        if via == "webhook" and method in APP_ONLY:
            raise ApiError(
                WRONG_AUTH_TYPE_STATUS,
                "WRONG_AUTH_TYPE",
                "Current authorization type is denied for this method",
            )
        blocked = self._blocked.get(method)
        if blocked is not None and blocked > now:
            raise ApiError(429, "OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.")
        failures = self._failures.get(method)
        if failures:
            status, code, description = failures.pop(0)
            raise ApiError(status, code, description)
        handler = {
            "telephony.externalCall.register": self._register,
            "telephony.externalCall.show": self._show,
            "telephony.externalCall.hide": self._hide,
            "telephony.externalCall.finish": self._finish,
            "telephony.externalCall.attachRecord": self._attach,
            "telephony.externalCall.searchCrmEntities": self._search,
            "telephony.externalLine.add": self._line_add,
            "telephony.externalLine.get": self._line_get,
            "user.get": self._user_get,
            "event.bind": self._event_bind,
            "tasks.task.add": self._task_add,
            "tasks.task.complete": self._task_complete,
        }.get(method)
        if handler is None:
            raise ApiError(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        result = handler(params, now)
        self.calls.append(Call(method, _strip(params), via, in_batch, now, True))
        if self._lose.get(method):
            self._lose[method] -= 1
            raise ApiError(500, "INTERNAL_SERVER_ERROR", "Internal server error")
        return result

    def _find_user(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("USER_ID") not in (None, ""):
            user = self.user(_int(params["USER_ID"]) or -1)
        elif params.get("USER_PHONE_INNER") not in (None, ""):
            inner = str(params["USER_PHONE_INNER"])
            user = next((u for u in self.users if str(u.get("UF_PHONE_INNER")) == inner), None)
        else:
            raise ApiError(400, "ERROR_CORE", "USER_ID or USER_PHONE_INNER should be set")
        if user is None or not user.get("ACTIVE"):
            raise ApiError(400, "ERROR_CORE", "User is not found or is not active")
        return user

    def _new_call(
        self,
        user_id: int,
        phone: str,
        type_: int,
        external: str | None,
        line: str | None,
        *,
        by_bitrix: bool = False,
    ) -> ExternalCall:
        digest = hashlib.md5(f"{phone}{user_id}{time.time_ns()}".encode()).hexdigest()
        call = ExternalCall(
            call_id=f"externalCall.{digest}.{int(time.time())}",
            user_id=user_id,
            phone=phone,
            type=type_,
            external_call_id=external,
            line=line,
            registered_at=self._clock(),
            by_bitrix=by_bitrix,
        )
        self.external[call.call_id] = call
        return call

    def _match_crm(self, phone: str) -> dict[str, Any] | None:
        digits = _phone_digits(phone)[-10:]
        for entity in self.crm:
            if digits and _phone_digits(entity["PHONE"])[-10:] == digits:
                return entity
        return None

    def _register(self, p: dict[str, Any], now: float) -> dict[str, Any]:
        user = self._find_user(p)
        phone = str(p.get("PHONE_NUMBER") or "")
        if not phone:
            raise ApiError(400, "ERROR_CORE", "PHONE_NUMBER should be set")
        if not re.fullmatch(r"\+?\d{3,20}", phone):
            raise ApiError(400, "ERROR_CORE", "Unsupported phone number format")
        type_ = _int(p.get("TYPE"))
        if type_ not in (1, 2, 3, 4, 5):
            raise ApiError(400, "ERROR_CORE", "Unknown TYPE")
        if p.get("CALL_START_DATE") and not re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d([+-]\d\d:\d\d|Z)", str(p["CALL_START_DATE"])
        ):
            raise ApiError(400, "ERROR_CORE", "Wrong CALL_START_DATE format")
        external = str(p["EXTERNAL_CALL_ID"]) if p.get("EXTERNAL_CALL_ID") not in (None, "") else None
        line = str(p["LINE_NUMBER"]) if p.get("LINE_NUMBER") not in (None, "") else None
        # The documented trap: the same PHONE_NUMBER+TYPE+USER(+LINE_NUMBER, +EXTERNAL_CALL_ID) within
        # 30 minutes returns the CALL_ID registered before.
        for call in self.external.values():
            if (
                not call.by_bitrix
                and call.phone == phone
                and call.type == type_
                and call.user_id == int(user["ID"])
                and call.line == line
                and call.external_call_id == external
                and now - call.registered_at < DEDUP_SECONDS
            ):
                return self._register_result(call, created=False)
        call = self._new_call(int(user["ID"]), phone, type_, external, line)
        entity = self._match_crm(phone)
        created = False
        if entity is not None:
            call.crm = (entity["TYPE"], entity["ID"])
        elif _truthy(p.get("CRM_CREATE", 0)):
            entity_id = self.add_crm("LEAD", f"Lead {phone}", phone, int(user["ID"]))
            call.crm = ("LEAD", entity_id)
            created = True
        if _truthy(p.get("SHOW", 1)):
            call.shown.append([int(user["ID"])])
        return self._register_result(call, created=created)

    @staticmethod
    def _register_result(call: ExternalCall, *, created: bool) -> dict[str, Any]:
        result: dict[str, Any] = {
            "CALL_ID": call.call_id,
            "CRM_CREATED_LEAD": call.crm[1] if created and call.crm else None,
            "CRM_CREATED_ENTITIES": [{"ENTITY_TYPE": call.crm[0], "ENTITY_ID": call.crm[1]}]
            if created and call.crm
            else [],
        }
        if call.crm:
            result["CRM_ENTITY_TYPE"], result["CRM_ENTITY_ID"] = call.crm
        return result

    def _known_call(self, p: dict[str, Any]) -> ExternalCall:
        call_id = str(p.get("CALL_ID") or "")
        if not call_id:
            raise ApiError(400, "ERROR_CORE", "CALL_ID should be set")
        call = self.external.get(call_id)
        if call is None:
            raise ApiError(400, "ERROR_CORE", "Call is not found")
        return call

    def _user_ids(self, p: dict[str, Any], call: ExternalCall) -> list[int]:
        value = p.get("USER_ID")
        if value in (None, ""):
            return [call.user_id]
        values = value if isinstance(value, list) else [value]
        ids = [_int(v) for v in values]
        if any(i is None or self.user(i) is None for i in ids):
            raise ApiError(400, "ERROR_CORE", "User is not found")
        return [int(i) for i in ids if i is not None]

    def _show(self, p: dict[str, Any], now: float) -> bool:
        call = self._known_call(p)
        call.shown.append(self._user_ids(p, call))
        return True

    def _hide(self, p: dict[str, Any], now: float) -> bool:
        call = self._known_call(p)
        call.hidden.append(self._user_ids(p, call))
        return True

    def _finish(self, p: dict[str, Any], now: float) -> dict[str, Any]:
        call = self._known_call(p)
        user = self._find_user(p)
        duration = _int(p.get("DURATION", 0))
        if duration is None or duration < 0:
            raise ApiError(400, "ERROR_CORE", "Wrong DURATION")
        status = str(p.get("STATUS_CODE") or ("200" if duration > 0 else "304"))
        if status not in STATUS_CODES:
            raise ApiError(400, "ERROR_CORE", "Unknown STATUS_CODE")
        call.finishes.append({**p, "USER": int(user["ID"]), "DURATION": duration, "STATUS_CODE": status})
        self._ids += 1
        return {
            "ID": self._ids,
            "CALL_ID": call.call_id,
            "PORTAL_USER_ID": int(user["ID"]),
            "PHONE_NUMBER": call.phone,
            "CALL_DURATION": duration,
            "CALL_STATUS": 1 if status == "200" else 0,
            "CALL_FAILED_CODE": status,
            "CRM_ACTIVITY_ID": self._ids + 1000,
            "CRM_ENTITY_TYPE": call.crm[0] if call.crm else None,
            "CRM_ENTITY_ID": call.crm[1] if call.crm else None,
        }

    def _attach(self, p: dict[str, Any], now: float) -> dict[str, Any]:
        call = self._known_call(p)
        url, name = str(p.get("RECORD_URL") or ""), str(p.get("FILENAME") or "")
        if not url and not name:
            raise ApiError(
                400,
                "",
                "Required parameters are not set. Request should contain either URL or FILENAME parameter",
            )
        if not call.finishes:
            raise ApiError(
                400, "", "Call is not found in the statistic table. It looks like it is not finished yet."
            )
        if name and not name.lower().endswith((".mp3", ".wav")):
            raise ApiError(400, "ERROR_CORE", "Wrong file extension. Only wav and mp3 are allowed")
        host = urlsplit(url).hostname or ""
        if (
            url
            and self.block_private_record_urls
            and (host in ("localhost", "::1") or host.startswith(("127.", "10.", "192.168.")))
        ):
            raise ApiError(400, "", "Record URL resolves to a non-public address and was blocked.")
        call.records.append(dict(p))
        self._ids += 1
        return {"FILE_ID": self._ids}

    def _search(self, p: dict[str, Any], now: float) -> list[dict[str, Any]]:
        digits = _phone_digits(str(p.get("PHONE_NUMBER") or ""))[-10:]
        out = []
        for entity in self.crm:
            if digits and _phone_digits(entity["PHONE"])[-10:] == digits:
                user = self.user(entity["ASSIGNED_BY_ID"]) or {}
                out.append(
                    {
                        "CRM_ENTITY_TYPE": entity["TYPE"],
                        "CRM_ENTITY_ID": entity["ID"],
                        "ASSIGNED_BY_ID": entity["ASSIGNED_BY_ID"],
                        "NAME": entity["NAME"],
                        "ASSIGNED_BY": {
                            "ID": entity["ASSIGNED_BY_ID"],
                            "TIMEMAN_STATUS": "opened",
                            "USER_PHONE_INNER": user.get("UF_PHONE_INNER", ""),
                            "WORK_PHONE": "",
                            "PERSONAL_MOBILE": "",
                        },
                    }
                )
        return out

    def _line_add(self, p: dict[str, Any], now: float) -> dict[str, Any]:
        if not p.get("NUMBER"):
            raise ApiError(400, "ERROR_CORE", "NUMBER should be set")
        self._ids += 1
        self.lines.append(
            {"NUMBER": str(p["NUMBER"]), "NAME": str(p.get("NAME") or ""), "CRM_AUTO_CREATE": "Y"}
        )
        return {"ID": self._ids}

    def _line_get(self, p: dict[str, Any], now: float) -> list[dict[str, Any]]:
        return list(self.lines)

    def _user_get(self, p: dict[str, Any], now: float) -> list[dict[str, Any]]:
        flt = p.get("FILTER") or p.get("filter") or {}
        rows = []
        for user in self.users:
            keep = True
            for key, value in flt.items() if isinstance(flt, dict) else []:
                if key == "ACTIVE":
                    keep &= bool(user.get("ACTIVE")) == _truthy(value)
                elif key == "ID":
                    keep &= str(user.get("ID")) == str(value)
                elif key == "UF_PHONE_INNER":
                    keep &= str(user.get("UF_PHONE_INNER")) == str(value)
            if keep:
                rows.append(dict(user))
        start = _int(p.get("start")) or 0
        return rows[start : start + 50]

    def _event_bind(self, p: dict[str, Any], now: float) -> bool:
        event, handler = str(p.get("event") or "").upper(), str(p.get("handler") or "")
        if not event or not handler:
            raise ApiError(400, "ERROR_CORE", "Event and handler should be set")
        if event not in ("ONEXTERNALCALLSTART", "ONEXTERNALCALLBACKSTART", "ONAPPUNINSTALL"):
            raise ApiError(400, "ERROR_EVENT_NOT_FOUND", "Event not found")
        if self.bound.get(event) == handler:
            raise ApiError(400, "ERROR_CORE", "Handler already binded")
        self.bound[event] = handler
        return True

    def _task_add(self, p: dict[str, Any], now: float) -> dict[str, Any]:
        fields = p.get("fields")
        if not isinstance(fields, dict) or not fields:
            raise ApiError(400, "100", "Could not find value for parameter {fields}")
        if not fields.get("TITLE"):
            raise ApiError(400, "ERROR_CORE", "Task title not specified<br>")
        responsible = _int(fields.get("RESPONSIBLE_ID"))
        if responsible is None:
            raise ApiError(400, "ERROR_CORE", "Assignee not specified<br>")
        if self.user(responsible) is None:
            raise ApiError(400, "ERROR_CORE", 'User specified in the "Assignee" field not found<br>')
        self._ids += 1
        task = {"id": str(self._ids), **fields}
        self.tasks.append(task)
        return {"task": {"id": str(self._ids), "title": fields["TITLE"], "responsibleId": str(responsible)}}

    def _task_complete(self, p: dict[str, Any], now: float) -> dict[str, Any]:
        """tasks.task.complete: status 5 (completed); an unknown task is refused as Bitrix24 does."""
        task_id = _int(p.get("taskId"))
        if task_id is None:
            raise ApiError(400, "100", "Could not find value for parameter {taskId}")
        task = next((t for t in self.tasks if t["id"] == str(task_id)), None)
        if task is None:
            raise ApiError(
                400, "ERROR_CORE", "TASKS_ERROR_EXCEPTION_#8; Task not found or not accessible; 8<br>"
            )
        task["STATUS"] = "5"
        task["CLOSED_DATE"] = now
        return {"task": {"id": str(task_id), "status": "5"}}


def _resolve_refs(value: Any, results: dict[str, Any]) -> Any:
    """Replace ``$result[key][field]...`` in batch parameters with earlier results."""
    if isinstance(value, dict):
        return {k: _resolve_refs(v, results) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_refs(v, results) for v in value]
    if not isinstance(value, str) or "$result[" not in value:
        return value

    def lookup(m: re.Match[str]) -> Any:
        node: Any = results
        for part in re.findall(r"\[([^\]]*)\]", m.group(0)):
            if isinstance(node, dict):
                node = node.get(part)
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return None
        return node

    pattern = re.compile(r"\$result(\[[^\]]*\])+")
    whole = pattern.fullmatch(value)
    if whole:
        found = lookup(whole)
        return "" if found is None else found
    return pattern.sub(lambda m: str(lookup(m) or ""), value)


def _strip(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "auth"}


def _error(status: int, code: str, description: str) -> Response:
    return Response(
        json.dumps({"error": code, "error_description": description}),
        status=status,
        mimetype="application/json",
    )


# ------------------------------------------------------------------ in-memory stores for unit tests


def connector_toml(fake: FakeBitrix24, **settings: Any) -> str:
    """A ``[connectors.bitrix24]`` section for `callbridge run` pointed at `fake` (the application mode),
    with `settings` on top; dict values become sub-tables (e.g. ``users={"101": "1"}``)."""
    values: dict[str, Any] = {
        "portal": fake.url,
        "oauth_url": fake.oauth_url,
        "client_id": fake.client_id,
        "client_secret": fake.client_secret,
        **settings,
    }
    lines = ["[connectors.bitrix24]"]
    tables = []
    for key, value in values.items():
        if isinstance(value, dict):
            tables.append(f"\n[connectors.bitrix24.{key}]")
            tables.extend(f"{json.dumps(str(k))} = {json.dumps(str(v))}" for k, v in value.items())
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines + tables) + "\n"
