"""The YClients connector: telephony setup, incoming-call popups, one history row per call, caller cards.

What happens (docs/connectors/yclients.md has the whole picture):

* before the first delivery: ``setup`` ``enable`` once for this ``crm_token`` (remembered in the connector's
  state, shared by every process and restart); `disable()` sends ``setup`` ``disable``;
* ``call.ringing`` of an incoming call: ``event`` ``incoming`` with the caller's ``phone``, the line called
  (``diversion``) and the ringing extension (``user``); YClients shows the client's card to the staff its
  routing settings choose. Outgoing and internal calls get no popup;
* ``call.ended``: one ``history`` row (type, ``success`` / ``missed``, duration, who took it,
  ``call_id`` = Mango's entry id, ISO 8601 ``date``, and ``link``, the signed callbridge recording link,
  when the call has a recording). A row is never held back for a recording and never sent twice;
  ``call.recording_ready`` is not subscribed (why: the docs page, "One row per call").

`handle` is safe to repeat: the row's state (``history`` = ``sending`` / ``sent``) and each popup
(``popup:<extension>``) are kept in the outbox's reference store per call and checked first.

With a user token the connector also answers caller cards: the client found by a quick search on the
number, their last and next visits, and their usual staff (as the extension it is mapped to) and branch,
which `responsible_for` gives the routing. `import_employees` maps extensions to staff by name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import requests
from pydantic import BaseModel

from bridge.connector_api import (
    CallerCard,
    CallEvent,
    Capability,
    Connector,
    ConnectorContext,
    DeliveryError,
    Employee,
    Manifest,
    PbxUsers,
    RateLimit,
    RefStore,
    Title,
)
from bridge.connector_api.employees import EmployeeMapping, EmployeeResolver
from bridge.connector_api.events import CALL_ENDED, CALL_RINGING
from bridge.connector_api.phones import InvalidPhoneNumber, mango_digits, to_e164
from connectors.yclients import staff, telephony, visits
from connectors.yclients.client import (
    YClientsAuthError,
    YClientsClient,
    YClientsError,
    YClientsPermanentError,
    YClientsRateLimited,
)
from connectors.yclients.config import DEFAULT_RATE, SETTINGS_TITLES, YClientsConfig

log = logging.getLogger("callbridge.connectors.yclients")

SETUP_KEY = "telephony"
SENDING = "sending"
SENT = "sent"
CALLS_PATH = "/api/v1/voip/integration/calls"
STAFF_NAMES_SECONDS = 3600.0


class YClientsConnector(Connector):
    """YClients (see the module docstring and docs/connectors/yclients.md)."""

    manifest: ClassVar[Manifest] = Manifest(
        name="yclients",
        title=Title(en="YClients", ru="YCLIENTS"),
        docs="docs/connectors/yclients.md",
        capabilities=frozenset(
            {
                Capability.POPUPS,
                Capability.CALL_LOG,
                Capability.LOOKUP,
                Capability.RESPONSIBLE,
                Capability.EMPLOYEE_IMPORT,
            }
        ),
        requirements=(
            "a YClients partner token",
            "the network's crm_token (Settings -> Telephony -> Integration)",
            "for caller cards: a YClients user's token",
        ),
        settings=SETTINGS_TITLES,
    )
    config_model: ClassVar[type[BaseModel]] = YClientsConfig
    default_rate_limit: ClassVar[RateLimit | None] = RateLimit(DEFAULT_RATE, 1)
    default_event_types: ClassVar[frozenset[str] | None] = frozenset({CALL_RINGING, CALL_ENDED})

    def __init__(
        self,
        config: YClientsConfig | dict[str, Any],
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(config, YClientsConfig):
            config = YClientsConfig.model_validate(config)
        types = ({CALL_RINGING} if config.popup else set()) | ({CALL_ENDED} if config.log_calls else set())
        super().__init__(
            config, rate_limit=RateLimit(config.requests_per_second, 1), event_types=frozenset(types)
        )
        self.settings: YClientsConfig = config
        self.client = YClientsClient(
            config.api_url,
            config.partner_token.get_secret_value(),
            config.user_token.get_secret_value() if config.user_token else None,
            rate=config.requests_per_second,
            timeout=config.timeout,
            session=session,
            clock=monotonic,
            sleep=sleep,
        )
        self._crm_token = config.crm_token.get_secret_value()
        self._clock = clock
        self._monotonic = monotonic
        self._enabled_here = False
        self._setup_lock = threading.Lock()
        # The staff table of the settings, then the map `import_employees` stored (the kit's resolver).
        self.employees = EmployeeResolver(EmployeeMapping(users=dict(config.staff)), None)
        self._cache: dict[str, tuple[float, CallerCard | None]] = {}
        self._names: tuple[float, dict[str, str]] | None = None
        self._cache_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"YClientsConnector(api={self.settings.host!r}, company_id={self.settings.company_id})"

    def bind(self, context: ConnectorContext) -> None:
        super().bind(context)
        self._enabled_here = False
        self.employees = EmployeeResolver(EmployeeMapping(users=dict(self.settings.staff)), context.state)

    def wants(self, event: CallEvent) -> bool:
        """Popups for incoming calls only; a history row for every call of a known direction."""
        if event.type not in (self.event_types or ()):
            return False
        if event.type == CALL_RINGING:
            return event.direction == "incoming"
        return event.direction in telephony.TYPES

    # ------------------------------------------------------------------------------------ setup

    def _token_mark(self) -> str:
        """Which crm_token (and API) was switched on: a digest, never the token."""
        text = f"{self.settings.api_url}|{self._crm_token}"
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]

    def ensure_enabled(self) -> None:
        """``setup`` ``enable`` once for this crm_token; every process and restart shares the record, and
        the dispatcher's threads wait for the one sending it."""
        if self._enabled_here:
            return
        with self._setup_lock:
            if not self._enabled_here:
                self._enable()

    def _enable(self, *, force: bool = False) -> None:
        state = self.context.state if self.context is not None else None
        mark = self._token_mark()
        current = state.get(SETUP_KEY) if state is not None else None
        if not force and current is not None and _setup_state(current[0]) == ("enabled", mark):
            self._enabled_here = True
            return
        self.client.post(telephony.VOIP_PATH, telephony.setup_body(self._crm_token, True))
        if state is not None:
            record = json.dumps({"state": "enabled", "token": mark, "at": int(self._clock())})
            state.compare_and_set(SETUP_KEY, record, current[1] if current else None)
        self._enabled_here = True
        log.info("yclients: telephony integration enabled company_id=%s", self.settings.company_id)

    def disable(self) -> None:
        """``setup`` ``disable``: YClients closes the routing settings and ignores events and history."""
        self.client.post(telephony.VOIP_PATH, telephony.setup_body(self._crm_token, False))
        self._enabled_here = False
        state = self.context.state if self.context is not None else None
        mark = self._token_mark()
        if state is not None:
            for _ in range(5):
                current = state.get(SETUP_KEY)
                record = json.dumps({"state": "disabled", "token": mark, "at": int(self._clock())})
                if state.compare_and_set(SETUP_KEY, record, current[1] if current else None) is not None:
                    break
        log.info("yclients: telephony integration disabled company_id=%s", self.settings.company_id)

    def set_up(self, *, enabled: bool = True) -> str:
        """`callbridge connectors setup yclients`: ``setup`` ``enable`` now (whatever was recorded), or
        ``disable`` with `enabled` off."""
        if not enabled:
            self.disable()
            return f"telephony integration switched off in YClients (company {self.settings.company_id})"
        with self._setup_lock:
            self._enable(force=True)
        return f"telephony integration switched on in YClients (company {self.settings.company_id})"

    def turned_off(self) -> None:
        """The admin turned the connector off: ``setup`` ``disable`` once, by the first process that records
        it (each process holding the connector is told)."""
        state = self.context.state if self.context is not None else None
        if state is None:
            return
        mark = self._token_mark()
        current = state.get(SETUP_KEY)
        if current is not None and _setup_state(current[0]) == ("disabled", mark):
            return  # already off in YClients
        record = json.dumps({"state": "disabled", "token": mark, "at": int(self._clock())})
        if state.compare_and_set(SETUP_KEY, record, current[1] if current else None) is None:
            return  # another process recorded it first and sends it
        self.client.post(telephony.VOIP_PATH, telephony.setup_body(self._crm_token, False))
        self._enabled_here = False
        log.info(
            "yclients: telephony integration disabled (connector turned off) company_id=%s",
            self.settings.company_id,
        )

    # ------------------------------------------------------------------------------------ events

    def handle(self, event: CallEvent, refs: RefStore) -> None:
        if not self.wants(event):
            return
        if event.type == CALL_RINGING:
            self._popup(event, refs)
        elif event.type == CALL_ENDED:
            self._history(event, refs)

    def phone(self, raw: str | None) -> str | None:
        """The customer's number as YClients' examples write it (E.164 digits), or None."""
        if not raw:
            return None
        try:
            return mango_digits(to_e164(raw, self.settings.default_region))
        except InvalidPhoneNumber:
            return telephony.digits(raw) if raw and raw.strip().isdigit() else None

    def _popup(self, event: CallEvent, refs: RefStore) -> None:
        phone = self.phone(event.customer_number)
        if phone is None:
            log.info("yclients: no caller number, no popup entry_id=%s", event.entry_id)
            return
        max_age = self.settings.popup_max_age_seconds
        rang_at = event.received_at if event.received_at is not None else event.occurred_at
        age = self._clock() - rang_at
        if max_age and age > max_age:
            log.info("yclients: popup dropped, the call rang %.0f s ago entry_id=%s", age, event.entry_id)
            return
        key = f"popup:{event.extension or '-'}"
        if refs.get(event.entry_id, key):
            return
        self.ensure_enabled()
        body = telephony.event_body(
            self._crm_token, phone=phone, diversion=telephony.digits(event.line_number), user=event.extension
        )
        self.client.post(telephony.VOIP_PATH, body)
        refs.put(event.entry_id, key, SENT)
        log.info("yclients: popup sent entry_id=%s extension=%s", event.entry_id, event.extension)

    def _history(self, event: CallEvent, refs: RefStore) -> None:
        entry = event.entry_id
        stage = refs.get(entry, "history")
        if stage == SENT:
            return
        user = telephony.who_took_it(event)
        phone = self.phone(event.customer_number) or telephony.other_party(event, user)
        if phone is None:
            log.info("yclients: no number for the other party, no history row entry_id=%s", entry)
            return
        if stage == SENDING and self._already_logged(event, phone):
            refs.put(entry, "history", SENT)
            log.info("yclients: history row found after a lost answer entry_id=%s", entry)
            return
        link = telephony.recording_link(event, self.context.recording_url if self.context else None)
        body = telephony.history_body(event, self._crm_token, phone=phone, user=user, link=link)
        self.ensure_enabled()
        refs.put(entry, "history", SENDING)
        try:
            self.client.post(telephony.VOIP_PATH, body)
        except YClientsError as exc:
            if exc.status is not None and exc.status < 500:  # refused (429, 4xx): not taken, resend safely
                refs.put(entry, "history", "refused")
            raise
        refs.put(entry, "history", SENT)
        log.info(
            "yclients: history row sent entry_id=%s type=%s status=%s duration=%s user=%s link=%s",
            entry,
            body["type"],
            body["status"],
            body["duration"],
            user,
            "yes" if link else "no",
        )

    def _already_logged(self, event: CallEvent, phone: str) -> bool:
        """After an answer that never came: whether YClients holds the row (needs a user token; without
        one the row is sent again, see the docs page)."""
        if not self.client.has_user:
            log.warning(
                "yclients: the answer to a history row was lost and there is no user token to check; "
                "sending it again entry_id=%s",
                event.entry_id,
            )
            return False
        day = datetime.fromtimestamp(event.started_at or event.occurred_at, UTC).date()
        params = {
            "salon_id": self.settings.company_id,
            "date_from": (day - timedelta(days=1)).isoformat(),
            "date_to": (day + timedelta(days=1)).isoformat(),
            "phone": phone,
            "page": 1,
            "limit": 100,
        }
        try:
            data = self.client.get(CALLS_PATH, params, user=True)
        except YClientsPermanentError as exc:  # e.g. the user may not read the call list: send again
            log.warning(
                "yclients: could not check for a history row after a lost answer, sending it again "
                "entry_id=%s error=%s",
                event.entry_id,
                exc,
            )
            return False
        calls = data if isinstance(data, list) else []
        return any(isinstance(c, dict) and str(c.get("call_id")) == event.entry_id for c in calls)

    # ------------------------------------------------------------------------------------ lookup

    def lookup(self, phone: str) -> CallerCard | None:
        if not self.client.has_user:
            return None
        try:
            e164 = to_e164(phone, self.settings.default_region)
        except InvalidPhoneNumber:
            return None
        now = self._monotonic()
        with self._cache_lock:
            hit = self._cache.get(e164)
        if hit is not None:
            ttl = self.settings.lookup_cache_seconds if hit[1] else self.settings.lookup_miss_cache_seconds
            if now - hit[0] < ttl:
                return hit[1]
        card = self._card(e164)
        with self._cache_lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[e164] = (self._monotonic(), card)
        return card

    def _card(self, e164: str) -> CallerCard | None:
        wait = self.settings.lookup_max_wait_seconds
        company = self.settings.company_id
        found = self.client.post(
            f"/api/v1/company/{company}/clients/search",
            visits.search_body(mango_digits(e164)),
            user=True,
            max_wait=wait,
        )
        client = visits.best_client(found, e164, self.settings.default_region)
        if client is None:
            return None
        now = datetime.fromtimestamp(self._clock(), UTC)
        params = {
            "client_id": client["id"],
            "start_date": (now - timedelta(days=self.settings.visits_days)).date().isoformat(),
            "end_date": (now + timedelta(days=self.settings.visits_days)).date().isoformat(),
        }
        records = self.client.get(f"/api/v1/records/{company}", params, user=True, max_wait=wait)
        habits = visits.habits(records, now)
        if visits.unnamed_staff(habits):  # records that carry only staff_id: name them from the staff list
            habits = visits.habits(records, now, self._staff_names(wait))
        extension = self.employees.extension_for(habits.usual_staff_id) if habits.usual_staff_id else None
        responsible = None
        if habits.usual_staff_id:
            responsible = Employee(
                extension=extension, name=habits.usual_staff_name, crm_user_id=habits.usual_staff_id
            )
        return CallerCard(
            source=self.name,
            name=client.get("name") or None,
            responsible=responsible,
            details=visits.details(client, habits, extension),
        )

    def _staff_names(self, max_wait: float) -> dict[str, str]:
        """Staff id -> name from the staff list, kept for `STAFF_NAMES_SECONDS`; {} when it cannot be read
        (a card is never refused for want of a name)."""
        now = self._monotonic()
        with self._cache_lock:
            cached = self._names
        if cached is not None and now - cached[0] < STAFF_NAMES_SECONDS:
            return cached[1]
        try:
            path = staff.STAFF_PATH.format(company_id=self.settings.company_id)
            data = self.client.get(path, max_wait=max_wait)
        except DeliveryError as exc:
            log.info("yclients: staff names unavailable for the card: %s", exc)
            return {}
        listed = data if isinstance(data, list) else []
        names = {
            str(m["id"]): str(m["name"])
            for m in listed
            if isinstance(m, dict) and m.get("id") and m.get("name")
        }
        with self._cache_lock:
            self._names = (self._monotonic(), names)
        return names

    def responsible_for(self, phone: str) -> Employee | None:
        """The client's usual staff member, as the extension they are mapped to (for routing)."""
        card = self.lookup(phone)
        return card.responsible if card is not None else None

    def mapped_users(self) -> dict[str, str]:
        return self.employees.mapped()

    def staff(self) -> list[dict[str, Any]]:
        """The branch's staff (``GET /api/v1/staff/{company_id}``; the partner token suffices)."""
        data = self.client.get(staff.STAFF_PATH.format(company_id=self.settings.company_id))
        return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []

    def import_employees(self, pbx_users: PbxUsers, *, save: bool = True) -> staff.StaffSuggestion:
        """Match Mango's employees to the branch's staff by name and store the map (see staff.py); the
        ``[connectors.yclients.staff]`` table still wins for the extensions it names."""
        suggestion = staff.suggest(self.staff(), pbx_users())
        if save:
            self.employees.save_imported(suggestion.mapped)
        return suggestion

    # ------------------------------------------------------------------------------------ check

    def check(self) -> str:
        """Switch the integration on (proves the partner token and crm_token) and, with a user token, read
        today's records of the branch (proves the user token and company_id)."""
        host = self.settings.host
        try:
            with self._setup_lock:
                self._enable(force=True)  # a real request: it proves the partner token and crm_token
            parts = [f"Connected to YClients at {host}: the telephony integration is on for this crm_token."]
            if self.client.has_user:
                today = datetime.fromtimestamp(self._clock(), UTC).date().isoformat()
                path = f"/api/v1/records/{self.settings.company_id}"
                self.client.get(path, {"start_date": today, "end_date": today}, user=True)
                parts.append(f"The user token reads branch {self.settings.company_id}: caller cards are on.")
            else:
                parts.append("No user_token: no caller cards and no usual staff for routing.")
        except DeliveryError as exc:
            raise type(exc)(self._explain(exc)) from None
        imported = self.employees.imported() if self.context is not None else {}
        in_force = self.employees.mapped()
        mapped = f"{len(in_force)} extension(s) mapped to YClients staff"
        if imported:
            mapped += f" ({len(self.settings.staff)} in the settings, {len(imported)} imported by name)"
        parts.append(f"{mapped}. Set who sees popups in YClients: Settings -> Telephony -> routing.")
        if in_force:
            try:
                known = {str(member.get("id")) for member in self.staff() if not member.get("fired")}
            except DeliveryError as exc:
                parts.append(f"The staff list could not be read to check the map ({exc}).")
            else:
                missing = sorted(ext for ext, sid in in_force.items() if sid not in known)
                if missing:
                    parts.append(
                        "These extensions point at staff the branch does not have (or who left): "
                        + ", ".join(missing)
                        + "."
                    )
        if self.context is None or not self.context.public_url:
            parts.append("No http.public_url: history rows carry no recording link.")
        return " ".join(parts)

    def _explain(self, exc: DeliveryError) -> str:
        host = self.settings.host
        status = getattr(exc, "status", None)
        said = getattr(exc, "message", None)
        words = f" YClients said: {said}." if said else ""
        if isinstance(exc, YClientsAuthError):
            return (
                f"YClients at {host} refused a token (HTTP 401): check partner_token and user_token.{words}"
            )
        if status == 403:
            return (
                f"YClients at {host} answered 403: the crm_token (Settings -> Telephony -> Integration) "
                f"or the user's rights for branch {self.settings.company_id} do not fit.{words}"
            )
        if status == 404:
            return f"YClients at {host} answered 404: check api_url and company_id.{words}"
        if isinstance(exc, YClientsRateLimited):
            return f"YClients at {host} is rate-limiting this address (HTTP 429); try again in a minute."
        if status is not None and status >= 500:
            return f"YClients at {host} is failing (HTTP {status}); try again later."
        if status is None:
            return f"Could not reach YClients at {host}: {str(exc).split(': ', 1)[-1]}."
        return f"YClients at {host} rejected the check: {exc}"

    def close(self) -> None:
        self.client.session.close()


def _setup_state(text: str) -> tuple[str, str] | None:
    try:
        record = json.loads(text)
        return str(record["state"]), str(record["token"])
    except (ValueError, KeyError, TypeError):
        return None
