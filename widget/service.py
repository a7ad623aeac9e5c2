"""The callback service: a visitor's request -> checks -> store (+ `callback.requested`, also to the live
popups) -> command or wait.

Life of a request (`widget_requests.status`):

    submit -- inside hours --> queued -- claim --> dialling -- Mango 1000 --> calling -- talks --> done
    submit -- outside hours -> scheduled -- schedule opens: claim --^           |
    calling -- attempt failed --> retry (attempts left; dialled again when due) or failed

Dialling starts with an atomic claim (a conditional UPDATE that only one process can win), so a request
is dialled exactly once per attempt however many workers and schedulers look at it. The command is
recorded in the core's `commands` table before it is sent, so its `/result/callback_group` and the legs
it causes (which carry its `command_id`) tie back to the request; `refresh` reads them to tell the visitor
"calling the managers", "connecting you", "connected" or "we could not reach you".
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, case, insert, select, update

from bridge.commands import journal
from bridge.commands.journal import CommandJournal
from bridge.connector_api import CallEvent, Connector
from bridge.connector_api.events import CALLBACK_REQUESTED
from bridge.connector_api.phones import InvalidPhoneNumber, mango_digits, to_e164
from bridge.outbox.enqueue import enqueue
from bridge.pbx.mango.client import MangoClient
from bridge.pbx.mango.errors import (
    MangoBadRequest,
    MangoBillingError,
    MangoError,
    MangoRateLimited,
    MangoTransportError,
)
from widget import daily_cap, outcome, tokens
from widget.errors import WidgetError
from widget.limits import Check, LimitExceeded, check_and_record, network_of
from widget.numbers import check_number
from widget.popups import GroupManagers, Rosters, announce
from widget.settings import SiteConfig
from widget.sites import Site, SiteCache, blocked, load_site
from widget.tables import widget_requests
from widget.texts import merged_texts

log = logging.getLogger("callbridge.widget")

COMMAND_PATH = "commands/callback_group"
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
_VISITOR = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
FORM_TOKEN_MAX_AGE = tokens.FORM_TOKEN_MAX_AGE

# Statuses: see the module docstring.
SCHEDULED, QUEUED, DIALLING, CALLING, RETRY, DONE, FAILED = (
    "scheduled",
    "queued",
    "dialling",
    "calling",
    "retry",
    "done",
    "failed",
)
WAITING = (SCHEDULED, QUEUED, RETRY)


__all__ = ["CallbackForm", "WidgetError", "WidgetService"]


@dataclass(frozen=True)
class CallbackForm:
    """What the widget posts."""

    phone: str
    form_token: str = ""
    visitor_id: str | None = None
    honeypot: str = ""
    page: str | None = None
    referrer: str | None = None
    lang: str | None = None
    utm: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallbackForm:
        """Build from the posted JSON, refusing wrong types and oversized values with a clear message."""

        def text(name: str, limit: int) -> str | None:
            value = data.get(name)
            if value is None or value == "":
                return None
            if not isinstance(value, str):
                raise WidgetError(400, "bad_request", f"'{name}' must be a string")
            return value[:limit]

        utm_raw = data.get("utm") or {}
        if not isinstance(utm_raw, Mapping):
            raise WidgetError(400, "bad_request", "'utm' must be an object of utm_* tags")
        utm = {
            key: str(value)[:200]
            for key, value in utm_raw.items()
            if key in UTM_KEYS and isinstance(value, str | int) and not isinstance(value, bool) and str(value)
        }
        visitor = text("visitor_id", 64)
        return cls(
            phone=text("phone", 64) or "",
            form_token=text("form_token", 512) or "",
            visitor_id=visitor if visitor and _VISITOR.match(visitor) else None,
            honeypot=text("website", 500) or "",
            page=text("page", 2000),
            referrer=text("referrer", 2000),
            lang=text("lang", 8),
            utm=utm,
        )


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class WidgetService:
    """Everything the widget's endpoints and the scheduler do, over the store and a Mango client."""

    def __init__(
        self,
        engine: Engine,
        connectors: Mapping[str, Connector] | Sequence[Connector],
        client_factory: Callable[[], MangoClient],
        *,
        default_region: str = "RU",
        clock: Callable[[], float] = time.time,
        claim_seconds: float = 60.0,
        outcome_timeout: float = 90.0,
        attempt_timeout: float = 900.0,
        site_cache_ttl: float = 5.0,
    ) -> None:
        self.engine = engine
        self._connectors = list(connectors.values()) if isinstance(connectors, Mapping) else list(connectors)
        self._client_factory = client_factory
        self._client: MangoClient | None = None
        self._client_lock = threading.Lock()
        self.default_region = default_region
        self.clock = clock
        self.claim_seconds = claim_seconds
        self.outcome_timeout = outcome_timeout
        self.attempt_timeout = attempt_timeout
        self.sites = SiteCache(engine, ttl=site_cache_ttl)
        self.managers = GroupManagers(rosters=self._group_rosters, clock=clock)
        self.journal = CommandJournal(engine, clock=clock)

    # ------------------------------------------------------------------------------ helpers

    def client(self) -> MangoClient:
        """One Mango client per service, so its rate limiter and connection pool are shared."""
        with self._client_lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def _group_rosters(self) -> Rosters:
        """Every ring group's operators from Mango, by the group's short number."""
        return {group.extension: group.operators for group in self.client().groups() if group.extension}

    def region(self, config: SiteConfig) -> str:
        return config.region or self.default_region

    def form_token(self, site: Site, now: float | None = None) -> str:
        """A signed token of when the widget was shown, good for one accepted request (`widget.tokens`)."""
        return tokens.issue(site.secret, self.clock() if now is None else now)

    def countries(self, config: SiteConfig) -> list[str]:
        """The countries the site calls: its setting, else the site's region alone."""
        return config.countries or [self.region(config)]

    def public_config(self, site: Site, now: float | None = None) -> dict[str, Any]:
        """What `GET /widget/config` answers: texts, look, countdown, schedule state and a form token."""
        now = self.clock() if now is None else now
        config = site.config
        schedule = config.schedule()
        opening = schedule.next_opening(now)
        return {
            "site": site.key,
            "language": config.language,
            "mode": config.mode,
            "position": config.position,
            "colours": config.colours.model_dump(),
            "countdown": config.countdown,
            "region": self.region(config),
            "timezone": config.timezone,
            "open": schedule.is_open(now),
            "next_opening": _iso(opening.timestamp()) if opening else None,
            "texts": merged_texts(config.texts),
            "form_token": self.form_token(site, now),
            "min_fill_seconds": config.limits.min_fill_seconds,
            "poll_ms": 1000,
        }

    # ------------------------------------------------------------------------------- submit

    def _check_form_token(self, site: Site, form: CallbackForm, now: float) -> None:
        if form.honeypot:
            log.info("widget refused a request site=%s reason=honeypot", site.key)
            raise WidgetError(400, "refused", "the request was refused")
        try:
            tokens.verify(site.secret, form.form_token, now, site.config.limits.min_fill_seconds)
        except WidgetError as exc:
            log.info("widget refused a request site=%s reason=%s: %s", site.key, exc.code, exc.message)
            raise

    def _check_number(self, site: Site, phone: str) -> None:
        refused = check_number(phone, self.countries(site.config), site.config.number_types)
        if refused is not None:
            log.info(
                "widget refused a number site=%s country=%s type=%s", site.key, refused.country, refused.kind
            )
            raise WidgetError(422, "number_not_allowed", refused.message)

    def submit(
        self, site: Site, form: CallbackForm, ip: str | None, now: float | None = None
    ) -> dict[str, Any]:
        """Accept a callback request: checks, then store it with its `callback.requested` event and, inside
        working hours, dial at once. Raises `WidgetError` for anything refused (nothing is stored then)."""
        now = self.clock() if now is None else now
        config = site.config
        if not site.enabled:
            raise WidgetError(404, "unknown_site", "the widget is switched off for this site")
        self._check_form_token(site, form, now)
        try:
            phone = to_e164(form.phone, self.region(config))
        except InvalidPhoneNumber as exc:
            raise WidgetError(422, "invalid_phone", f"the phone number cannot be dialled: {exc}") from None
        self._check_number(site, phone)

        schedule = config.schedule()
        is_open = schedule.is_open(now)
        opening = schedule.next_opening(now)
        token = secrets.token_urlsafe(24)
        lang = (form.lang or "")[:2].lower() or None
        limits = config.limits
        checks = [
            Check("site", site.key, limits.per_site),
            Check("number", f"{site.key}|{phone}", limits.per_number),
        ]
        if ip:
            checks.append(Check("ip", f"{site.key}|{ip}", limits.per_ip))
            network = network_of(ip)
            if network is not None:
                checks.append(Check("network", f"{site.key}|{network}", limits.per_network))
        if form.visitor_id:
            checks.append(Check("visitor", f"{site.key}|{form.visitor_id}", limits.per_visitor))
        managers = self.managers.of(self.engine, config.group)  # who the popup goes to (cached, read-only)

        with self.engine.begin() as conn:  # any refusal below rolls back: the token stays unused
            if not tokens.claim(conn, form.form_token, site.key, now):
                log.info("widget refused a request site=%s reason=token_used", site.key)
                raise WidgetError(
                    409, "token_used", "this form has already sent a request: reload the page to send another"
                )
            if blocked(conn, phone, ip):
                log.info("widget refused a request site=%s reason=blocked", site.key)
                raise WidgetError(403, "blocked", "callback requests from this number or address are blocked")
            refusal: LimitExceeded | None = check_and_record(conn, checks, now)
            if refusal is not None:
                log.info("widget limit site=%s scope=%s", site.key, refusal.scope)
                raise WidgetError(429, "rate_limited", refusal.message, retry_after=refusal.retry_after)
            try:
                daily_cap.check(conn, site.key, config, phone, now)
            except daily_cap.CapReached as exc:
                log.warning("widget daily cap reached site=%s cap=%s", site.key, exc.cap)
                raise WidgetError(429, "daily_cap", str(exc), retry_after=exc.retry_after) from None
            next_at: float | None
            if is_open:
                status, next_at = QUEUED, now + 5.0  # the request's own process dials; the scheduler backs up
            else:
                status, next_at = SCHEDULED, opening.timestamp() if opening else None
            request_id = conn.execute(
                insert(widget_requests)
                .values(
                    token=token,
                    site_key=site.key,
                    phone=phone,
                    visitor_id=form.visitor_id,
                    ip=ip,
                    lang=lang,
                    page_url=form.page,
                    referrer=form.referrer,
                    utm=json.dumps(form.utm, ensure_ascii=False),
                    status=status,
                    attempts=0,
                    max_attempts=1 + config.retries,
                    next_attempt_at=next_at,
                    created_at=now,
                    updated_at=now,
                )
                .returning(widget_requests.c.id)
            ).scalar_one()
            event = CallEvent(
                type=CALLBACK_REQUESTED,
                entry_id=f"widget-{token}",
                key=CALLBACK_REQUESTED,
                occurred_at=now,
                direction="outgoing",
                customer_number=phone,
                line_number=config.line,
                extensions=managers,
                extra={
                    "source": "widget",
                    "site": site.key,
                    "site_name": config.name or site.key,
                    "request_id": request_id,
                    "page": form.page,
                    "referrer": form.referrer,
                    "utm": dict(form.utm),
                    "visitor_id": form.visitor_id,
                    "language": lang,
                    "inside_hours": is_open,
                    "scheduled_for": None if is_open else _iso(next_at),
                },
            )
            enqueue(conn, [event], self._connectors, now=now)
        log.info("widget request accepted site=%s request=%s status=%s", site.key, request_id, status)
        announce(event)  # committed: the managers' and supervisors' popups
        if is_open:
            self.dial(request_id, now, inline=True)
        return self.status(token, now=self.clock()) or {}

    # --------------------------------------------------------------------------------- dial

    def dial(self, request_id: int, now: float | None = None, *, inline: bool = False) -> bool:
        """Claim the request and send `commands/callback_group`; False when someone else has it.

        `inline` is the submitting process (claims a fresh `queued` request at once); the scheduler claims
        waiting requests whose time has come, once the schedule is open.
        """
        now = self.clock() if now is None else now
        command_id = f"wcb-{request_id}-{secrets.token_hex(6)}"
        with self.engine.begin() as conn:
            row = conn.execute(select(widget_requests).where(widget_requests.c.id == request_id)).first()
            if row is None:
                return False
            site = load_site(conn, row.site_key)
            if site is None or not site.enabled:
                conn.execute(
                    update(widget_requests)
                    .where(widget_requests.c.id == request_id, widget_requests.c.status.in_(WAITING))
                    .values(status=FAILED, failure="site_removed", finished_at=now, updated_at=now)
                )
                return False
            conditions = [widget_requests.c.id == request_id]
            if inline:
                conditions.append(widget_requests.c.status == QUEUED)
            else:
                conditions += [
                    widget_requests.c.status.in_(WAITING),
                    widget_requests.c.next_attempt_at <= now,
                ]
            claimed = conn.execute(
                update(widget_requests)
                .where(*conditions)
                .values(
                    status=DIALLING,
                    phase=outcome.CALLING_MANAGERS,
                    attempts=widget_requests.c.attempts + 1,
                    command_id=command_id,
                    claimed_until=now + self.claim_seconds,
                    last_result=None,
                    failure=None,
                    updated_at=now,
                )
            ).rowcount
            if claimed != 1:
                return False
            group, number, line = site.config.group, mango_digits(row.phone), site.config.line
            payload = {"from": group, "to": number, "line_number": line}
            self.journal.record(COMMAND_PATH, payload, conn=conn, command_id=command_id)
        log.info("widget dialling request=%s command=%s", request_id, command_id)
        self._send(request_id, command_id, group, number, line, site.config)
        return True

    def _send(
        self, request_id: int, command_id: str, group: str, number: str, line: str, config: SiteConfig
    ) -> None:
        command_status, sync_result = journal.FAILED, None
        values: dict[str, Any]
        try:
            accepted = self.client().callback_group(group, number, line, command_id=command_id)
            command_status, sync_result = journal.ACCEPTED, accepted.result
            values = {"status": CALLING, "dialled_at": self.clock(), "claimed_until": None}
        except MangoError as exc:
            sync_result = exc.code
            log.warning("widget command %s refused by Mango: %s", command_id, exc)
            now = self.clock()
            if isinstance(exc, MangoTransportError) and exc.maybe_delivered:
                # It may have reached Mango: wait for its result or its legs, as for an accepted one.
                command_status = journal.SENT
                values = {"status": CALLING, "dialled_at": now, "claimed_until": None}
            elif isinstance(exc, MangoRateLimited):
                # Not sent: try again shortly without spending an attempt.
                delay = exc.retry_after or 1.0
                values = {
                    "status": RETRY,
                    "attempts": widget_requests.c.attempts - 1,
                    "next_attempt_at": now + max(1.0, delay),
                    "claimed_until": None,
                    "phase": None,
                }
            else:
                permanent = isinstance(exc, MangoBadRequest | MangoBillingError) and not exc.retryable
                values = self._failed_attempt_values(
                    config, outcome.COMMAND_REFUSED, now, permanent=permanent, result=exc.code
                )
        except Exception:
            log.exception("widget command %s could not be sent", command_id)
            values = self._failed_attempt_values(config, outcome.COMMAND_REFUSED, self.clock())
        finally:
            self.journal.sent(command_id, command_status, sync_result)
        self._transition(request_id, command_id, DIALLING, values)

    def _failed_attempt_values(
        self,
        config: SiteConfig,
        reason: str,
        now: float,
        *,
        permanent: bool = False,
        result: int | None = None,
    ) -> dict[str, Any]:
        """An attempt failed: retry later while attempts remain (a SQL CASE on `attempts`), else failed."""
        values: dict[str, Any] = {"failure": reason, "claimed_until": None, "last_result": result}
        if permanent:
            return {**values, "status": FAILED, "phase": None, "finished_at": now}
        more = widget_requests.c.attempts < widget_requests.c.max_attempts
        return {
            **values,
            "status": case((more, RETRY), else_=FAILED),
            "phase": None,
            "next_attempt_at": case((more, now + config.retry_delay_seconds), else_=None),
            "finished_at": case((more, None), else_=now),
        }

    def _transition(self, request_id: int, command_id: str, expected: str, values: dict[str, Any]) -> bool:
        with self.engine.begin() as conn:
            done = conn.execute(
                update(widget_requests)
                .where(
                    widget_requests.c.id == request_id,
                    widget_requests.c.command_id == command_id,
                    widget_requests.c.status == expected,
                )
                .values(updated_at=self.clock(), **values)
            ).rowcount
        return bool(done)

    # ------------------------------------------------------------------------------ outcome

    def refresh(self, conn: Connection, row: Any, now: float) -> bool:
        """Move a `calling` request on from what its command's result and legs say; True if it changed."""
        if row.status != CALLING or not row.command_id:
            return False
        caused = self.journal.caused(conn, row.command_id)
        command = self.journal.find(conn, row.command_id)
        async_result = command.async_result if command else None
        leg_rows, entry_id = caused.legs, caused.entry_id
        state = outcome.progress(
            [
                outcome.Leg(
                    state=r.state,
                    from_extension=r.from_extension,
                    from_number=r.from_number,
                    to_extension=r.to_extension,
                    to_number=r.to_number,
                    connected_at=r.connected_at,
                )
                for r in leg_rows
            ],
            mango_digits(row.phone),
            async_result=async_result,
            call_closed=caused.call_closed,
        )
        since = now - (row.dialled_at or row.updated_at)
        values: dict[str, Any] = {}
        if state.phase == outcome.CONNECTED:
            values = {"status": DONE, "phase": outcome.CONNECTED, "finished_at": now, "failure": None}
        elif (
            state.phase == outcome.FAILED
            or (not leg_rows and async_result is None and since > self.outcome_timeout)
            or since > self.attempt_timeout
        ):
            site = load_site(conn, row.site_key)
            config = site.config if site else None
            reason = (state.reason if state.phase == outcome.FAILED else None) or outcome.NO_EVENTS
            if config is None:
                values = {"status": FAILED, "failure": reason, "finished_at": now, "phase": None}
            else:
                # Mango refusing the request itself (3xxx) fails the same way on every attempt.
                permanent = async_result is not None and 3000 <= async_result < 4000
                values = self._failed_attempt_values(
                    config, reason, now, permanent=permanent, result=async_result
                )
        elif state.phase != row.phase:
            values = {"phase": state.phase}
        if entry_id and entry_id != row.entry_id:
            values["entry_id"] = entry_id
        if not values:
            return False
        changed = conn.execute(
            update(widget_requests)
            .where(
                widget_requests.c.id == row.id,
                widget_requests.c.status == CALLING,
                widget_requests.c.command_id == row.command_id,
            )
            .values(updated_at=now, **values)
        ).rowcount
        if changed and "status" in values:
            log.info("widget request=%s command=%s outcome=%s", row.id, row.command_id, state.phase)
        return bool(changed)

    # ------------------------------------------------------------------------------- status

    def status(self, token: str, now: float | None = None) -> dict[str, Any] | None:
        """The request's state for the widget, after bringing a call in progress up to date."""
        now = self.clock() if now is None else now
        query = select(widget_requests).where(widget_requests.c.token == token)
        with self.engine.begin() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            if row.status == CALLING and self.refresh(conn, row, now):
                row = conn.execute(query).one()
            site = load_site(conn, row.site_key)
        return self.describe(row, site)

    @staticmethod
    def describe(row: Any, site: Site | None) -> dict[str, Any]:
        state = {
            SCHEDULED: "scheduled",
            QUEUED: outcome.CALLING_MANAGERS,
            DIALLING: outcome.CALLING_MANAGERS,
            CALLING: row.phase or outcome.CALLING_MANAGERS,
            RETRY: "retry",
            DONE: outcome.CONNECTED,
            FAILED: "failed",
        }.get(row.status, "failed")
        return {
            "token": row.token,
            "site": row.site_key,
            "state": state,
            "attempt": row.attempts,
            "max_attempts": row.max_attempts,
            "next_attempt_at": _iso(row.next_attempt_at) if row.status in (SCHEDULED, RETRY) else None,
            "timezone": site.config.timezone if site else "UTC",
            "countdown": site.config.countdown if site else 30,
            "final": row.status in (DONE, FAILED),
            "failure": row.failure if row.status in (RETRY, FAILED) else None,
        }

    def origins_for_token(self, token: str) -> list[str]:
        """The allowed origins of the site a request belongs to (for CORS on the status endpoint)."""
        with self.engine.connect() as conn:
            key = conn.execute(
                select(widget_requests.c.site_key).where(widget_requests.c.token == token)
            ).scalar()
        site = self.sites.get(key) if key else None
        return site.config.origins if site else []
