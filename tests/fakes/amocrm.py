"""A loopback server that answers like amoCRM API v4, for contract and end-to-end tests and the benchmark.

What it holds to (shared/docs/apis/amocrm.md; [fake] marks where the vendor's docs say nothing and the
fake had to choose):

* paths: ``GET /api/v4/account``, ``GET /api/v4/users``, ``GET /api/v4/contacts?query=``,
  ``POST /api/v4/calls``, ``POST /api/v4/leads/unsorted/sip``, ``POST`` and ``PATCH /api/v4/tasks``,
  ``POST /api/v2/events`` (202), ``POST /oauth2/access_token``; anything else is 404;
* auth: ``Authorization: Bearer`` with the long-lived token, or with an access token it issued (OAuth). A
  refresh token works once: a second use is refused with amoCRM's OAuthProblemJson answer;
  `expire_access_tokens` / `expire_after` make the issued access tokens stop working (401);
* field names and types of every body, unknown fields rejected [fake: amoCRM's strictness is unknown;
  being strict catches typos]; errors as problem+json with ``validation-errors``;
* ``204 No Content`` for a contact search without a match; contacts in unsorted leads are not searchable
  until accepted (amoCRM: "До принятия неразобранной сделки, контакты ... недоступны");
* ``POST /api/v4/calls`` adds a call only when a contact has the number (last 10 digits); otherwise the
  item comes back in ``errors`` [fake: the shape of that error]; a repeated ``uniq`` is rejected (400)
  [fake: amoCRM "may" reject it];
* the rate limit: at most `rate_limit` requests (7) in any `window` (1 s), counted on arrival over every
  path; one more is answered 429 and counted in `violations`. `throttle` answers 429 to everything for a
  while (a vendor in trouble; counted in `scripted_429`, not in `violations`).
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PROBLEM = "application/problem+json"
HAL = "application/hal+json"
CALL_STATUSES = range(1, 9)  # 1..7 documented, 8 = undefined in the SDK
ENTITY_TYPES = {"leads", "contacts", "companies", "customers"}


@dataclass
class Recorded:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    token: str | None
    at: float  # time.monotonic() on arrival
    status: int = 0
    outcome: str = ""  # ok | rate_limited | throttled | unauthorized | invalid | not_found


class _Invalid(Exception):
    def __init__(self, errors: list[dict[str, str]], request_id: str = "0") -> None:
        super().__init__("validation failed")
        self.errors = errors
        self.request_id = request_id


@dataclass
class FakeAmoCrm:
    long_lived_token: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    redirect_uri: str | None = None
    rate_limit: int = 7
    window: float = 1.0
    access_ttl: int = 86400
    account_name: str = "Fake Motors"
    subdomain: str = "fakemotors"
    users: list[dict[str, Any]] = field(default_factory=list)

    requests: list[Recorded] = field(default_factory=list)
    violations: int = 0
    scripted_429: int = 0
    contacts: dict[int, dict[str, Any]] = field(default_factory=dict)
    leads: dict[int, dict[str, Any]] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)
    unsorted: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    popups: list[dict[str, Any]] = field(default_factory=list)
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    refresh_uses: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self._arrivals: deque[float] = deque()
        self._throttle_until = 0.0
        self._scripted: deque[int] = deque()  # statuses to answer next, whatever is asked
        self._next_id = 1000
        self._codes: set[str] = set()
        self._access: dict[str, float] = {}  # access token -> expires (monotonic)
        self._refresh: set[str] = set()  # refresh tokens not used yet
        self._expire_after: int | None = None
        self._api_ok = 0
        self._uniq_calls: set[str] = set()
        self._uniq_unsorted: set[str] = set()
        self.server: ThreadingHTTPServer | None = None
        if not self.users:
            self.users = [
                {"id": 1001, "name": "Анна Смирнова", "email": "user101@example.com"},
                {"id": 1002, "name": "Борис Иванов", "email": "USER102@example.com"},
                {"id": 1003, "name": "Вера Петрова", "email": "user103@example.com"},
                {"id": 1009, "name": "Дежурный менеджер", "email": "duty@example.com"},
            ]

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> FakeAmoCrm:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                return

            def _serve(self) -> None:
                arrived = time.monotonic()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, headers, body = fake._answer(self.command, self.path, self.headers, raw, arrived)
                data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if data:
                    self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _serve  # noqa: N815

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 64

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def __enter__(self) -> FakeAmoCrm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    # ------------------------------------------------------------------------------ controls

    def new_id(self) -> int:
        with self.lock:
            self._next_id += 1
            return self._next_id

    def add_contact(
        self,
        name: str,
        phones: Iterable[str],
        *,
        responsible_user_id: int = 1001,
        leads: int = 0,
    ) -> int:
        """A searchable contact with these phone values (as a person would type them) and `leads` deals."""
        with self.lock:
            contact_id = self.new_id()
            lead_refs = []
            for _ in range(leads):
                lead_id = self.new_id()
                self.leads[lead_id] = {"id": lead_id, "name": f"Deal of {name}", "contact_id": contact_id}
                lead_refs.append({"id": lead_id})
            self.contacts[contact_id] = {
                "id": contact_id,
                "name": name,
                "responsible_user_id": responsible_user_id,
                "custom_fields_values": [
                    {
                        "field_id": 3,
                        "field_name": "Телефон",
                        "field_code": "PHONE",
                        "field_type": "multitext",
                        "values": [{"value": p, "enum_code": "WORK", "enum_id": 1} for p in phones],
                    }
                ],
                "_embedded": {"leads": lead_refs, "companies": []},
            }
            return contact_id

    def issue_code(self, code: str | None = None) -> str:
        """An authorization code the token endpoint will accept once."""
        code = code or "def50200" + secrets.token_hex(20)
        with self.lock:
            self._codes.add(code)
        return code

    def throttle(self, seconds: float) -> None:
        """Answer 429 to every request for `seconds` (not counted as violations)."""
        with self.lock:
            self._throttle_until = time.monotonic() + seconds

    def fail_next(self, status: int, times: int = 1) -> None:
        """Answer the next `times` requests with `status`, whatever they ask."""
        with self.lock:
            self._scripted.extend([status] * times)

    def expire_access_tokens(self) -> None:
        """Every access token issued so far stops working (as if it had expired)."""
        with self.lock:
            self._access.clear()

    def expire_after(self, api_requests: int) -> None:
        """Expire the access tokens once `api_requests` more API requests have been served."""
        with self.lock:
            self._expire_after = self._api_ok + api_requests

    def recorded(
        self, path: str | None = None, *, method: str | None = None, outcome: str | None = "ok"
    ) -> list[Recorded]:
        with self.lock:
            return [
                r
                for r in self.requests
                if (path is None or r.path == path)
                and (method is None or r.method == method)
                and (outcome is None or r.outcome == outcome)
            ]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate():
                    return True
            time.sleep(0.02)
        with self.lock:
            return predicate()

    def max_in_window(self) -> int:
        """The most requests that arrived within any `window` seconds."""
        with self.lock:
            times = sorted(r.at for r in self.requests)
        best, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= self.window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def tightest_span(self) -> float | None:
        """The shortest time in which `rate_limit` + 1 requests arrived (1 s or more means no violation
        could happen; how far above 1 s it stays is the client's safety margin)."""
        with self.lock:
            times = sorted(r.at for r in self.requests)
        n = self.rate_limit + 1
        spans = [times[i + n - 1] - times[i] for i in range(len(times) - n + 1)]
        return min(spans) if spans else None

    def accept_unsorted(self, uid: str) -> int:
        """Accept an unsorted lead: its contact becomes searchable; returns the contact id."""
        with self.lock:
            item = next(u for u in self.unsorted if u["uid"] == uid)
            contact = item["contact"]
            self.contacts[contact["id"]] = contact
            return contact["id"]

    # ------------------------------------------------------------------------------ dispatch

    def _answer(
        self, method: str, target: str, headers: Any, raw: bytes, arrived: float
    ) -> tuple[int, dict[str, str], Any]:
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        auth = headers.get("Authorization") or ""
        token = auth[7:] if auth.startswith("Bearer ") else None
        body: Any = None
        with self.lock:
            record = Recorded(method, parts.path, query, None, token, arrived)
            self.requests.append(record)
            # The rate limit counts every arrival, whatever happens to it next.
            while self._arrivals and arrived - self._arrivals[0] >= self.window:
                self._arrivals.popleft()
            over = len(self._arrivals) >= self.rate_limit
            self._arrivals.append(arrived)
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode("utf-8", "replace")
            record.body = body
            if over:
                self.violations += 1
                return self._done(
                    record, 429, "rate_limited", _problem(429, "Too Many Requests", "Too many requests")
                )
            if self._scripted:
                status = self._scripted.popleft()
                return self._done(
                    record, status, "scripted", _problem(status, "Scripted", "scripted failure")
                )
            if arrived < self._throttle_until:
                self.scripted_429 += 1
                return self._done(
                    record, 429, "throttled", _problem(429, "Too Many Requests", "Too many requests")
                )
            if parts.path == "/oauth2/access_token" and method == "POST":
                return self._token(record, body, headers)
            route = _ROUTES.get((method, parts.path))
            if route is None:
                return self._done(record, 404, "not_found", _problem(404, "Not Found", "Method not found"))
            if not self._authorised(token):
                return self._done(record, 401, "unauthorized", _problem(401, "Unauthorized", "Unauthorized"))
            if method == "POST" and not str(headers.get("Content-Type", "")).startswith("application/json"):
                return self._done(
                    record, 415, "invalid", _problem(415, "Unsupported Media Type", "JSON only")
                )
            try:
                status, answer = route(self, query, body)
            except _Invalid as exc:
                payload = _problem(400, "Bad Request", "Request validation failed")
                payload["validation-errors"] = [{"request_id": exc.request_id, "errors": exc.errors}]
                return self._done(record, 400, "invalid", payload)
            self._api_ok += 1
            if self._expire_after is not None and self._api_ok >= self._expire_after:
                self._expire_after = None
                self._access.clear()
            return self._done(record, status, "ok", answer)

    def _done(
        self, record: Recorded, status: int, outcome: str, body: Any
    ) -> tuple[int, dict[str, str], Any]:
        record.status, record.outcome = status, outcome
        kind = PROBLEM if status >= 400 else HAL
        return status, ({"Content-Type": kind} if body is not None else {}), body

    def _authorised(self, token: str | None) -> bool:
        if token is None:
            return False
        if self.long_lived_token is not None:
            return secrets.compare_digest(token, self.long_lived_token)
        expires = self._access.get(token)
        return expires is not None and expires > time.monotonic()

    # ------------------------------------------------------------------------------ OAuth

    def _token(self, record: Recorded, body: Any, headers: Any) -> tuple[int, dict[str, str], Any]:
        entry = {"grant_type": None, "ok": False}
        self.token_requests.append(entry)

        def refuse(hint: str) -> tuple[int, dict[str, str], Any]:
            payload = {
                "hint": hint,
                "title": "Некорректный запрос",
                "type": "https://developers.amocrm.ru/v3/errors/OAuthProblemJson",
                "status": 400,
                "detail": "В запросе отсутствует ряд параметров или параметры невалидны",
            }
            return self._done(record, 400, "invalid", payload)

        if not isinstance(body, dict):
            return refuse("The request body must be JSON")
        grant = body.get("grant_type")
        entry["grant_type"] = grant
        if self.client_id is None or body.get("client_id") != self.client_id:
            return refuse("Client authentication failed")
        if body.get("client_secret") != self.client_secret:
            return refuse("Client authentication failed")
        if self.redirect_uri is not None and body.get("redirect_uri") != self.redirect_uri:
            return refuse("Redirect URI is invalid")
        if grant == "authorization_code":
            code = body.get("code")
            if code not in self._codes:
                return refuse("Authorization code has been revoked")
            self._codes.discard(code)
        elif grant == "refresh_token":
            token = body.get("refresh_token")
            self.refresh_uses[str(token)] = self.refresh_uses.get(str(token), 0) + 1
            if token not in self._refresh:
                return refuse("Token has been revoked")
            self._refresh.discard(token)
        else:
            return refuse("The authorization grant type is not supported")
        n = len(self.token_requests)
        access = f"at{n}-" + secrets.token_urlsafe(24)
        refresh = f"rt{n}-" + secrets.token_urlsafe(24)
        self._access[access] = time.monotonic() + self.access_ttl
        self._refresh.add(refresh)
        entry["ok"] = True
        entry["refresh_token"] = refresh
        answer = {
            "token_type": "Bearer",
            "expires_in": self.access_ttl,
            "access_token": access,
            "refresh_token": refresh,
        }
        return self._done(record, 200, "ok", answer)

    @property
    def current_refresh_token(self) -> str | None:
        with self.lock:
            issued = [t["refresh_token"] for t in self.token_requests if t.get("ok")]
            return issued[-1] if issued and issued[-1] in self._refresh else None

    # ------------------------------------------------------------------------------ API

    def _account(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        return 200, {
            "id": 29000001,
            "name": self.account_name,
            "subdomain": self.subdomain,
            "current_user_id": self.users[0]["id"],
            "country": "RU",
            "currency": "RUB",
        }

    def _users(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        page = max(1, int(query.get("page") or 1))
        limit = min(250, max(1, int(query.get("limit") or 50)))
        chunk = self.users[(page - 1) * limit : page * limit]
        if not chunk:
            return 204, None
        links: dict[str, Any] = {"self": {"href": f"/api/v4/users?page={page}&limit={limit}"}}
        if page * limit < len(self.users):
            links["next"] = {"href": f"/api/v4/users?page={page + 1}&limit={limit}"}
        users = [{**u, "lang": "ru", "rights": {"is_admin": u is self.users[0]}} for u in chunk]
        return 200, {
            "_total_items": len(self.users),
            "_page": page,
            "_links": links,
            "_embedded": {"users": users},
        }

    def _search(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        text = query.get("query", "").strip()
        if not text:
            found = list(self.contacts.values())
        else:
            digits = re.sub(r"\D", "", text)
            phone_like = re.fullmatch(r"[\d\s()+-]+", text) is not None and len(digits) >= 3
            found = []
            for contact in self.contacts.values():
                phones = [
                    re.sub(r"\D", "", v["value"])
                    for f in contact["custom_fields_values"]
                    for v in f["values"]
                ]
                if (phone_like and any(digits in p for p in phones)) or text.casefold() in contact[
                    "name"
                ].casefold():
                    found.append(contact)
        if not found:
            return 204, None
        with_leads = "leads" in query.get("with", "").split(",")
        items = []
        for contact in found[:250]:
            item = {k: v for k, v in contact.items() if k != "_embedded"}
            item["_embedded"] = {
                "leads": contact["_embedded"]["leads"] if with_leads else [],
                "companies": [],
            }
            items.append(item)
        return 200, {
            "_page": 1,
            "_links": {"self": {"href": "/api/v4/contacts"}},
            "_embedded": {"contacts": items},
        }

    def _contact_by_phone(self, phone: str) -> dict[str, Any] | None:
        last10 = re.sub(r"\D", "", phone)[-10:]
        if len(last10) < 10:
            return None
        for contact in self.contacts.values():
            for f in contact["custom_fields_values"]:
                if f["field_code"] == "PHONE" and any(
                    re.sub(r"\D", "", v["value"])[-10:] == last10 for v in f["values"]
                ):
                    return contact
        return None

    def _add_calls(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        items = _list(body)
        allowed = {
            "direction",
            "uniq",
            "duration",
            "source",
            "link",
            "phone",
            "call_result",
            "call_status",
            "responsible_user_id",
            "call_responsible",
            "created_by",
            "updated_by",
            "created_at",
            "updated_at",
            "request_id",
        }
        for i, item in enumerate(items):
            rid = str(item.get("request_id", i)) if isinstance(item, dict) else str(i)
            errors = _check(item, allowed, required={"direction", "duration", "source", "phone"})
            if isinstance(item, dict):
                errors += _typed(
                    item,
                    {
                        "duration": int,
                        "source": str,
                        "phone": str,
                        "uniq": str,
                        "link": str,
                        "call_result": str,
                        "call_status": int,
                        "responsible_user_id": int,
                        "created_by": int,
                        "updated_by": int,
                        "created_at": int,
                        "updated_at": int,
                    },
                )
                if item.get("direction") not in ("inbound", "outbound"):
                    errors.append(_err("direction", "NotSupportedChoice", "inbound or outbound"))
                if "call_status" in item and item["call_status"] not in CALL_STATUSES:
                    errors.append(_err("call_status", "NotSupportedChoice", "1..7"))
                errors += self._user_errors(item, ("responsible_user_id", "created_by"))
                if item.get("uniq") in self._uniq_calls:
                    errors.append(_err("uniq", "NotUnique", "a call with this uniq was already added"))
            if errors:
                raise _Invalid(errors, rid)
        added, failed = [], []
        for i, item in enumerate(items):
            rid = str(item.get("request_id", i))
            contact = self._contact_by_phone(item["phone"])
            if contact is None:
                failed.append(
                    {"request_id": rid, "status": 404, "title": "Not Found", "detail": "Entity not found"}
                )
                continue
            leads = contact["_embedded"]["leads"]
            entity = ("leads", leads[0]["id"]) if len(leads) == 1 else ("contacts", contact["id"])
            call = {
                "id": self.new_id(),
                "entity_id": entity[1],
                "entity_type": entity[0],
                "account_id": 29000001,
                "request_id": rid,
            }
            if item.get("uniq"):
                self._uniq_calls.add(item["uniq"])
            self.calls.append({**item, "_created": call})
            added.append(call)
        return 200, {"_total_items": len(added), "errors": failed, "_embedded": {"calls": added}}

    def _add_unsorted(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        items = _list(body)
        meta_allowed = {
            "uniq",
            "duration",
            "service_code",
            "link",
            "phone",
            "called_at",
            "from",
            "call_responsible",
            "is_call_event_needed",
        }
        for i, item in enumerate(items):
            rid = str(item.get("request_id", i)) if isinstance(item, dict) else str(i)
            errors = _check(
                item,
                {
                    "source_name",
                    "source_uid",
                    "pipeline_id",
                    "created_at",
                    "request_id",
                    "metadata",
                    "_embedded",
                },
                required={"source_name", "source_uid", "metadata"},
            )
            if isinstance(item, dict):
                errors += _typed(
                    item, {"source_name": str, "source_uid": str, "pipeline_id": int, "created_at": int}
                )
                meta = item.get("metadata")
                errors += [
                    _err(f"metadata.{e['path']}", e["code"], e["detail"])
                    for e in _check(meta, meta_allowed, set())
                ]
                if isinstance(meta, dict):
                    errors += [
                        _err(f"metadata.{e['path']}", e["code"], e["detail"])
                        for e in _typed(
                            meta,
                            {
                                "uniq": str,
                                "duration": int,
                                "service_code": str,
                                "link": str,
                                "called_at": int,
                                "is_call_event_needed": bool,
                                "phone": (str, int),
                                "from": (str, int),
                                "call_responsible": (int, str),
                            },
                        )
                    ]
                    if meta.get("uniq") in self._uniq_unsorted:
                        errors.append(_err("metadata.uniq", "NotUnique", "this call was already added"))
                embedded = item.get("_embedded") or {}
                if not isinstance(embedded, dict) or set(embedded) - {"leads", "contacts", "companies"}:
                    errors.append(_err("_embedded", "InvalidType", "leads, contacts, companies"))
                else:
                    for n, lead in enumerate(embedded.get("leads") or []):
                        errors += [
                            _err(f"_embedded.leads.{n}.{e['path']}", e["code"], e["detail"])
                            for e in _typed(lead, {"name": str, "price": int, "responsible_user_id": int})
                        ]
                        errors += self._user_errors(lead, ("responsible_user_id",))
                    for n, contact in enumerate(embedded.get("contacts") or []):
                        errors += [
                            _err(f"_embedded.contacts.{n}.{e['path']}", e["code"], e["detail"])
                            for e in _typed(
                                contact,
                                {"name": str, "custom_fields_values": list, "responsible_user_id": int},
                            )
                        ]
            if errors:
                raise _Invalid(errors, rid)
        out = []
        for i, item in enumerate(items):
            uid = secrets.token_hex(20)
            lead_id, contact_id = self.new_id(), self.new_id()
            embedded = item.get("_embedded") or {}
            contact_in = (embedded.get("contacts") or [{}])[0]
            contact = {
                "id": contact_id,
                "name": contact_in.get("name", ""),
                "responsible_user_id": contact_in.get("responsible_user_id", 0),
                "custom_fields_values": [
                    {"field_code": f.get("field_code"), "values": f.get("values", [])}
                    for f in contact_in.get("custom_fields_values", [])
                ],
                "_embedded": {"leads": [{"id": lead_id}], "companies": []},
            }
            self._uniq_unsorted.add(item["metadata"].get("uniq"))
            self.unsorted.append({"uid": uid, "body": item, "lead_id": lead_id, "contact": contact})
            out.append(
                {
                    "uid": uid,
                    "account_id": 29000001,
                    "request_id": str(item.get("request_id", i)),
                    "_embedded": {"leads": [{"id": lead_id}], "contacts": [{"id": contact_id}]},
                }
            )
        return 200, {"_total_items": len(out), "_embedded": {"unsorted": out}}

    def _add_tasks(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        items = _list(body)
        allowed = {
            "text",
            "complete_till",
            "entity_id",
            "entity_type",
            "responsible_user_id",
            "task_type_id",
            "request_id",
            "duration",
            "created_by",
            "created_at",
            "is_completed",
        }
        for i, item in enumerate(items):
            rid = str(item.get("request_id", i)) if isinstance(item, dict) else str(i)
            errors = _check(item, allowed, required={"text", "complete_till"})
            if isinstance(item, dict):
                errors += _typed(
                    item,
                    {
                        "text": str,
                        "complete_till": int,
                        "entity_id": int,
                        "entity_type": str,
                        "responsible_user_id": int,
                        "task_type_id": int,
                    },
                )
                errors += self._user_errors(item, ("responsible_user_id",))
                if ("entity_id" in item) != ("entity_type" in item):
                    errors.append(
                        _err("entity_type", "RequiredTogether", "entity_id and entity_type go together")
                    )
                elif "entity_type" in item:
                    if item["entity_type"] not in ENTITY_TYPES:
                        errors.append(_err("entity_type", "NotSupportedChoice", "leads, contacts, ..."))
                    elif not self._entity_exists(item["entity_type"], item["entity_id"]):
                        errors.append(_err("entity_id", "NotFound", "no such entity"))
                if item.get("task_type_id", 1) not in (1, 2):
                    errors.append(_err("task_type_id", "NotSupportedChoice", "1 or 2"))
            if errors:
                raise _Invalid(errors, rid)
        out = []
        for i, item in enumerate(items):
            task_id = self.new_id()
            self.tasks.append({**item, "id": task_id})
            out.append({"id": task_id, "request_id": str(item.get("request_id", i))})
        return 200, {"_total_items": len(out), "_embedded": {"tasks": out}}

    def _edit_tasks(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        """PATCH /api/v4/tasks: each item names an existing task by `id`; `is_completed` with `result.text`
        completes it."""
        items = _list(body)
        allowed = {"id", "text", "complete_till", "responsible_user_id", "task_type_id", "is_completed"}
        allowed |= {"result", "request_id", "entity_id", "entity_type", "duration"}
        known = {t["id"]: t for t in self.tasks}
        for i, item in enumerate(items):
            rid = str(item.get("request_id", i)) if isinstance(item, dict) else str(i)
            errors = _check(item, allowed, required={"id"})
            if isinstance(item, dict):
                errors += _typed(item, {"id": int, "is_completed": bool, "result": dict})
                if isinstance(item.get("id"), int) and item["id"] not in known:
                    errors.append(_err("id", "NotFound", "no such task"))
                result = item.get("result")
                if isinstance(result, dict) and not isinstance(result.get("text"), str):
                    errors.append(_err("result.text", "InvalidType", "the result's text must be a string"))
            if errors:
                raise _Invalid(errors, rid)
        out = []
        for i, item in enumerate(items):
            known[item["id"]].update({k: v for k, v in item.items() if k != "request_id"})
            out.append(
                {
                    "id": item["id"],
                    "updated_at": int(time.time()),
                    "request_id": str(item.get("request_id", i)),
                }
            )
        return 200, {"_total_items": len(out), "_embedded": {"tasks": out}}

    def _entity_exists(self, kind: str, entity_id: Any) -> bool:
        if kind == "contacts":
            return entity_id in self.contacts or any(u["contact"]["id"] == entity_id for u in self.unsorted)
        if kind == "leads":
            return entity_id in self.leads or any(u["lead_id"] == entity_id for u in self.unsorted)
        return True

    def _events(self, query: dict[str, str], body: Any) -> tuple[int, Any]:
        if (
            not isinstance(body, dict)
            or set(body) != {"add"}
            or not isinstance(body["add"], list)
            or not body["add"]
        ):
            raise _Invalid([_err("add", "InvalidType", "expected {'add': [...]}")])
        out = []
        for n, item in enumerate(body["add"]):
            errors = _check(item, {"type", "phone_number", "users"}, required={"type", "phone_number"})
            if isinstance(item, dict):
                errors += _typed(item, {"type": str, "phone_number": str, "users": list})
                if item.get("type") != "phone_call":
                    errors.append(_err("type", "NotSupportedChoice", "phone_call"))
                known = {u["id"] for u in self.users}
                for user in item.get("users") or []:
                    if not isinstance(user, int) or isinstance(user, bool) or user not in known:
                        errors.append(_err("users", "NotFound", f"unknown user {user!r}"))
            if errors:
                raise _Invalid([{**e, "path": f"add.{n}.{e['path']}"} for e in errors])
            self.popups.append(item)
            out.append({"type": "phone_call", "phone_number": item["phone_number"]})
        return 202, {"_embedded": {"items": out}}

    def _user_errors(self, item: Any, keys: Iterable[str]) -> list[dict[str, str]]:
        if not isinstance(item, dict):
            return []
        known = {u["id"] for u in self.users}
        return [_err(k, "NotFound", "no such user") for k in keys if k in item and item[k] not in known]


_ROUTES: dict[tuple[str, str], Callable[[FakeAmoCrm, dict[str, str], Any], tuple[int, Any]]] = {
    ("GET", "/api/v4/account"): FakeAmoCrm._account,
    ("GET", "/api/v4/users"): FakeAmoCrm._users,
    ("GET", "/api/v4/contacts"): FakeAmoCrm._search,
    ("POST", "/api/v4/calls"): FakeAmoCrm._add_calls,
    ("POST", "/api/v4/leads/unsorted/sip"): FakeAmoCrm._add_unsorted,
    ("POST", "/api/v4/tasks"): FakeAmoCrm._add_tasks,
    ("PATCH", "/api/v4/tasks"): FakeAmoCrm._edit_tasks,
    ("POST", "/api/v2/events"): FakeAmoCrm._events,
}


def _problem(status: int, title: str, detail: str) -> dict[str, Any]:
    return {"title": title, "type": f"https://httpstatus.es/{status}", "status": status, "detail": detail}


def _err(path: str, code: str, detail: str) -> dict[str, str]:
    return {"code": code, "path": path, "detail": detail}


def _list(body: Any) -> list[Any]:
    if not isinstance(body, list) or not body:
        raise _Invalid([_err("", "InvalidType", "the body must be a non-empty array")])
    return body


def _check(item: Any, allowed: set[str], required: set[str]) -> list[dict[str, str]]:
    if not isinstance(item, dict):
        return [_err("", "InvalidType", "an object is expected")]
    errors = [_err(k, "NotSupportedField", "unknown field") for k in item if k not in allowed]
    errors += [_err(k, "Required", "this field is required") for k in sorted(required) if k not in item]
    return errors


def _typed(item: Any, types: dict[str, Any]) -> list[dict[str, str]]:
    if not isinstance(item, dict):
        return [_err("", "InvalidType", "an object is expected")]
    errors = []
    for key, kind in types.items():
        if key not in item:
            continue
        value = item[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            errors.append(_err(key, "InvalidType", f"expected {kinds[0].__name__}"))
    return errors
