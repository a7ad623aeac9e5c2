"""Intake: a visitor's form -> checks (form token, number, block list, limits, daily cap) -> a stored
request with its `callback.requested` event (also to the live popups). Dialling is the dialler's job."""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, insert

from bridge.connector_api import CallEvent, Connector
from bridge.connector_api.events import CALLBACK_REQUESTED
from bridge.connector_api.phones import InvalidPhoneNumber, to_e164
from bridge.outbox.enqueue import enqueue
from widget import daily_cap, tokens
from widget.errors import WidgetError
from widget.limits import Check, LimitExceeded, check_and_record, network_of
from widget.numbers import check_number
from widget.popups import GroupManagers, announce
from widget.settings import SiteConfig
from widget.sites import Site, blocked
from widget.states import QUEUED, SCHEDULED, iso
from widget.tables import widget_requests
from widget.texts import merged_texts

log = logging.getLogger("callbridge.widget")

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
_VISITOR = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


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


@dataclass(frozen=True)
class Accepted:
    """A stored request: `dial_now` inside working hours (the submitting process dials it at once)."""

    request_id: int
    token: str
    dial_now: bool


class Intake:
    """Checks and stores callback requests; also what the form needs to be shown (`public_config`)."""

    def __init__(
        self,
        engine: Engine,
        connectors: Sequence[Connector],
        managers: GroupManagers,
        *,
        default_region: str,
        clock: Callable[[], float],
    ) -> None:
        self._engine = engine
        self._connectors = list(connectors)
        self._managers = managers
        self.default_region = default_region
        self._clock = clock

    def region(self, config: SiteConfig) -> str:
        return config.region or self.default_region

    def countries(self, config: SiteConfig) -> list[str]:
        """The countries the site calls: its setting, else the site's region alone."""
        return config.countries or [self.region(config)]

    def form_token(self, site: Site, now: float | None = None) -> str:
        """A signed token of when the widget was shown, good for one accepted request (`widget.tokens`)."""
        return tokens.issue(site.secret, self._clock() if now is None else now)

    def public_config(self, site: Site, now: float | None = None) -> dict[str, Any]:
        """What `GET /widget/config` answers: texts, look, countdown, schedule state and a form token."""
        now = self._clock() if now is None else now
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
            "next_opening": iso(opening.timestamp()) if opening else None,
            "texts": merged_texts(config.texts),
            "form_token": self.form_token(site, now),
            "min_fill_seconds": config.limits.min_fill_seconds,
            "poll_ms": 1000,
        }

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

    def submit(self, site: Site, form: CallbackForm, ip: str | None, now: float) -> Accepted:
        """Check a callback request and store it with its `callback.requested` event; raises `WidgetError`
        for anything refused (nothing is stored then)."""
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
        managers = self._managers.of(self._engine, config.group)  # who the popup goes to (cached, read-only)

        with self._engine.begin() as conn:  # any refusal below rolls back: the token stays unused
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
                    "scheduled_for": None if is_open else iso(next_at),
                },
            )
            enqueue(conn, [event], self._connectors, now=now)
        log.info("widget request accepted site=%s request=%s status=%s", site.key, request_id, status)
        announce(event)  # committed: the managers' and supervisors' popups
        return Accepted(request_id=request_id, token=token, dial_now=is_open)


__all__ = ["UTM_KEYS", "Accepted", "CallbackForm", "Intake"]
