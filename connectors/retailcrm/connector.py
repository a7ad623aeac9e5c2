"""The retailCRM connector: popups, call log, missed-call tasks, caller cards, click-to-call.

What happens per CallEvent (docs/connectors/retailcrm.md has the full picture):

* ``call.ringing``: ``telephony/call/event`` ``type=in`` (incoming) or ``out`` (outgoing, click-to-call
  included) with the ringing employee's extension in ``codes`` (and their user in ``userIds``);
* ``call.answered``: ``hangup`` with ``hangupStatus=cancel`` for the employees it rang who did not take it;
* ``call.ended``: ``hangup`` for everyone still shown a popup (``answered`` for who talked, else the call's
  status), then ``telephony/calls/upload`` once, with the signed recording link;
* ``call.missed``: ``tasks/create`` for the customer's manager (``telephony/manager``), else for the
  first employee rung.

`handle` is safe to repeat: what was sent is remembered in the outbox's reference store per call
(``popup:<ext>``, ``hangup:<ext>``, ``answered:<ext>``, ``popups``, ``upload``, ``task``) and checked first.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
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
from bridge.connector_api.employees import EMPLOYEE_SETTINGS, EmployeeResolver
from bridge.connector_api.events import CALL_ANSWERED, CALL_ENDED, CALL_MISSED, CALL_RINGING
from bridge.connector_api.phones import InvalidPhoneNumber, to_e164
from connectors.retailcrm import payloads, registration
from connectors.retailcrm.client import RetailCrmClient, RetailCrmPermanentError
from connectors.retailcrm.config import SETTINGS_TITLES, RetailCrmConfig
from connectors.retailcrm.lookup import Caller, CallerBook
from connectors.retailcrm.mapping import ImportedMap, match

log = logging.getLogger("callbridge.connectors.retailcrm")

REGISTER_RETRY_SECONDS = 60.0


class RetailCrmConnector(Connector):
    """retailCRM over API v5 (see the module docstring and docs/connectors/retailcrm.md)."""

    manifest: ClassVar[Manifest] = Manifest(
        name="retailcrm",
        title=Title(en="retailCRM", ru="retailCRM"),
        docs="docs/connectors/retailcrm.md",
        capabilities=frozenset(
            {
                Capability.LOOKUP,
                Capability.CALL_LOG,
                Capability.POPUPS,
                Capability.MISSED_TASKS,
                Capability.CLICK_TO_CALL,
                Capability.RESPONSIBLE,
                Capability.EMPLOYEE_IMPORT,
            }
        ),
        requirements=(
            "a retailCRM account",
            "an API key with the telephony, users, customers, orders and tasks scopes",
        ),
        settings={**EMPLOYEE_SETTINGS, **SETTINGS_TITLES},
    )
    config_model: ClassVar[type[BaseModel]] = RetailCrmConfig

    def __init__(
        self,
        config: RetailCrmConfig | dict[str, Any],
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        register_on_bind: bool = True,
    ) -> None:
        if not isinstance(config, RetailCrmConfig):
            config = RetailCrmConfig.model_validate(config)
        types = set()
        if config.popups:
            types |= {CALL_RINGING, CALL_ANSWERED}
        if config.log_calls or config.popups:
            types.add(CALL_ENDED)
        if config.missed_task:
            types.add(CALL_MISSED)
        super().__init__(
            config, rate_limit=RateLimit(config.requests_per_second, 1), event_types=frozenset(types)
        )
        self.settings: RetailCrmConfig = config
        self.client = RetailCrmClient(
            config.url,
            config.api_key.get_secret_value(),
            rate=config.requests_per_second,
            timeout=config.timeout,
            session=session,
            clock=monotonic,
            sleep=sleep,
        )
        self.employees = EmployeeResolver(config, None)
        self._clock = clock
        self._monotonic = monotonic
        self._register_on_bind = register_on_bind and config.register_on_start
        self.callers = CallerBook(
            self.client,
            account_url=config.url,
            orders=config.last_orders,
            keep_seconds=config.lookup_cache_seconds,
            clock=monotonic,
        )
        self._register_lock = threading.Lock()
        self._registered = False
        self._register_tried = monotonic()  # the start's attempt (from `bind`) counts as the first

    def __repr__(self) -> str:
        return f"RetailCrmConnector(account={self.settings.host!r}, code={self.settings.code!r})"

    def bind(self, context: ConnectorContext) -> None:
        super().bind(context)
        self.employees = EmployeeResolver(self.settings, context.state)
        if self._register_on_bind:
            threading.Thread(target=self._register_quietly, name="retailcrm-register", daemon=True).start()

    def wants(self, event: CallEvent) -> bool:
        """Calls with a customer only (internal calls never reach retailCRM)."""
        if event.type not in (self.event_types or ()):
            return False
        return event.direction in payloads.TYPES

    # ------------------------------------------------------------------------------------ events

    def handle(self, event: CallEvent, refs: RefStore) -> None:
        if not self.wants(event):
            return
        self._retry_registration()
        phone = self.phone(event.customer_number)
        if phone is None:
            log.info("retailcrm: no dialable customer number entry_id=%s type=%s", event.entry_id, event.type)
            return
        if event.type == CALL_RINGING:
            self._popup(event, refs, phone)
        elif event.type == CALL_ANSWERED:
            self._taken(event, refs, phone)
        elif event.type == CALL_ENDED:
            if self.settings.popups:
                self._close_popups(event, refs, phone)
            if self.settings.log_calls:
                self._upload(event, refs, phone)
        elif event.type == CALL_MISSED:
            self._missed_task(event, refs, phone)

    def _site(self, event: CallEvent) -> str | None:
        line = "".join(ch for ch in event.line_number or "" if ch.isdigit())
        return self.settings.external_phones.get(line) if line else None

    def _user_id(self, extension: str | None) -> int | None:
        user = self.employees.user_for(extension)
        return int(user) if user and user.isdigit() else None

    def _send_event(
        self, event: CallEvent, phone: str, kind: str, exts: list[str], hangup: str | None
    ) -> None:
        users = sorted({u for ext in exts if (u := self._user_id(ext)) is not None})
        body = payloads.call_event(
            event, kind=kind, phone=phone, codes=exts, user_ids=users, site=self._site(event), hangup=hangup
        )
        self.client.post("/telephony/call/event", {"event": body})

    def _popup(self, event: CallEvent, refs: RefStore, phone: str) -> None:
        entry, ext = event.entry_id, event.extension
        if not ext or refs.get(entry, f"popup:{ext}"):
            return
        rang_at = event.received_at if event.received_at is not None else event.occurred_at
        age = self._clock() - rang_at
        if self.settings.popup_max_age_seconds and age > self.settings.popup_max_age_seconds:
            log.info("retailcrm: popup dropped, the call rang %.0f s ago entry_id=%s", age, entry)
            return
        if self._user_id(ext) is None:
            log.info("retailcrm: extension %s has no retailCRM user, no popup entry_id=%s", ext, entry)
            return
        kind = payloads.TYPES[event.direction]
        self._send_event(event, phone, kind, [ext], None)
        refs.put(entry, f"popup:{ext}", kind)
        popped = _json_list(refs.get(entry, "popups"))
        if ext not in popped:
            refs.put(entry, "popups", json.dumps([*popped, ext]))
        log.info("retailcrm: popup type=%s extension=%s entry_id=%s", kind, ext, entry)

    def _taken(self, event: CallEvent, refs: RefStore, phone: str) -> None:
        """Someone answered: the phones of the others stop ringing, so their popups close."""
        entry = event.entry_id
        if event.extension:
            refs.put(entry, f"answered:{event.extension}", "1")
        others = [
            ext
            for ext in _json_list(refs.get(entry, "popups"))
            if not refs.get(entry, f"answered:{ext}") and not refs.get(entry, f"hangup:{ext}")
        ]
        if others:
            self._hang_up(event, refs, phone, others, "cancel")

    def _close_popups(self, event: CallEvent, refs: RefStore, phone: str) -> None:
        entry = event.entry_id
        status = payloads.hangup_status(event)
        open_ = [e for e in _json_list(refs.get(entry, "popups")) if not refs.get(entry, f"hangup:{e}")]
        # who talked: an answer seen live, or (when the call closed before its answer was folded) the
        # tracker's answerer and the last transfer's target
        talked = {event.extension, event.extra.get("responsible")} if status == "answered" else set()
        took = [e for e in open_ if e in talked or refs.get(entry, f"answered:{e}")]
        rest = [e for e in open_ if e not in took]
        if took:
            self._hang_up(event, refs, phone, took, "answered")
        if rest:
            self._hang_up(event, refs, phone, rest, "cancel" if status == "answered" else status)

    def _hang_up(self, event: CallEvent, refs: RefStore, phone: str, exts: list[str], status: str) -> None:
        self._send_event(event, phone, "hangup", exts, status)
        for ext in exts:
            refs.put(event.entry_id, f"hangup:{ext}", status)
        log.info("retailcrm: hangup status=%s extensions=%s entry_id=%s", status, exts, event.entry_id)

    def _upload(self, event: CallEvent, refs: RefStore, phone: str) -> None:
        entry = event.entry_id
        if refs.get(entry, "upload"):
            return
        code = event.extension or event.extra.get("responsible")
        link = None
        if self.settings.upload_recordings and event.recording_ids and self.context is not None:
            make = self.context.recording_url
            link = make(event.recording_ids[0]) if make is not None else None
        item = payloads.call_log(
            event,
            phone=phone,
            code=code,
            user_id=self._user_id(code),
            site=self._site(event),
            record_url=link,
            zone=self.settings.timezone,
        )
        answer = self.client.post("/telephony/calls/upload", {"calls": [item]})
        refs.put(entry, "upload", str(answer.get("processedCallsCount", 1)))
        log.info(
            "retailcrm: call logged entry_id=%s type=%s result=%s code=%s recording=%s",
            entry,
            item["type"],
            item["result"],
            code,
            "yes" if link else "no",
        )

    def _missed_task(self, event: CallEvent, refs: RefStore, phone: str) -> None:
        entry = event.entry_id
        if refs.get(entry, "task"):
            return
        caller = self.find_caller(phone)
        performer = caller.manager.user_id if caller.manager is not None else self._user_id(event.extension)
        if performer is None:
            log.info(
                "retailcrm: no manager and no retailCRM user for %s, no task entry_id=%s",
                event.extension,
                entry,
            )
            refs.put(entry, "task", "none")
            return
        body = payloads.task(
            event,
            phone=phone,
            performer=performer,
            customer_id=caller.customer_id,
            text=self.settings.task_text,
            due_minutes=self.settings.task_due_minutes,
            zone=self.settings.timezone,
        )
        answer = self.client.post("/tasks/create", {"task": body})
        refs.put(entry, "task", str(answer.get("id", "added")))
        log.info(
            "retailcrm: missed-call task entry_id=%s performer=%s task=%s", entry, performer, answer.get("id")
        )

    # ------------------------------------------------------------------------------------ lookup

    def phone(self, raw: str | None) -> str | None:
        """The customer's number in E.164, or None when it is hidden or not a phone number."""
        if not raw:
            return None
        try:
            return to_e164(raw, self.settings.default_region)
        except InvalidPhoneNumber:
            return None

    def find_caller(self, phone: str, *, max_wait: float | None = None, orders: bool = False) -> Caller:
        """What retailCRM knows about an E.164 number (see `lookup.CallerBook`)."""
        return self.callers.find(phone, max_wait=max_wait, orders=orders)

    def lookup(self, phone: str) -> CallerCard | None:
        e164 = self.phone(phone)
        if e164 is None:
            return None
        caller = self.find_caller(e164, max_wait=self.settings.lookup_max_wait_seconds, orders=True)
        if not caller.known:
            return None
        titles = (
            ("customerLink", "retailCRM customer"),
            ("newOrderLink", "New order"),
            ("lastOrderLink", "Last order"),
        )
        return CallerCard(
            source=self.name,
            name=caller.name,
            links=tuple((title, caller.links[key]) for key, title in titles if key in caller.links),
            responsible=self._responsible(caller),
            details={"customer_id": caller.customer_id, "orders": list(caller.orders)},
        )

    def _responsible(self, caller: Caller) -> Employee | None:
        if caller.manager is None:
            return None
        manager = caller.manager
        extension = self.employees.extension_for(str(manager.user_id)) or manager.code
        return Employee(extension=extension, name=manager.name, crm_user_id=str(manager.user_id))

    def responsible_for(self, phone: str) -> Employee | None:
        e164 = self.phone(phone)
        if e164 is None:
            return None
        return self._responsible(self.find_caller(e164, max_wait=self.settings.lookup_max_wait_seconds))

    # ------------------------------------------------------------------------------------ setup

    def blueprint(self) -> Any | None:
        from connectors.retailcrm.hooks import make_blueprint

        return make_blueprint(self)

    def mapped_users(self) -> dict[str, str]:
        return self.employees.mapped()

    def module(self) -> dict[str, Any]:
        """The integration module as it should be in retailCRM now."""
        if self.context is None:
            raise RuntimeError("not bound: the clientId lives in the connector's state")
        return registration.module(
            code=self.settings.code,
            name=self.settings.module_name,
            client=registration.client_id(self.context.state),
            public_url=self.context.public_url,
            employees=self.employees.mapped(),
            external_phones=self.settings.external_phones,
        )

    def register(self, *, force: bool = False) -> bool:
        """Create or update the integration module (``integration-modules/{code}/edit``); False when
        retailCRM already holds this very module (and `force` is off)."""
        if self.context is None:
            raise RuntimeError("not bound")
        state = self.context.state
        with self._register_lock:  # the content is read and sent in one go: a newer map is never overtaken
            body = self.module()
            if not force and not registration.claim(state, body):
                return False
            try:
                self.client.post(
                    f"/integration-modules/{self.settings.code}/edit", {"integrationModule": body}
                )
            except DeliveryError:
                registration.release(state, body)
                raise
        log.info(
            "retailcrm: integration module %r registered (%d extension code(s), click-to-call %s)",
            self.settings.code,
            len(body["integrations"]["telephony"]["additionalCodes"]),
            "on" if "makeCallUrl" in body["integrations"]["telephony"] else "off: no http.public_url",
        )
        return True

    def set_up(self, *, enabled: bool = True) -> str:
        """`callbridge connectors setup retailcrm`: send the integration module now (`enabled`), or send it
        inactive, which switches the telephony off in retailCRM (turn the connector off too, or its next
        start registers it again)."""
        if enabled:
            self.register(force=True)
            body = self.module()
            telephony = body["integrations"]["telephony"]
            click = telephony.get("makeCallUrl") or "off (set http.public_url)"
            return (
                f"integration module {self.settings.code!r} registered in retailCRM: "
                f"{len(telephony['additionalCodes'])} extension code(s), click-to-call {click}"
            )
        if self.context is None:
            raise RuntimeError("not bound")
        with self._register_lock:
            body = {**self.module(), "active": False}
            self.client.post(f"/integration-modules/{self.settings.code}/edit", {"integrationModule": body})
            registration.release(self.context.state, self.module())  # the next start sends it again
        return f"integration module {self.settings.code!r} switched off in retailCRM"

    def _register_quietly(self) -> None:
        self._register_tried = self._monotonic()
        try:
            self.register()
        except (DeliveryError, RuntimeError) as exc:
            log.warning("retailcrm: could not register the integration module: %s", exc)
        else:
            self._registered = True

    def _retry_registration(self) -> None:
        """A registration that failed on start (retailCRM down, a key fixed since) is tried again by the
        deliveries, at most once a minute, without holding them up for long."""
        if self._registered or not self._register_on_bind or self.context is None:
            return
        if self._monotonic() - self._register_tried < REGISTER_RETRY_SECONDS:
            return
        self._register_quietly()

    def users(self) -> list[dict[str, Any]]:
        """Every retailCRM user (``GET /users``, 100 a page)."""
        users: list[dict[str, Any]] = []
        for page in range(1, 51):
            body = self.client.get("/users", {"limit": 100, "page": page})
            users += [u for u in body.get("users") or [] if isinstance(u, dict)]
            pagination = body.get("pagination") or {}
            if page >= int(pagination.get("totalPageCount") or 1):
                break
        return users

    def import_employees(self, pbx_users: Iterable[Any] | PbxUsers, *, save: bool = True) -> ImportedMap:
        """Match Mango employees to active retailCRM users by e-mail; store the map and send the new
        extension codes to retailCRM (the module's ``additionalCodes``)."""
        if callable(pbx_users):
            pbx_users = pbx_users()
        result = match(pbx_users, [u for u in self.users() if u.get("active", True)])
        if save:
            self.employees.save_imported(result.mapped)
            if self.context is not None and self.settings.register_on_start:
                self.register()
        return result

    def check(self) -> str:
        """Prove the address and key work, (re)register the telephony, and say what is set up."""
        host = self.settings.host
        try:
            self.client.get("/api/credentials")
            registered = None
            if self.context is not None and self.settings.register_on_start:
                registered = self.register()
        except DeliveryError as exc:
            raise type(exc)(self._explain(exc)) from None
        mapped = self.employees.mapped()
        parts = [f"Connected to retailCRM at {host}; {len(mapped)} extension(s) mapped to retailCRM users."]
        if registered is True:
            parts.append(f"The telephony module {self.settings.code!r} was registered (or updated).")
        elif registered is False:
            parts.append(f"The telephony module {self.settings.code!r} is registered and up to date.")
        if self.context is None or not self.context.public_url:
            parts.append("No http.public_url: no click-to-call and calls are logged without recordings.")
        if self.settings.unmapped == "skip":
            parts.append("Unmapped extensions get no popup (unmapped = skip).")
        return " ".join(parts)

    def _explain(self, exc: DeliveryError) -> str:
        status = getattr(exc, "status", None)
        host = self.settings.host
        if status in (401, 403):
            return (
                f"retailCRM at {host} refused the API key (HTTP {status}): create a key in Settings -> "
                "Integration -> API access keys with the telephony, users, customers, orders, tasks scopes."
            )
        if status == 404:
            return f"retailCRM answered 404 at {host}: check url (the account's own address)."
        if isinstance(exc, RetailCrmPermanentError):
            return f"retailCRM at {host} rejected the check: {exc}"
        return f"Could not reach retailCRM at {host}: {exc}"


def _json_list(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []
