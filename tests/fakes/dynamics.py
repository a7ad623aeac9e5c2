"""A loopback HTTPS server that answers like Microsoft Entra ID's token endpoint and the Dataverse Web API,
for contract and end-to-end tests and the benchmark (built on the kit's `FakeServer`).

msal talks to it for real: ``GET /<tenant>/v2.0/.well-known/openid-configuration`` (msal's tenant
discovery) and ``POST /<tenant>/oauth2/v2.0/token`` (client credentials: ``client_id``,
``client_secret``, ``scope`` = ``<environment>/.default``). It serves TLS with its own certificate
(`certificate` writes one); tests trust it through ``REQUESTS_CA_BUNDLE`` / ``SSL_CERT_FILE``.

What it holds to (shared/docs/apis/dynamics.md; [fake] marks where the vendor's docs say nothing and the
fake had to choose; docs/connectors/dynamics.md lists the same gaps):

* the Web API under ``/api/data/v9.2``: ``GET /WhoAmI``; ``GET /contacts`` and ``/leads`` with ``$select``,
  ``$top`` and a ``$filter`` of ``contains(<phone column>,'<text>')`` terms joined by ``or`` (a lead query
  may add ``and statecode eq 0``); ``POST /contacts``, ``/leads``, ``/phonecalls``, ``/tasks``;
  ``GET`` and ``PATCH /phonecalls(<id>)``; anything else is 404 with Dataverse's error body;
* headers: ``Authorization: Bearer <a token it issued, not expired, not revoked>`` (401 otherwise, with
  ``WWW-Authenticate``), ``OData-Version: 4.0`` and ``OData-MaxVersion: 4.0`` [fake: strictness];
* bodies: only the table's properties (400 ``0x80060888`` naming an unknown one); binds
  ``<navigation>@odata.bind`` only by their type-specific names (``regardingobjectid_contact_phonecall``...),
  as ``/<set>(<guid>)`` of a record that exists (400 ``0x80040217`` otherwise); ``statecode`` is not
  settable on create; a record whose primary key exists is refused with 400 ``0x80040237`` "Cannot insert
  duplicate key" [fake: the status];
* state: a phonecall is created open and closed once, Completed as Made (2) or Received (4), or
  Canceled (3); a closed one cannot be changed (400 ``0x80040203``) [fake: code];
* errors ``{"error": {"code": "0x…", "message": "…"}}``;
* service protection: at most `limit` requests in any `window` seconds and `concurrency` at once, counted
  on arrival; beyond that 429 with ``Retry-After``, counted in `violations`. `throttle` answers 429 to
  everything for a while (counted in `scripted_429`, not in `violations`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from bridge.connector_api.testing import FakeServer, Reply, Request

API = "/api/data/v9.2"
PHONES = ("telephone1", "mobilephone", "telephone2")
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
BIND = re.compile(rf"^/(contacts|leads|systemusers)\(({GUID})\)$")
ACTIVITY_FIELDS = {"activityid", "subject", "description", "scheduledend", "prioritycode"}
TABLES: dict[str, dict[str, Any]] = {
    "phonecalls": {
        "key": "activityid",
        "fields": ACTIVITY_FIELDS
        | {"phonenumber", "directioncode", "actualstart", "actualend", "actualdurationminutes"},
        "binds": {
            "ownerid": "systemusers",
            "regardingobjectid_contact_phonecall": "contacts",
            "regardingobjectid_lead_phonecall": "leads",
        },
        "parties": "phonecall_activity_parties",
    },
    "tasks": {
        "key": "activityid",
        "fields": ACTIVITY_FIELDS,
        "binds": {
            "ownerid": "systemusers",
            "regardingobjectid_contact_task": "contacts",
            "regardingobjectid_lead_task": "leads",
        },
    },
    "contacts": {
        "key": "contactid",
        "fields": {"contactid", "firstname", "lastname", *PHONES, "emailaddress1"},
        "binds": {"ownerid": "systemusers"},
    },
    "leads": {
        "key": "leadid",
        "fields": {"leadid", "subject", "firstname", "lastname", *PHONES, "companyname"},
        "binds": {"ownerid": "systemusers"},
    },
}
PARTY_BINDS = {"partyid_contact": "contacts", "partyid_lead": "leads", "partyid_systemuser": "systemusers"}
CLOSED = {1: {2, 4}, 2: {3}}  # phonecall statecode -> allowed statuscodes (Completed: Made/Received)
LOOKUP_TABLE = "Microsoft.Dynamics.CRM.lookuplogicalname"
TERM = re.compile(r"^contains\((\w+),'([^']*)'\)$")


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost: (certificate = CA bundle, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake dataverse")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fake-dataverse.pem", directory / "fake-dataverse.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def error(status: int, code: str, message: str, **headers: str) -> Reply:
    return Reply(status, {"error": {"code": code, "message": message}}, dict(headers))


@dataclass
class Seen:
    """One Web API request with what became of it."""

    method: str
    path: str
    body: Any
    at: float
    status: int = 0
    outcome: str = ""  # ok | rate_limited | throttled | unauthorized | invalid | not_found | duplicate


@dataclass
class FakeDataverse(FakeServer):
    cert: Path | None = None
    key: Path | None = None
    tenant: str = "00000000-0000-0000-0000-0000000000aa"
    client_id: str = "00000000-0000-0000-0000-0000000000cc"
    client_secret: str = "client-secret"
    limit: int = 6000
    window: float = 300.0
    page_size: int = 5000  # the most rows a page holds, whatever the client prefers
    concurrency: int = 52  # requests at once per user
    lifetimes: deque[int] = field(default_factory=deque)  # expires_in of the next tokens (then 3600)

    seen: list[Seen] = field(default_factory=list)
    systemusers: set[str] = field(default_factory=set)  # ids binds may name
    users: dict[str, dict[str, Any]] = field(default_factory=dict)  # what GET /systemusers lists
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (monotonic)
    tokens_issued: int = 0
    refused_tokens: int = 0
    violations: int = 0
    scripted_429: int = 0

    def __post_init__(self) -> None:
        super().__init__()
        self.records = {table: {} for table in TABLES}
        self._arrivals: deque[float] = deque()
        self._throttle_until = 0.0
        self._retry_after = 1
        self._scripted: deque[int] = deque()
        self.lifetimes = deque(self.lifetimes)
        self._in_flight = 0
        self._flight = threading.Lock()
        self.most_at_once = 0
        self.app_user = str(uuid.uuid4())

    # ------------------------------------------------------------------------------ controls

    @property
    def url(self) -> str:  # type: ignore[override]
        assert self._server is not None
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeDataverse:
        super().start()
        assert self._server is not None and self.cert is not None and self.key is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._server.handle_error = lambda *_args: None  # type: ignore[method-assign]
        return self

    def add_contact(self, fullname: str, owner: str | None = None, **phones: str) -> str:
        first, _, last = fullname.partition(" ")
        with self.lock:
            cid = str(uuid.uuid4())
            self.records["contacts"][cid] = {
                "contactid": cid,
                "firstname": first,
                "lastname": last,
                "fullname": fullname,
                "_ownerid_value": owner or self.app_user,
                "statecode": 0,
                **phones,
            }
            return cid

    def add_user(
        self,
        fullname: str,
        *,
        email: str | None = None,
        main_phone: str | None = None,
        disabled: bool = False,
        application: bool = False,
        user_id: str | None = None,
    ) -> str:
        """A systemuser: a person (or an application user with `application`)."""
        with self.lock:
            uid = user_id or str(uuid.uuid4())
            self.systemusers.add(uid)
            self.users[uid] = {
                "systemuserid": uid,
                "fullname": fullname,
                "internalemailaddress": email,
                "address1_telephone1": main_phone,
                "isdisabled": disabled,
                "applicationid": str(uuid.uuid4()) if application else None,
            }
            return uid

    def throttle(self, seconds: float, retry_after: int = 1) -> None:
        """Answer 429 to every Web API request for `seconds` (not counted as violations)."""
        with self.lock:
            self._throttle_until = time.monotonic() + seconds
            self._retry_after = retry_after

    def script(self, status: int, times: int = 1) -> None:
        """Answer the next `times` Web API requests that pass authentication with `status`."""
        with self.lock:
            self._scripted.extend([status] * times)

    def revoke_tokens(self) -> None:
        """Every token issued so far is refused from now on (as if it had expired early)."""
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = 0.0

    def rows(self, table: str, **where: Any) -> list[dict[str, Any]]:
        with self.lock:
            return [
                dict(r) for r in self.records[table].values() if all(r.get(k) == v for k, v in where.items())
            ]

    def recorded(self, outcome: str | None = "ok") -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if outcome is None or s.outcome == outcome]

    def max_in(self, window: float) -> int:
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

    # ------------------------------------------------------------------------------ answering

    def _handle(self, request: Request) -> Reply:
        with self._flight:  # counted on arrival, before the requests queue for the lock
            self._in_flight += 1
            request.at_once = self._in_flight  # type: ignore[attr-defined]
            self.most_at_once = max(self.most_at_once, self._in_flight)
        try:
            return super()._handle(request)
        finally:
            with self._flight:
                self._in_flight -= 1

    def answer(self, request: Request) -> Reply:
        parts = urlsplit(request.path)
        path = unquote(parts.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if path.startswith(f"/{self.tenant}/"):
            return self._sign_in(request, path[len(self.tenant) + 1 :])
        if not path.startswith(API + "/"):
            return error(404, "0x80060888", f"Resource not found for the segment '{path}'.")
        try:
            body = request.json()
        except ValueError:
            body = None
        seen = Seen(request.method, path[len(API) :], body, request.at)
        self.seen.append(seen)
        reply = self._web_api(request, seen, query)
        seen.status = reply.status
        if not seen.outcome:
            seen.outcome = "ok" if reply.status < 400 else "invalid"
        return reply

    def _sign_in(self, request: Request, rest: str) -> Reply:
        base = f"{self.url}/{self.tenant}"
        if request.method == "GET" and rest == "/v2.0/.well-known/openid-configuration":
            return Reply(
                200,
                {
                    "token_endpoint": f"{base}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                    "issuer": f"{base}/v2.0",
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
                },
            )
        if request.method != "POST" or rest != "/oauth2/v2.0/token":
            return Reply(404, {"error": "not_found"})
        form = {k: v[-1] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "client_credentials":
            return Reply(400, {"error": "unsupported_grant_type", "error_description": "AADSTS70003"})
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return Reply(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                },
            )
        if form.get("scope") != f"{self.url}/.default":
            return Reply(400, {"error": "invalid_scope", "error_description": "AADSTS1002012: scope"})
        lifetime = self.lifetimes.popleft() if self.lifetimes else 3600
        token = secrets.token_urlsafe(32)
        self.tokens[token] = time.monotonic() + lifetime
        self.tokens_issued += 1
        return Reply(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": token,
            },
        )

    def _over_limit(self, at: float) -> bool:
        while self._arrivals and at - self._arrivals[0] >= self.window:
            self._arrivals.popleft()
        over = len(self._arrivals) >= self.limit
        self._arrivals.append(at)
        return over

    def _web_api(self, request: Request, seen: Seen, query: dict[str, str]) -> Reply:
        headers = {k.lower(): v for k, v in request.headers.items()}
        auth = headers.get("authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if self.tokens.get(token, 0.0) <= request.at:
            self.refused_tokens += 1 if token in self.tokens else 0
            seen.outcome = "unauthorized"
            return Reply(
                401, b"", {"WWW-Authenticate": f'Bearer authorization_uri="{self.url}/{self.tenant}"'}
            )
        if self._over_limit(request.at) or getattr(request, "at_once", 1) > self.concurrency:
            self.violations += 1
            seen.outcome = "rate_limited"
            return error(429, "0x80072322", "Number of requests exceeded the limit", **{"Retry-After": "5"})
        if self._scripted:
            seen.outcome = "scripted"
            status = self._scripted.popleft()
            return error(status, "0x80040216", f"scripted {status}")
        if request.at < self._throttle_until:
            self.scripted_429 += 1
            seen.outcome = "throttled"
            return error(
                429,
                "0x80072322",
                "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
                **{"Retry-After": str(self._retry_after)},
            )
        if headers.get("odata-version") != "4.0" or headers.get("odata-maxversion") != "4.0":
            return error(400, "0x80060888", "OData-Version and OData-MaxVersion must be 4.0")
        path, method = seen.path, request.method
        if method == "GET" and path == "/WhoAmI":
            return Reply(
                200,
                {
                    "BusinessUnitId": str(uuid.UUID(int=1)),
                    "UserId": self.app_user,
                    "OrganizationId": str(uuid.UUID(int=2)),
                },
            )
        if method == "GET" and path == "/systemusers":
            return self._users(query, headers.get("prefer", ""))
        if method == "GET" and path in ("/contacts", "/leads"):
            return self._query(path[1:], query, headers.get("prefer", ""))
        if method == "POST" and path[1:] in TABLES:
            return self._create(path[1:], seen)
        one = re.fullmatch(rf"/phonecalls\(({GUID})\)", path)
        if one and method in ("GET", "PATCH"):
            row = self.records["phonecalls"].get(one.group(1))
            if row is None:
                seen.outcome = "not_found"
                return error(404, "0x80040217", f"phonecall With Id = {one.group(1)} Does Not Exist")
            if method == "GET":
                return Reply(200, _selected(row, query))
            return self._close(row, seen.body)
        seen.outcome = "not_found"
        return error(404, "0x80060888", f"Resource not found for the segment '{path.strip('/')}'.")

    def _query(self, table: str, query: dict[str, str], prefer: str = "") -> Reply:
        entity = table[:-1]
        columns = [c for c in query.get("$select", "").split(",") if c]
        known = TABLES[table]["fields"] | {"fullname", "_ownerid_value", "statecode"}
        bad = [c for c in columns if c not in known]
        if bad:
            return error(
                400,
                "0x80060888",
                f"Could not find a property named '{bad[0]}' on type 'Microsoft.Dynamics.CRM.{entity}'.",
            )
        matches = _parse_filter(query.get("$filter", ""))
        if matches is None:
            return error(400, "0x80060888", "The query specified in the URI is not valid.")
        terms, open_only = matches
        if any(column not in PHONES for column, _ in terms):
            return error(400, "0x80060888", "Could not find a property named in the filter.")
        top = int(query.get("$top", "5000"))
        found = [
            _selected(row, {"$select": ",".join(columns)})
            for row in self.records[table].values()
            if (not open_only or row.get("statecode", 0) == 0)
            and any(text in str(row.get(column) or "") for column, text in terms)
        ]
        if LOOKUP_TABLE in prefer and "_ownerid_value" in columns:  # which table the owner is in
            for row in found:
                kind = "systemuser" if row["_ownerid_value"] in self.systemusers else "team"
                row[f"_ownerid_value@{LOOKUP_TABLE}"] = kind
        return Reply(200, {"@odata.context": f"{self.url}{API}/$metadata#{table}", "value": found[:top]})

    def _users(self, query: dict[str, str], prefer: str) -> Reply:
        columns = [c for c in query.get("$select", "").split(",") if c]
        known = {"systemuserid", "fullname", "internalemailaddress", "address1_telephone1", "isdisabled"}
        bad = [c for c in columns if c not in known | {"applicationid"}]
        if bad:
            return error(
                400,
                "0x80060888",
                f"Could not find a property named '{bad[0]}' on type 'Microsoft.Dynamics.CRM.systemuser'.",
            )
        if query.get("$filter", "isdisabled eq false") != "isdisabled eq false":
            return error(400, "0x80060888", "The query specified in the URI is not valid.")
        rows = [
            _selected(u, query) for u in self.users.values() if not u["isdisabled"] or "$filter" not in query
        ]
        size = re.search(r"odata\.maxpagesize=(\d+)", prefer)
        page = min(int(size.group(1)) if size else 5000, self.page_size)
        start = int(query.get("$skiptoken", "0"))
        body: dict[str, Any] = {"value": rows[start : start + page]}
        if start + page < len(rows):
            rest = "&".join(f"{k}={v}" for k, v in query.items() if k != "$skiptoken")
            body["@odata.nextLink"] = f"{self.url}{API}/systemusers?{rest}&$skiptoken={start + page}"
        return Reply(200, body)

    def _create(self, table: str, seen: Seen) -> Reply:
        spec, body = TABLES[table], seen.body
        if not isinstance(body, dict):
            return error(400, "0x80060888", "The request body must be a JSON object.")
        row: dict[str, Any] = {"statecode": 0, "statuscode": 1}
        for name, value in body.items():
            if name.endswith("@odata.bind"):
                nav = name[: -len("@odata.bind")]
                if nav not in spec["binds"]:
                    return error(
                        400,
                        "0x80060888",
                        f"An undeclared property '{nav}' which only has property "
                        "annotations in the payload but no property value was found in the payload.",
                    )
                problem = self._bind(value, spec["binds"][nav])
                if problem:
                    return problem
                row[f"_{nav.split('_')[0] if nav.startswith('regarding') else nav}_value"] = BIND.match(
                    value
                ).group(2)  # type: ignore[union-attr]
                row[nav] = value
            elif name == spec.get("parties"):
                parties = self._parties(value)
                if isinstance(parties, Reply):
                    return parties
                row["parties"] = parties
            elif name in ("statecode", "statuscode"):
                return error(400, "0x80040203", f"{name} cannot be set on create; close the record instead.")
            elif name not in spec["fields"]:
                return error(
                    400,
                    "0x80060888",
                    f"The property '{name}' does not exist on type "
                    f"'Microsoft.Dynamics.CRM.{table[:-1]}'. Make sure to only use property names that "
                    "are defined by the type.",
                )
            else:
                row[name] = value
        key = row.setdefault(spec["key"], str(uuid.uuid4()))
        if key in self.records[table]:
            seen.outcome = "duplicate"
            return error(400, "0x80040237", "Cannot insert duplicate key.")
        if table in ("contacts", "leads"):
            row["fullname"] = " ".join(p for p in (row.get("firstname"), row.get("lastname")) if p)
        self.records[table][key] = row
        return Reply(204, None, {"OData-EntityId": f"{self.url}{API}/{table}({key})"})

    def _bind(self, value: Any, target: str) -> Reply | None:
        match = BIND.match(str(value))
        if not match or match.group(1) != target:
            return error(400, "0x80060888", f"The value '{value}' of a bind is not a {target} record URI.")
        exists = match.group(2) in (self.systemusers if target == "systemusers" else self.records[target])
        if not exists:
            return error(400, "0x80040217", f"{target[:-1]} With Id = {match.group(2)} Does Not Exist")
        return None

    def _parties(self, value: Any) -> list[dict[str, Any]] | Reply:
        if not isinstance(value, list):
            return error(400, "0x80060888", "phonecall_activity_parties must be a collection.")
        out = []
        for party in value:
            binds = [k for k in party if k.endswith("@odata.bind")] if isinstance(party, dict) else []
            mask = party.get("participationtypemask") if isinstance(party, dict) else None
            if len(binds) != 1 or set(party) != {binds[0], "participationtypemask"} or mask not in (1, 2):
                return error(
                    400, "0x80060888", "An activity party is one partyid bind and a participationtypemask."
                )
            nav = binds[0][: -len("@odata.bind")]
            if nav not in PARTY_BINDS:
                return error(400, "0x80060888", f"An undeclared property '{nav}' on activityparty.")
            problem = self._bind(party[binds[0]], PARTY_BINDS[nav])
            if problem:
                return problem
            out.append({"party": party[binds[0]], "mask": mask})
        return out

    def _close(self, row: dict[str, Any], body: Any) -> Reply:
        if row["statecode"] != 0:
            return error(400, "0x80040203", "The phonecall is closed and cannot be changed.")
        if not isinstance(body, dict) or set(body) != {"statecode", "statuscode"}:
            return error(400, "0x80060888", "Only statecode and statuscode are expected when closing.")
        if body["statuscode"] not in CLOSED.get(body["statecode"], set()):
            return error(
                400,
                "0x80040203",
                f"statuscode {body['statuscode']} is not valid for statecode {body['statecode']}.",
            )
        row["statecode"], row["statuscode"] = body["statecode"], body["statuscode"]
        return Reply(204, None)


def _selected(row: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
    columns = [c for c in query.get("$select", "").split(",") if c]
    return {c: row.get(c) for c in columns} if columns else dict(row)


def _parse_filter(text: str) -> tuple[list[tuple[str, str]], bool] | None:
    """``contains(col,'x') or ...`` (a lead query: ``(…) and statecode eq 0``); None when not that."""
    open_only = False
    if text.endswith(" and statecode eq 0"):
        text, open_only = text[: -len(" and statecode eq 0")], True
        if not (text.startswith("(") and text.endswith(")")):
            return None
        text = text[1:-1]
    terms = []
    for part in text.split(" or "):
        match = TERM.match(part.strip())
        if not match:
            return None
        terms.append((match.group(1), match.group(2)))
    return (terms, open_only) if terms else None
