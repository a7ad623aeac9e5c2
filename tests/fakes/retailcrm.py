"""A loopback server that answers like retailCRM API v5 (telephony), for contract and end-to-end tests and
the benchmark.

What it holds to (shared/docs/apis/retailcrm.md and the official PHP client's models; [fake] marks where
the vendor's documentation says nothing and the fake had to choose):

* paths: ``POST /api/v5/integration-modules/{code}/edit``, ``POST /api/v5/telephony/call/event``,
  ``POST /api/v5/telephony/calls/upload``, ``GET /api/v5/telephony/manager``, ``GET /api/v5/orders``,
  ``POST /api/v5/tasks/create``, ``GET /api/v5/users``, ``GET /api/credentials``; anything else is 404;
* auth: the ``X-API-KEY`` header; a missing or wrong key gets 403 ``{"success": false, "errorMsg": ...}``;
* POST bodies are ``application/x-www-form-urlencoded`` and object parameters are JSON strings; a JSON
  body, a field that is not valid JSON, a missing field, a wrong type or an unknown field [fake: being
  strict catches typos] get 400 with ``success: false``, ``errorMsg`` and ``errors``;
* value sets: event ``type`` in/out/hangup; ``hangupStatus`` answered/busy/cancel/failed/``no answered``
  (hangup only); call ``result`` answered/busy/failed/``no answer``/``not allowed``/``unknown``; dates
  ``Y-m-d H:i:s`` (task ``datetime``: ``Y-m-d H:i``); at most 50 calls per upload [3p];
* ``telephony/manager``: the customer whose phone has the same last 10 digits, their manager and links;
  an unknown number gets ``success: true`` with links only [fake];
* a call uploaded again with the same ``externalId`` is counted in `duplicate_uploads` [fake: retailCRM's
  behaviour is not documented; a client must never do it];
* the rate limit: at most `rate_limit` requests (10) in any `window` (1 s), counted on arrival; one more
  gets 503 and is counted in `violations`. `throttle(seconds)` answers 503 to everything for a while (a
  vendor in trouble; counted in `scripted_503`, not in `violations`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from bridge.connector_api.testing import FakeServer, Reply, Request

EVENT_TYPES = {"in", "out", "hangup"}
HANGUP_STATUSES = {"answered", "busy", "cancel", "failed", "no answered"}
CALL_RESULTS = {"answered", "busy", "failed", "no answer", "not allowed", "unknown"}
EVENT_FIELDS = {
    "phone",
    "type",
    "codes",
    "userIds",
    "site",
    "hangupStatus",
    "externalPhone",
    "callExternalId",
    "webAnalyticsData",
}
CALL_FIELDS = {
    "date",
    "type",
    "phone",
    "code",
    "userId",
    "result",
    "duration",
    "durationWaiting",
    "externalId",
    "recordUrl",
    "externalPhone",
    "site",
    "source",
    "campaign",
    "keyword",
}
TASK_FIELDS = {"text", "commentary", "datetime", "performerId", "customer", "order", "phone", "phoneSite"}
TELEPHONY_FIELDS = {
    "makeCallUrl",
    "allowEdit",
    "inputEventSupported",
    "outputEventSupported",
    "hangupEventSupported",
    "changeUserStatusUrl",
    "additionalCodes",
    "externalPhones",
}
MODULE_FIELDS = {
    "code",
    "integrationCode",
    "active",
    "name",
    "logo",
    "clientId",
    "baseUrl",
    "accountUrl",
    "actions",
    "availableCountries",
    "integrations",
}


class _Invalid(Exception):
    def __init__(self, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.errors = errors or {}


def _last10(number: str) -> str:
    return re.sub(r"\D", "", number)[-10:]


def _date(value: Any, fmt: str) -> bool:
    try:
        dt.datetime.strptime(str(value), fmt)
    except ValueError:
        return False
    return True


@dataclass
class FakeRetailCrm(FakeServer):
    api_key: str = "retailcrm-test-key"
    rate_limit: int = 10
    window: float = 1.0
    users: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self.violations = 0
        self.scripted_503 = 0
        self.modules: list[dict[str, Any]] = []  # every integration-modules/{code}/edit, in order
        self.events: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.duplicate_uploads = 0
        self.tasks: list[dict[str, Any]] = []
        self.customers: dict[int, dict[str, Any]] = {}
        self.orders: list[dict[str, Any]] = []
        self.outcomes: list[tuple[str, str, int]] = []  # (method, path, status) per request, in order
        self._arrivals: deque[float] = deque()
        self._throttle_until = 0.0
        self._next_id = 100
        if not self.users:
            self.users = [
                {"id": 7, "firstName": "Анна", "lastName": "Смирнова", "email": "user101@example.com"},
                {"id": 8, "firstName": "Борис", "lastName": "Иванов", "email": "USER102@example.com"},
                {"id": 9, "firstName": "Вера", "lastName": "Петрова", "email": "user103@example.com"},
                {"id": 12, "firstName": "Дежурный", "lastName": "Менеджер", "email": "duty@example.com"},
            ]
        for user in self.users:
            user.setdefault("active", True)

    def __hash__(self) -> int:  # a dataclass with eq: the server is used as an identity, not a value
        return id(self)

    # ------------------------------------------------------------------------------ controls

    def add_customer(
        self, first: str, last: str, phones: list[str], *, manager: int | None = 7, orders: int = 0
    ) -> int:
        """A customer with these phones (as a person would type them), a manager and `orders` orders."""
        with self.lock:
            self._next_id += 1
            cid = self._next_id
            self.customers[cid] = {
                "id": cid,
                "firstName": first,
                "lastName": last,
                "phones": [{"number": p} for p in phones],
                "managerId": manager,
            }
            for i in range(orders):
                self._next_id += 1
                self.orders.append(
                    {
                        "id": self._next_id,
                        "number": f"{self._next_id}A",
                        "customer": {"id": cid},
                        "createdAt": f"2026-11-{10 + i:02d} 12:00:00",
                        "status": "complete",
                        "totalSumm": 1000 * (i + 1),
                    }
                )
            return cid

    def throttle(self, seconds: float) -> None:
        """Answer 503 to every request for `seconds` (not counted as violations)."""
        with self.lock:
            self._throttle_until = time.monotonic() + seconds

    def posted(self, path: str) -> list[dict[str, Any]]:
        """The decoded form of every accepted POST to `/api/v5<path>`, in order."""
        with self.lock:
            pairs = list(zip(self.requests, self.outcomes, strict=True))
        out = []
        for request, (method, p, status) in pairs:
            if method == "POST" and p == "/api/v5" + path and status == 200:
                out.append(
                    {k: json.loads(v[0]) if v[0][:1] in "[{" else v[0] for k, v in _form(request).items()}
                )
        return out

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

    # ------------------------------------------------------------------------------ the API

    def _handle(self, request: Request) -> Reply:
        with self.lock:  # one lock around both, so `requests` and `outcomes` stay aligned
            reply = super()._handle(request)
            self.outcomes.append((request.method, urlsplit(request.path).path, reply.status))
        return reply

    def answer(self, request: Request) -> Reply:
        now = request.at
        while self._arrivals and now - self._arrivals[0] >= self.window:
            self._arrivals.popleft()
        self._arrivals.append(now)
        if len(self._arrivals) > self.rate_limit:
            self.violations += 1
            return _error(503, "Service Unavailable: too many requests")
        if now < self._throttle_until:
            self.scripted_503 += 1
            return _error(503, "Service Unavailable")
        key = request.headers.get("X-API-KEY") or request.headers.get("X-Api-Key")
        if not key:
            return _error(403, '"apiKey" is missing.')
        if key != self.api_key:
            return _error(403, 'Wrong "apiKey" value.')
        parts = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        try:
            if request.method == "GET":
                return self._get(path, query)
            if request.method == "POST":
                if "application/x-www-form-urlencoded" not in request.headers.get("Content-Type", ""):
                    raise _Invalid("The request body must be application/x-www-form-urlencoded")
                return self._post(path, _form(request))
        except _Invalid as exc:
            return _error(400, str(exc), exc.errors)
        return _error(404, "API method not found")

    def _get(self, path: str, query: dict[str, str]) -> Reply:
        if path == "/api/credentials":
            return Reply(200, {"success": True, "credentials": ["/api/v5/telephony/call/event"]})
        if path == "/api/v5/telephony/manager":
            return self._manager(query)
        if path == "/api/v5/orders":
            limit = int(query.get("limit", "20"))
            if limit not in (20, 50, 100):
                raise _Invalid("Errors in the input parameters", {"limit": "limit must be 20, 50 or 100"})
            cid = query.get("filter[customerId]")
            found = [o for o in self.orders if cid is None or str(o["customer"]["id"]) == cid]
            return Reply(
                200, {"success": True, "orders": found[:limit], "pagination": _pages(len(found), limit)}
            )
        if path == "/api/v5/users":
            limit, page = int(query.get("limit", "20")), int(query.get("page", "1"))
            chunk = self.users[(page - 1) * limit : page * limit]
            return Reply(
                200, {"success": True, "users": chunk, "pagination": _pages(len(self.users), limit, page)}
            )
        return _error(404, "API method not found")

    def _manager(self, query: dict[str, str]) -> Reply:
        phone = query.get("phone", "")
        if not phone:
            raise _Invalid("Errors in the input parameters", {"phone": "This value should not be blank."})
        if query.get("details", "0") not in ("0", "1") or query.get("ignoreStatus", "0") not in ("0", "1"):
            raise _Invalid("Errors in the input parameters", {"details": "0 or 1"})
        base = "https://fake.retailcrm.ru/admin"
        links: dict[str, str] = {"newOrderLink": f"{base}/orders/add?phone={_last10(phone)}"}
        found = [
            c
            for c in self.customers.values()
            if any(_last10(p["number"]) == _last10(phone) for p in c["phones"])
        ]
        if not found:
            links["newCustomerLink"] = f"{base}/customers/add?phone={_last10(phone)}"
            return Reply(200, {"success": True, "links": links})
        customer = found[0]
        body: dict[str, Any] = {"success": True}
        if query.get("details") == "1":
            body["customer"] = {k: v for k, v in customer.items() if k != "managerId"}
        links["customerLink"] = f"{base}/customers/{customer['id']}"
        manager = next((u for u in self.users if u["id"] == customer["managerId"]), None)
        if manager is not None:
            body["manager"] = {k: manager.get(k) for k in ("id", "firstName", "lastName", "email")}
            body["manager"]["code"] = manager.get("code")
        body["links"] = links
        return Reply(200, body)

    def _post(self, path: str, fields: dict[str, list[str]]) -> Reply:
        edit = re.fullmatch(r"/api/v5/integration-modules/([^/]+)/edit", path)
        if edit:
            module = _field(fields, "integrationModule", dict)
            _only(module, MODULE_FIELDS, "integrationModule")
            if module.get("code") != edit.group(1):
                raise _Invalid(
                    "Errors in the entity format", {"code": "the code in the path and body differ"}
                )
            telephony = (module.get("integrations") or {}).get("telephony")
            if not isinstance(telephony, dict):
                raise _Invalid("Errors in the entity format", {"integrations": "telephony expected"})
            _only(telephony, TELEPHONY_FIELDS, "integrations.telephony")
            if not module.get("clientId"):
                raise _Invalid("Errors in the entity format", {"clientId": "This value should not be blank."})
            self.modules.append(module)
            return Reply(200, {"success": True, "info": {}})
        if path == "/api/v5/telephony/call/event":
            event = _field(fields, "event", dict)
            _only(event, EVENT_FIELDS, "event")
            if event.get("type") not in EVENT_TYPES or not event.get("phone"):
                raise _Invalid("Errors in the entity format", {"type": "in, out or hangup; phone required"})
            if event.get("hangupStatus") is not None and (
                event["type"] != "hangup" or event["hangupStatus"] not in HANGUP_STATUSES
            ):
                raise _Invalid("Errors in the entity format", {"hangupStatus": "Invalid value."})
            codes = event.get("codes", [])
            if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
                raise _Invalid("Errors in the entity format", {"codes": "a list of strings"})
            self.events.append(event)
            return Reply(200, {"success": True})
        if path == "/api/v5/telephony/calls/upload":
            calls = _field(fields, "calls", list)
            if not calls or len(calls) > 50:
                raise _Invalid("Errors in the input parameters", {"calls": "1 to 50 calls"})
            for call in calls:
                _check_call(call)
            for call in calls:
                if any(c["externalId"] == call["externalId"] for c in self.calls if call.get("externalId")):
                    self.duplicate_uploads += 1
                self.calls.append(call)
            return Reply(200, {"success": True, "processedCallsCount": len(calls)})
        if path == "/api/v5/tasks/create":
            task = _field(fields, "task", dict)
            _only(task, TASK_FIELDS, "task")
            if not task.get("text") or not isinstance(task.get("performerId"), int):
                raise _Invalid(
                    "Errors in the entity format", {"performerId": "text and performerId required"}
                )
            if "datetime" in task and not _date(task["datetime"], "%Y-%m-%d %H:%M"):
                raise _Invalid("Errors in the entity format", {"datetime": "Y-m-d H:i"})
            customer = task.get("customer")
            if customer is not None and (
                not isinstance(customer, dict) or customer.get("id") not in self.customers
            ):
                raise _Invalid("Errors in the entity format", {"customer": "Customer not found"})
            self._next_id += 1
            self.tasks.append({**task, "id": self._next_id})
            return Reply(200, {"success": True, "id": self._next_id})
        return _error(404, "API method not found")


def _check_call(call: Any) -> None:
    if not isinstance(call, dict):
        raise _Invalid("Errors in the entity format", {"calls": "objects expected"})
    _only(call, CALL_FIELDS, "calls[]")
    problems: dict[str, str] = {}
    if not _date(call.get("date"), "%Y-%m-%d %H:%M:%S"):
        problems["date"] = "Y-m-d H:i:s expected"
    if call.get("type") not in ("in", "out"):
        problems["type"] = "in or out"
    if call.get("result") not in CALL_RESULTS:
        problems["result"] = "Invalid value."  # e.g. 'no answered', the popup's spelling
    if not call.get("phone"):
        problems["phone"] = "This value should not be blank."
    for key in ("duration", "durationWaiting", "userId"):
        if key in call and not isinstance(call[key], int):
            problems[key] = "an integer"
    if problems:
        raise _Invalid("Errors in the entity format", problems)


def _form(request: Request) -> dict[str, list[str]]:
    return parse_qs(request.body.decode("utf-8"), keep_blank_values=True)


def _field(fields: dict[str, list[str]], name: str, kind: type) -> Any:
    if name not in fields:
        raise _Invalid(f"Parameter '{name}' is missing")
    try:
        value = json.loads(fields[name][0])
    except ValueError:
        raise _Invalid(f"Parameter '{name}' must be a JSON string") from None
    if not isinstance(value, kind):
        raise _Invalid(f"Parameter '{name}' must be a JSON {kind.__name__}")
    return value


def _only(item: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise _Invalid(
            "Errors in the entity format", {f"{where}.{k}": "This field was not expected." for k in unknown}
        )


def _pages(total: int, limit: int, page: int = 1) -> dict[str, int]:
    return {
        "limit": limit,
        "totalCount": total,
        "currentPage": page,
        "totalPageCount": max(1, -(-total // limit)),
    }


def _error(status: int, message: str, errors: dict[str, str] | None = None) -> Reply:
    body: dict[str, Any] = {"success": False, "errorMsg": message}
    if errors:
        body["errors"] = errors
    return Reply(status, body)
