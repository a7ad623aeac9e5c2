"""A loopback server that answers like the YClients REST API, for contract and end-to-end tests and the
benchmark (built on the kit's `FakeServer`).

What it holds to (shared/docs/apis/yclients.md; [fake] marks where the vendor's docs say nothing and the fake
had to choose; docs/connectors/yclients.md lists the same gaps):

* paths: ``POST /api/v1/voip/integration`` (``setup`` / ``event`` / ``history``), ``GET
  /api/v1/voip/integration/calls``, ``POST /api/v1/company/{id}/clients/search``, ``GET
  /api/v1/records/{id}``, ``GET /api/v1/staff/{id}``; anything else is 404;
* ``Accept: application/vnd.yclients.v2+json`` required (406 otherwise) [fake: strictness];
* auth: ``Authorization: Bearer <partner token>`` on everything (401 otherwise), ``, User <user token>``
  on the client search, the records and the call list (401 without it) [fake: which status]; the staff
  list needs the partner token only (a third-party SDK says so);
* the telephony endpoint: the body's ``crm_token`` must be the network's (403 otherwise) [fake: status and
  words], fields and values checked, unknown fields refused (422 with ``meta.errors``) [fake: strictness];
  ``202 {"success": true, "data": null, "meta": {"message": "Accepted"}}`` when taken; ``event`` and
  ``history`` before ``setup enable`` or after ``disable`` are answered 202 and ignored (counted in
  `ignored`), as the docs say of a disabled integration [fake: before the first enable too];
* the envelope ``{"success", "data", "meta"}`` on every answer, errors with ``success: false`` and
  ``meta.message``;
* the limit: at most 5 requests in any second and 200 in any minute, counted on arrival over every path;
  beyond that 429, counted in `violations`. `throttle` answers 429 to everything for a while (YClients in
  trouble; counted in `scripted_429`, not in `violations`).
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bridge.connector_api.testing import FakeServer, Reply, Request

ACCEPT = "application/vnd.yclients.v2+json"
VOIP = "/api/v1/voip/integration"
CALLS = "/api/v1/voip/integration/calls"
SEARCH = re.compile(r"^/api/v1/company/(\d+)/clients/search$")
RECORDS = re.compile(r"^/api/v1/records/(\d+)$")
STAFF = re.compile(r"^/api/v1/staff/(\d+)$")
TYPES = {"incoming", "outgoing", "internal"}
HISTORY_FIELDS = {"command", "type", "crm_token", "phone", "diversion", "user", "duration", "link", "call_id"}
HISTORY_FIELDS |= {"status", "date"}
EVENT_FIELDS = {"command", "type", "crm_token", "phone", "diversion", "user"}


def envelope(data: Any = None, message: str | None = None, *, success: bool = True, **meta: Any) -> dict:
    body_meta: dict[str, Any] = dict(meta)
    if message is not None:
        body_meta["message"] = message
    return {"success": success, "data": data, "meta": body_meta}


def refusal(status: int, message: str, errors: Any = None) -> Reply:
    meta = {"errors": errors} if errors is not None else {}
    return Reply(status, envelope(None, message, success=False, **meta))


@dataclass
class Seen:
    """One request with what became of it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any
    at: float
    status: int = 0
    outcome: str = (
        ""  # ok | ignored | rate_limited | throttled | scripted | unauthorized | invalid | not_found
    )


@dataclass
class FakeYClients(FakeServer):
    partner_token: str = "partner-token"
    crm_token: str = "crm-token"
    user_token: str | None = "user-token"
    company_id: int = 12345
    per_second: int = 5
    per_minute: int = 200

    seen: list[Seen] = field(default_factory=list)
    setups: list[str] = field(default_factory=list)  # "enable" / "disable", in order
    popups: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(
        default_factory=list
    )  # every row taken (two for one call_id = a bug)
    clients: dict[int, dict[str, Any]] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    staff: list[dict[str, Any]] = field(default_factory=list)  # the branch's staff list
    violations: int = 0
    scripted_429: int = 0
    ignored: int = 0

    def __post_init__(self) -> None:
        super().__init__()
        self.enabled = False
        self._arrivals: deque[float] = deque()
        self._throttle_until = 0.0
        self._scripted: deque[int] = deque()
        self._slow: deque[float] = deque()
        self._next_id = 500

    # ------------------------------------------------------------------------------ controls

    def add_client(self, name: str, phone: str) -> int:
        with self.lock:
            self._next_id += 1
            self.clients[self._next_id] = {"id": self._next_id, "name": name, "phone": phone}
            return self._next_id

    def add_record(
        self,
        client_id: int,
        when: str,
        service: str,
        staff: tuple[int, str],
        *,
        attendance: int = 1,
        company_id: int | None = None,
        deleted: bool = False,
    ) -> None:
        """A booking: `when` as YClients writes ``datetime`` (``2026-11-20T14:00:00+03:00``)."""
        with self.lock:
            self._next_id += 1
            self.records.append(
                {
                    "id": self._next_id,
                    "company_id": company_id or self.company_id,
                    "staff_id": staff[0],
                    "staff": {"id": staff[0], "name": staff[1]},
                    "services": [{"id": 1, "title": service}],
                    "client": {"id": client_id},
                    "datetime": when,
                    "date": when[:19].replace("T", " "),
                    "attendance": attendance,
                    "deleted": deleted,
                }
            )

    def throttle(self, seconds: float) -> None:
        """Answer 429 to every request for `seconds` (not counted as violations)."""
        with self.lock:
            self._throttle_until = time.monotonic() + seconds

    def script(self, status: int, times: int = 1) -> None:
        """Answer the next `times` requests with `status` (after counting them against the limit)."""
        with self.lock:
            self._scripted.extend([status] * times)

    def answer_late(self, seconds: float) -> None:
        """Take the next request, then hold its answer for `seconds` (a client's timeout loses it)."""
        with self.lock:
            self._slow.append(seconds)

    def recorded(self, path: str | None = None, outcome: str | None = "ok") -> list[Seen]:
        with self.lock:
            return [
                s
                for s in self.seen
                if (path is None or s.path == path) and (outcome is None or s.outcome == outcome)
            ]

    def rows(self, call_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [h for h in self.history if h["call_id"] == call_id]

    def max_in(self, window: float) -> int:
        """The most requests that arrived within any `window` seconds."""
        with self.lock:
            times = sorted(s.at for s in self.seen)
        best, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= window:
                start += 1
            best = max(best, end - start + 1)
        return best

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate():
                    return True
            time.sleep(0.02)
        with self.lock:
            return predicate()

    def start(self) -> FakeYClients:
        super().start()
        # An answer held past the client's timeout meets a closed socket: that is the point, not an error.
        assert self._server is not None
        self._server.handle_error = lambda *_args: None  # type: ignore[method-assign]
        return self

    # ------------------------------------------------------------------------------ answering

    def _handle(self, request: Request) -> Reply:
        reply = super()._handle(request)
        delay = getattr(reply, "late", 0.0)
        if delay:
            time.sleep(delay)  # outside the lock: other requests go on
        return reply

    def answer(self, request: Request) -> Reply:
        parts = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        body = None
        try:
            body = request.json()
        except ValueError:
            body = request.body.decode("utf-8", "replace")
        seen = Seen(request.method, parts.path, query, body, request.at)
        self.seen.append(seen)
        reply = self._route(request, parts.path, query, body, seen)
        seen.status = reply.status
        if self._slow and seen.outcome in ("ok", "ignored"):
            reply.late = self._slow.popleft()  # type: ignore[attr-defined]
        return reply

    def _over_limit(self, at: float) -> bool:
        while self._arrivals and at - self._arrivals[0] >= 60.0:
            self._arrivals.popleft()
        in_second = sum(1 for t in self._arrivals if at - t < 1.0)
        over = in_second >= self.per_second or len(self._arrivals) >= self.per_minute
        self._arrivals.append(at)
        return over

    def _route(self, request: Request, path: str, query: dict[str, str], body: Any, seen: Seen) -> Reply:
        if self._over_limit(request.at):
            self.violations += 1
            seen.outcome = "rate_limited"
            return refusal(429, "Too Many Requests")
        if self._scripted:
            seen.outcome = "scripted"
            status = self._scripted.popleft()
            return refusal(status, f"scripted {status}")
        if request.at < self._throttle_until:
            self.scripted_429 += 1
            seen.outcome = "throttled"
            return refusal(429, "Too Many Requests")
        headers = {k.lower(): v for k, v in request.headers.items()}
        if headers.get("accept") != ACCEPT:
            seen.outcome = "invalid"
            return refusal(406, f"Accept must be {ACCEPT}")
        partner, user = _credentials(headers.get("authorization", ""))
        if partner != self.partner_token:
            seen.outcome = "unauthorized"
            return refusal(401, "Authentication needed")
        needs_user = (request.method == "GET" and not STAFF.match(path)) or SEARCH.match(path) is not None
        if needs_user and (self.user_token is None or user != self.user_token):
            seen.outcome = "unauthorized"
            return refusal(401, "User authorization required")
        if request.method == "POST" and path == VOIP:
            return self._voip(body, seen)
        if request.method == "GET" and path == CALLS:
            return self._calls(query, seen)
        found = SEARCH.match(path)
        if request.method == "POST" and found:
            return self._search(int(found.group(1)), body, seen)
        found = RECORDS.match(path)
        if request.method == "GET" and found:
            return self._records(int(found.group(1)), query, seen)
        found = STAFF.match(path)
        if request.method == "GET" and found:
            seen.outcome = "ok"
            listed = self.staff if int(found.group(1)) == self.company_id else []
            return Reply(200, envelope(listed, count=len(listed)))
        seen.outcome = "not_found"
        return refusal(404, "Not found")

    def _voip(self, body: Any, seen: Seen) -> Reply:
        if not isinstance(body, dict):
            seen.outcome = "invalid"
            return refusal(400, "The body must be a JSON object")
        if body.get("crm_token") != self.crm_token:
            seen.outcome = "unauthorized"
            return refusal(403, "Invalid crm_token")
        command, kind = body.get("command"), body.get("type")
        if command == "setup":
            errors = _unknown(body, {"command", "type", "crm_token"})
            if kind not in ("enable", "disable"):
                errors.append({"type": "must be enable or disable"})
            if errors:
                seen.outcome = "invalid"
                return refusal(422, "Validation error", errors)
            self.setups.append(kind)
            self.enabled = kind == "enable"
            seen.outcome = "ok"
            return Reply(202, envelope(None, "Accepted"))
        if command == "event":
            errors = _unknown(body, EVENT_FIELDS) + _strings(body, ("phone",), ("diversion", "user"))
        elif command == "history":
            errors = _unknown(body, HISTORY_FIELDS) + _history_errors(body)
        else:
            errors = [{"command": "must be setup, event or history"}]
        if kind not in TYPES:
            errors.append({"type": "must be incoming, outgoing or internal"})
        if errors:
            seen.outcome = "invalid"
            return refusal(422, "Validation error", errors)
        if not self.enabled:
            self.ignored += 1
            seen.outcome = "ignored"
            return Reply(202, envelope(None, "Accepted"))
        if command == "event" and kind == "incoming":
            self.popups.append(dict(body))
        elif command == "history":
            self.history.append(dict(body))
        seen.outcome = "ok"
        return Reply(202, envelope(None, "Accepted"))

    def _calls(self, query: dict[str, str], seen: Seen) -> Reply:
        seen.outcome = "ok"
        phone = query.get("phone")
        found = [
            {k: h.get(k) for k in ("call_id", "phone", "type", "status", "duration", "date", "user")}
            for h in self.history
            if not phone or h["phone"] == phone
        ]
        return Reply(200, envelope(found, count=len(found)))

    def _search(self, company: int, body: Any, seen: Seen) -> Reply:
        try:
            value = str(body["filters"][0]["state"]["value"])
            assert body["filters"][0]["type"] == "quick_search"
        except (KeyError, IndexError, TypeError, AssertionError):
            seen.outcome = "invalid"
            return refusal(422, "Validation error", [{"filters": "a quick_search filter is expected"}])
        seen.outcome = "ok"
        wanted = re.sub(r"\D", "", value)[-10:]
        found = [
            {k: c[k] for k in ("id", "name", "phone")}
            for c in self.clients.values()
            if company == self.company_id and wanted and wanted in re.sub(r"\D", "", c["phone"])
        ]
        return Reply(200, envelope(found, total_count=len(found)))

    def _records(self, company: int, query: dict[str, str], seen: Seen) -> Reply:
        seen.outcome = "ok"
        start = date.fromisoformat(query["start_date"]) if query.get("start_date") else date.min
        end = date.fromisoformat(query["end_date"]) if query.get("end_date") else date.max
        client = query.get("client_id")
        found = [
            r
            for r in self.records
            if r["company_id"] == company
            and (not client or str(r["client"]["id"]) == client)
            and start <= datetime.fromisoformat(r["datetime"]).date() <= end
        ]
        return Reply(200, envelope(found, count=len(found)))


def _credentials(header: str) -> tuple[str | None, str | None]:
    """(partner token, user token) from ``Bearer <partner>[, User <user>]``."""
    match = re.fullmatch(r"Bearer (\S+?)(?:, User (\S+))?", header.strip())
    return (match.group(1), match.group(2)) if match else (None, None)


def _unknown(body: dict[str, Any], allowed: set[str]) -> list[dict[str, str]]:
    return [{key: "unknown field"} for key in body if key not in allowed]


def _strings(
    body: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...]
) -> list[dict[str, str]]:
    errors = [
        {k: "required, a non-empty string"}
        for k in required
        if not isinstance(body.get(k), str) or not body[k]
    ]
    errors += [
        {k: "must be a non-empty string"}
        for k in optional
        if k in body and not (isinstance(body[k], str) and body[k])
    ]
    return errors


def _history_errors(body: dict[str, Any]) -> list[dict[str, str]]:
    errors = _strings(body, ("phone", "call_id", "status", "date"), ("diversion", "user", "link"))
    if body.get("status") not in ("success", "missed"):
        errors.append({"status": "must be success or missed"})
    duration = body.get("duration")
    if not isinstance(duration, int) or isinstance(duration, bool) or duration < 0:
        errors.append({"duration": "required, whole seconds"})
    try:
        datetime.fromisoformat(str(body.get("date")))
    except ValueError:
        errors.append({"date": "must be ISO 8601"})
    link = body.get("link")
    if link is not None and not str(link).startswith(("http://", "https://")):
        errors.append({"link": "must be a URL"})
    return errors
