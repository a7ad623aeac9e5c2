"""The Bitrix24 connector: external-call card, call log, missed-call tasks, records, click-to-call, lookup.

What happens per CallEvent (docs/connectors/bitrix24.md has the whole picture):

* ``call.ringing``: the first mapped employee a call rings gets ``telephony.externalCall.register``
  (``EXTERNAL_CALL_ID`` = the Mango entry id, ``SHOW=1``): once per call. Every further ringing
  employee gets ``show``.
* ``call.answered``: ``hide`` from everyone it was shown to except the one who answered (one call
  with a list of USER_IDs).
* ``call.transferred``: ``show`` to the new employee, ``hide`` from the one who handed it over.
* ``call.ended``: one ``batch``: ``register`` first if the call never rang a mapped employee, ``hide``
  from the cards still open, ``finish`` with STATUS_CODE and DURATION, and for a missed call whose CRM
  binding is already known the ``tasks.task.add`` for the responsible employee.
* ``call.missed``: the task, when it was not in the ``call.ended`` batch.
* ``call.recording_ready``: ``attachRecord`` with a RECORD_URL, only after ``finish`` (retried until
  then); one record per call (Bitrix24 keeps one; a second attach would replace the first).

A click-to-call (``ONEXTERNALCALLSTART``, see hooks.py) is registered by Bitrix24 itself: its events are
linked to that CALL_ID through the command id and never registered again.

`handle` is safe to repeat: everything obtained is kept in the outbox's reference store per call
(``call_id``, ``who``, ``crm``, ``shown``, ``hidden``, ``finished``, ``task``, ``record``, ``click``)
and checked first. A repeated ``register`` after a lost answer is absorbed by Bitrix24 itself: the same
EXTERNAL_CALL_ID within 30 minutes returns the same CALL_ID.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar

import requests
from pydantic import BaseModel

from bridge.connector_api import (
    CallerCard,
    CallEvent,
    Capability,
    Connector,
    DeliveryError,
    Employee,
    Manifest,
    PbxUsers,
    RateLimit,
    RefStore,
    RetryableDeliveryError,
    Title,
)
from bridge.connector_api.employees import EMPLOYEE_SETTINGS
from bridge.connector_api.events import (
    CALL_ANSWERED,
    CALL_CALLED_BACK,
    CALL_ENDED,
    CALL_MISSED,
    CALL_RECORDING_READY,
    CALL_RINGING,
    CALL_TRANSFERRED,
)
from bridge.connector_api.http import DEFAULT_USER_AGENT, make_session, safe_host
from bridge.connector_api.phones import InvalidPhoneNumber, to_e164
from connectors.bitrix24 import handler, lookup
from connectors.bitrix24.clicks import ClickRegistry
from connectors.bitrix24.client import AppCredentials, Bitrix24Client, Command, WebhookCredentials, ref
from connectors.bitrix24.config import SETTINGS_TITLES, Bitrix24Config
from connectors.bitrix24.errors import BitrixError, BitrixPermanent, BitrixRetryable, NotAuthorised
from connectors.bitrix24.handler import Who
from connectors.bitrix24.mapping import Employees, ImportReport
from connectors.bitrix24.oauth import APP_TOKEN_KEY, OAuthTokens

log = logging.getLogger("callbridge.connectors.bitrix24")

# The dispatcher's bucket counts handle() calls; Bitrix24 counts HTTP requests, and the client packs the
# commands of concurrent handle() calls into one batch request. So the dispatcher may start events a few
# times faster than requests go out; the client's own bucket is what keeps the portal under its limit.
DISPATCH_FACTOR = 4
REGISTER = "telephony.externalCall.register"
FINISH = "telephony.externalCall.finish"
SHOW = "telephony.externalCall.show"
HIDE = "telephony.externalCall.hide"
ATTACH = "telephony.externalCall.attachRecord"
SEARCH = "telephony.externalCall.searchCrmEntities"
TASK_ADD = "tasks.task.add"
TASK_COMPLETE = "tasks.task.complete"
SKIPPED = "skipped"
LOOKUP_MAX_WAIT = 5.0  # a caller card later than this is no use to a popup; do not spend the budget on it
WANTED = frozenset(
    {
        CALL_RINGING,
        CALL_ANSWERED,
        CALL_TRANSFERRED,
        CALL_ENDED,
        CALL_MISSED,
        CALL_RECORDING_READY,
        CALL_CALLED_BACK,
    }
)
# attachRecord answers that mean "not yet" rather than "never" (telephony-external-call-attach-record.md).
_RECORD_NOT_YET = ("not finished yet", "not found in the statistic", "server returns http error code")


class Bitrix24Connector(Connector):
    """Bitrix24 telephony through the REST API (see the module docstring and docs/connectors/bitrix24.md)."""

    manifest: ClassVar[Manifest] = Manifest(
        name="bitrix24",
        title=Title(en="Bitrix24", ru="Битрикс24"),
        docs="docs/connectors/bitrix24.md",
        capabilities=frozenset(
            {
                Capability.LOOKUP,
                Capability.CALL_LOG,
                Capability.MISSED_TASKS,
                Capability.POPUPS,
                Capability.CLICK_TO_CALL,
                Capability.LEADS,
                Capability.EMPLOYEE_IMPORT,
                Capability.RESPONSIBLE,
            }
        ),
        requirements=("a Bitrix24 portal", "a local application (OAuth) or an inbound webhook URL"),
        settings={**EMPLOYEE_SETTINGS, **SETTINGS_TITLES},
    )
    config_model: ClassVar[type[BaseModel]] = Bitrix24Config
    default_rate_limit: ClassVar[RateLimit | None] = RateLimit(2.0 * DISPATCH_FACTOR, 50)
    default_event_types: ClassVar[frozenset[str] | None] = WANTED

    def __init__(
        self,
        config: Bitrix24Config | dict[str, Any],
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(config, Bitrix24Config):
            config = Bitrix24Config.model_validate(config)
        super().__init__(config, rate_limit=RateLimit(config.rate_per_second * DISPATCH_FACTOR, config.burst))
        self.settings: Bitrix24Config = config
        self._clock = clock
        self._session = session or make_session(user_agent=f"{DEFAULT_USER_AGENT} bitrix24", pool=8)
        timeout = (min(3.05, config.timeout), config.timeout)
        self.tokens: OAuthTokens | None = None
        webhook = config.webhook_url.get_secret_value() if config.webhook_url else None
        if config.auth_mode == "app":
            self.tokens = OAuthTokens(
                self._state,
                client_id=config.client_id,
                client_secret=config.client_secret.get_secret_value() if config.client_secret else None,
                token_url=config.oauth_url,
                session=self._session,
                timeout=timeout,
                clock=clock,
                sleep=sleep,
            )
            credentials: Any = AppCredentials(config.rest_url, self.tokens, webhook)
        else:
            assert webhook is not None
            credentials = WebhookCredentials(webhook)
        self.client = Bitrix24Client(
            config.portal,
            credentials,
            rate=config.rate_per_second,
            burst=config.burst,
            session=self._session,
            timeout=timeout,
            clock=monotonic,
            wall=clock,
            sleep=sleep,
        )
        self.employees = Employees(config, self._state, self.client, clock=clock)
        self.clicks = ClickRegistry(self._state, clock=clock)
        self._cache: dict[str, tuple[float, CallerCard | None]] = {}
        self._cache_lock = threading.Lock()
        self._monotonic = monotonic
        self._warned_no_record_url = False

    def __repr__(self) -> str:
        return (
            f"Bitrix24Connector(portal={safe_host(self.settings.portal)!r}, auth={self.settings.auth_mode!r})"
        )

    def _state(self) -> Any:
        return self.context.state if self.context is not None else None

    def wants(self, event: CallEvent) -> bool:
        """Calls with a customer only: internal calls never reach Bitrix24."""
        if event.type not in WANTED or event.direction == "internal" or not event.customer_number:
            return False
        if event.type in (CALL_ANSWERED, CALL_TRANSFERRED) and not self.settings.popups:
            return False
        if event.type in (CALL_MISSED, CALL_CALLED_BACK) and not self.settings.missed_task:
            return False
        return not (event.type == CALL_RECORDING_READY and not self.settings.attach_records)

    # ------------------------------------------------------------------ handle

    def handle(self, event: CallEvent, refs: RefStore) -> None:
        if not self.wants(event):
            return
        self._link_click(event, refs)
        if event.type == CALL_RINGING:
            self._ringing(event, refs)
        elif event.type == CALL_ANSWERED:
            self._answered(event, refs)
        elif event.type == CALL_TRANSFERRED:
            self._transferred(event, refs)
        elif event.type == CALL_ENDED:
            self._ended(event, refs)
        elif event.type == CALL_MISSED:
            self._missed(event, refs)
        elif event.type == CALL_CALLED_BACK:
            self._called_back(event, refs)
        elif event.type == CALL_RECORDING_READY:
            self._record(event, refs)

    def _link_click(self, event: CallEvent, refs: RefStore) -> None:
        """A call placed by ONEXTERNALCALLSTART already has its CALL_ID: take it instead of registering."""
        if not event.command_id or refs.get(event.entry_id, "call_id"):
            return
        click = self.clicks.by_command(event.command_id)
        if click is not None:
            refs.put(event.entry_id, "call_id", click.call_id)
            refs.put(event.entry_id, "who", Who(user_id=click.user_id).key())
            refs.put(event.entry_id, "click", "1")
            return
        if self.clicks.pending():
            # The web worker that received the click has not stored its command id yet.
            raise BitrixRetryable(
                f"bitrix24: entry {event.entry_id}: waiting for a click-to-call to learn its command id"
            )

    def _phone(self, event: CallEvent) -> str:
        phone = handler.phone_number(event, self.settings.default_region)
        if phone is None:
            raise BitrixPermanent(f"bitrix24: entry {event.entry_id} has no customer number to log")
        return phone

    def _register(self, event: CallEvent, who: Who, *, show: bool) -> Command:
        line = event.line_number if self.settings.send_line_number else None
        return Command(
            REGISTER,
            handler.register_params(
                event,
                who,
                phone=self._phone(event),
                crm_create=self.settings.crm_create,
                crm_source=self.settings.crm_source,
                line_number=line,
                show=show,
            ),
        )

    def _registered(self, event: CallEvent, refs: RefStore, who: Who, result: Any) -> str:
        if not isinstance(result, dict) or not result.get("CALL_ID"):
            raise BitrixRetryable(f"bitrix24: register for entry {event.entry_id} returned no CALL_ID")
        call_id = str(result["CALL_ID"])
        refs.put(event.entry_id, "call_id", call_id)
        refs.put(event.entry_id, "who", who.key())
        self._remember_crm(event, refs, result)
        log.info("bitrix24: registered entry_id=%s call_id=%s %s", event.entry_id, call_id, who.key())
        return call_id

    @staticmethod
    def _remember_crm(event: CallEvent, refs: RefStore, result: Any) -> None:
        if not isinstance(result, dict):
            return
        kind, entity = result.get("CRM_ENTITY_TYPE"), result.get("CRM_ENTITY_ID")
        if not (kind and entity):
            created = result.get("CRM_CREATED_ENTITIES")
            if isinstance(created, list) and created and isinstance(created[0], dict):
                kind, entity = created[0].get("ENTITY_TYPE"), created[0].get("ENTITY_ID")
        if kind and entity:
            refs.put(event.entry_id, "crm", f"{kind}:{entity}")

    def _ringing(self, event: CallEvent, refs: RefStore) -> None:
        entry = event.entry_id
        call_id = refs.get(entry, "call_id")
        if call_id is None:
            who = self.employees.resolve(event.extension)
            if who is None:
                log.info(
                    "bitrix24: entry_id=%s extension %s is not mapped; not registered yet",
                    entry,
                    event.extension,
                )
                return
            result = self.client.batch({"register": self._register(event, who, show=True)}, must_succeed=True)
            self._registered(event, refs, who, result.results.get("register"))
            if who.user_id is not None:
                _add(refs, entry, "shown", [who.user_id])
            return
        if refs.get(entry, "click") or not self.settings.popups:
            return
        user = self.employees.user_id(event.extension)
        if user is None or user in _list(refs, entry, "shown"):
            return
        self.client.call(SHOW, {"CALL_ID": call_id, "USER_ID": [int(user)]})
        _add(refs, entry, "shown", [user])

    def _answered(self, event: CallEvent, refs: RefStore) -> None:
        entry = event.entry_id
        call_id = refs.get(entry, "call_id")
        if call_id is None or refs.get(entry, "click"):
            return
        keep = self.employees.user_id(event.extension)
        self._hide(entry, refs, call_id, [u for u in _list(refs, entry, "shown") if u != keep])

    def _hide(self, entry: str, refs: RefStore, call_id: str, users: list[str]) -> None:
        hidden = _list(refs, entry, "hidden")
        users = [u for u in users if u not in hidden]
        if not users:
            return
        self.client.call(HIDE, {"CALL_ID": call_id, "USER_ID": [int(u) for u in users]})
        _add(refs, entry, "hidden", users)

    def _transferred(self, event: CallEvent, refs: RefStore) -> None:
        entry = event.entry_id
        call_id = refs.get(entry, "call_id")
        if call_id is None or refs.get(entry, "click"):
            return
        new = self.employees.user_id(event.extension)
        if new is not None and new not in _list(refs, entry, "shown"):
            self.client.call(SHOW, {"CALL_ID": call_id, "USER_ID": [int(new)]})
            _add(refs, entry, "shown", [new])
        old = self.employees.user_id(event.transferred_from)
        if old is not None and old != new and old in _list(refs, entry, "shown"):
            self._hide(entry, refs, call_id, [old])

    def _finisher(self, event: CallEvent, refs: RefStore) -> Who | None:
        """Who finish names: the click's user, else the responsible (last transfer target or the one who
        answered), else who answered, else whom the call was registered for, else the default user."""
        registered = Who.from_key(refs.get(event.entry_id, "who"))
        if refs.get(event.entry_id, "click") and registered is not None:
            return registered
        for extension in (event.extra.get("responsible"), event.extension):
            if extension:
                who = self.employees.resolve(str(extension))
                if who is not None:
                    return who
        # Nobody of the call is mapped (or nobody rang, e.g. abandoned in the IVR): the default user, if any.
        return registered or self.employees.resolve(None)

    def _ended(self, event: CallEvent, refs: RefStore) -> None:
        entry = event.entry_id
        if refs.get(entry, "finished"):
            return
        call_id = refs.get(entry, "call_id")
        who = self._finisher(event, refs)
        if who is None:
            log.info("bitrix24: entry_id=%s: no employee of the call is mapped; not logged", entry)
            refs.put(entry, "finished", SKIPPED)
            return
        commands: dict[str, Command] = {}
        if call_id is None:
            commands["register"] = self._register(event, who, show=False)
            call_ref: Any = ref("register", "CALL_ID")
        else:
            call_ref = call_id
            if self.settings.popups and not refs.get(entry, "click"):
                hidden = _list(refs, entry, "hidden")
                still = [u for u in _list(refs, entry, "shown") if u not in hidden and u != who.user_id]
                if still:
                    commands["hide"] = Command(HIDE, {"CALL_ID": call_id, "USER_ID": [int(u) for u in still]})
        commands["finish"] = Command(FINISH, handler.finish_params(call_ref, who, event))
        task = self._task_command(event, refs) if event.extra.get("missed") else None
        if task is not None:
            commands["task"] = task
        result = self.client.batch(commands)
        if "register" in commands:
            if "register" in result.errors:
                raise result.errors["register"]  # type: ignore[misc]
            call_id = self._registered(event, refs, who, result.results.get("register"))
        if "hide" in commands:
            if "hide" in result.errors:
                log.info("bitrix24: entry_id=%s: hide failed: %s", entry, result.errors["hide"])
            else:
                _add(refs, entry, "hidden", [str(u) for u in commands["hide"].params["USER_ID"]])
        if "finish" in result.errors:
            raise result.errors["finish"]  # type: ignore[misc]
        finished = result.results.get("finish")
        self._remember_crm(event, refs, finished)
        status = commands["finish"].params["STATUS_CODE"]
        refs.put(entry, "finished", str(status))
        log.info(
            "bitrix24: finished entry_id=%s call_id=%s status=%s duration=%s",
            entry,
            call_id,
            status,
            commands["finish"].params["DURATION"],
        )
        if task is not None:
            self._task_done(event, refs, result.results.get("task"), result.errors.get("task"))

    def _task_command(self, event: CallEvent, refs: RefStore) -> Command | None:
        """The missed-call task, when the CRM binding is known (else call.missed creates it later)."""
        if not self.settings.missed_task or refs.get(event.entry_id, "task"):
            return None
        crm = refs.get(event.entry_id, "crm")
        if crm is None:
            return None
        return self._task(event, refs, crm)

    def _task(self, event: CallEvent, refs: RefStore, crm: str | None) -> Command | None:
        responsible = event.extension if event.type == CALL_MISSED else event.extra.get("responsible")
        user = self.employees.user_id(str(responsible) if responsible else None)
        if user is None:
            registered = Who.from_key(refs.get(event.entry_id, "who"))
            user = registered.user_id if registered is not None else None
        if user is None:
            return None
        kind, _, entity = (crm or "").partition(":")
        fields = handler.task_fields(
            event,
            user,
            phone=self._phone(event),
            binding=handler.task_binding(kind, entity),
            title=self.settings.missed_task_title,
            description=self.settings.missed_task_description,
            deadline_minutes=self.settings.missed_task_deadline_minutes,
            now=self._clock(),
        )
        return Command(TASK_ADD, {"fields": fields})

    def _task_done(self, event: CallEvent, refs: RefStore, result: Any, error: BitrixError | None) -> None:
        if error is not None:
            if isinstance(error, RetryableDeliveryError):
                raise error  # type: ignore[misc]
            log.warning("bitrix24: entry_id=%s: missed-call task refused: %s", event.entry_id, error)
            refs.put(event.entry_id, "task", "refused")
            return
        task_id = result.get("task", {}).get("id") if isinstance(result, dict) else None
        refs.put(event.entry_id, "task", str(task_id or "created"))
        log.info("bitrix24: missed-call task entry_id=%s task=%s", event.entry_id, task_id)

    def _missed(self, event: CallEvent, refs: RefStore) -> None:
        entry = event.entry_id
        if refs.get(entry, "task"):
            return
        finished = refs.get(entry, "finished")
        if finished is None:
            raise BitrixRetryable(f"bitrix24: entry {entry}: the missed-call task waits for finish")
        task = self._task(event, refs, refs.get(entry, "crm"))
        if task is None:
            refs.put(entry, "task", SKIPPED)
            log.info("bitrix24: entry_id=%s: nobody mapped to give the missed-call task to", entry)
            return
        result = self.client.batch({"task": task})
        self._task_done(event, refs, result.results.get("task"), result.errors.get("task"))

    def _called_back(self, event: CallEvent, refs: RefStore) -> None:
        """The missed call was followed up: its task is completed (`tasks.task.complete`), once."""
        entry = event.entry_id
        task = refs.get(entry, "task")
        if not task or not task.isdigit() or refs.get(entry, "task_completed"):
            return  # no task of ours (skipped, refused, never created), or already completed
        try:
            self.client.call(TASK_COMPLETE, {"taskId": int(task)})
        except BitrixPermanent as error:  # deleted or completed in Bitrix24 meanwhile
            log.warning("bitrix24: entry_id=%s: task %s not completed: %s", entry, task, error)
            refs.put(entry, "task_completed", "refused")
            return
        refs.put(entry, "task_completed", "1")
        log.info("bitrix24: missed-call task %s completed entry_id=%s by=%s", task, entry, event.extension)

    def record_url(self, recording_id: str) -> str | None:
        """Where Bitrix24 can download a recording: the core's signed, expiring link
        (``<http.public_url>/recordings/<id>?t=...``); None without a public URL or when linking
        recordings is switched off."""
        provider = self.context.recording_url if self.context is not None else None
        return provider(recording_id) if provider is not None else None

    def _record(self, event: CallEvent, refs: RefStore) -> None:
        entry = event.entry_id
        if refs.get(entry, "record") or not event.recording_id:
            return
        finished = refs.get(entry, "finished")
        if finished == SKIPPED:
            return
        call_id = refs.get(entry, "call_id")
        if not call_id or not finished:
            raise BitrixRetryable(f"bitrix24: entry {entry}: the record waits until the call is finished")
        url = self.record_url(event.recording_id)
        if url is None:
            if not self._warned_no_record_url:
                log.warning(
                    "bitrix24: no recording link (no http.public_url, or linking recordings is switched "
                    "off in the panel): recordings are not attached"
                )
                self._warned_no_record_url = True
            refs.put(entry, "record", SKIPPED)
            return
        name = re.sub(r"[^A-Za-z0-9_-]", "", event.recording_id)[:60] or "record"
        try:
            self.client.call(ATTACH, {"CALL_ID": call_id, "FILENAME": f"{name}.mp3", "RECORD_URL": url})
        except BitrixPermanent as exc:
            text = (exc.description or "").lower()
            if any(words in text for words in _RECORD_NOT_YET):
                raise BitrixRetryable(
                    str(exc), method=ATTACH, code=exc.code, description=exc.description
                ) from None
            raise
        refs.put(entry, "record", event.recording_id)
        log.info("bitrix24: record attached entry_id=%s call_id=%s", entry, call_id)

    # ------------------------------------------------------------------ lookup and routing

    def lookup(self, phone: str) -> CallerCard | None:
        try:
            number = to_e164(phone, self.settings.default_region)
        except InvalidPhoneNumber:
            return None
        ttl = self.settings.lookup_cache_seconds
        now = self._monotonic()
        with self._cache_lock:
            hit = self._cache.get(number)
            if hit is not None and now - hit[0] < ttl:
                return hit[1]
        entities = self.client.call(SEARCH, {"PHONE_NUMBER": number}, max_wait=LOOKUP_MAX_WAIT)
        found = lookup.card(self.settings.portal, entities, self._extension_for_quietly)
        with self._cache_lock:
            if len(self._cache) > 5000:
                self._cache.clear()
            self._cache[number] = (now, found)
        return found

    def responsible_for(self, phone: str) -> Employee | None:
        found = self.lookup(phone)
        return found.responsible if found is not None else None

    def _extension_for_quietly(self, user_id: str) -> str | None:
        try:
            return self.employees.mapped_extension(user_id)
        except Exception:  # a card without the extension is still a card
            return None

    # ------------------------------------------------------------------ employees

    def mapped_users(self) -> dict[str, str]:
        return self.employees.mapped()

    def import_employees(self, pbx_users: PbxUsers | None = None) -> ImportReport:
        """Import the extension -> user map from Bitrix24 (``user.get``, ``UF_PHONE_INNER``) and store it.

        Bitrix24 knows its users' inner numbers, so the PBX's list (`pbx_users`) is never fetched."""
        return self.employees.import_now()

    # ------------------------------------------------------------------ inbound hooks

    def blueprint(self) -> Any:
        from connectors.bitrix24.hooks import make_blueprint

        return make_blueprint(self)

    def application_token(self) -> str | None:
        """The token inbound events must carry: the pinned one, else the one the install stored."""
        if self.settings.application_token is not None:
            return self.settings.application_token.get_secret_value()
        store = self._state()
        stored = store.get(APP_TOKEN_KEY) if store is not None else None
        return stored[0] if stored else None

    # ------------------------------------------------------------------ check

    def check(self) -> str:
        """One request (a batch of user.get, and externalLine.get for the application); plain words."""
        host = self.settings.host
        commands = {"users": Command("user.get", {"FILTER": {"ACTIVE": True}})}
        app = self.tokens is not None
        if app:
            assert self.tokens is not None
            if not self.tokens.installed():
                raise NotAuthorised(
                    f"Bitrix24 at {host}: the local application is not installed yet. In Bitrix24 open "
                    "Developer resources -> Other -> Local application, set the install path to "
                    f"{self._hook_url('install')} and save (or reinstall it)."
                )
            commands["lines"] = Command("telephony.externalLine.get", {})
        try:
            result = self.client.batch(commands)
        except DeliveryError as exc:
            raise type(exc)(f"Bitrix24 at {host}: {exc}") from None
        parts = []
        if app:
            assert self.tokens is not None
            loaded = self.tokens.load()
            generation = loaded[0].generation if loaded else 0
            parts.append(f"Bitrix24 at {host} answered the local application (token pair #{generation}")
            parts[-1] += (
                ", refreshed automatically)." if self.settings.client_id else "; NO client_id/client_secret"
            )
            if not self.settings.client_id:
                parts[-1] += (
                    ": the token stops working within an hour; copy them from the application's card)."
                )
        else:
            parts.append(
                f"Bitrix24 at {host} answered the incoming webhook. Note: register and finish work only "
                "for a local application (WRONG_AUTH_TYPE otherwise); set auth = 'app' to log calls."
            )
        if "users" in result.errors:
            parts.append(f"user.get failed ({result.errors['users']}): grant the 'user' permission.")
        else:
            users = result.results.get("users") or []
            inner = sum(1 for u in users if isinstance(u, dict) and u.get("UF_PHONE_INNER"))
            parts.append(f"{len(users)} active users on the first page, {inner} with an inner phone number.")
        if app:
            if "lines" in result.errors:
                parts.append(f"telephony.externalLine.get failed: {result.errors['lines']}.")
            else:
                lines = result.results.get("lines") or []
                numbers = [str(x.get("NUMBER")) for x in lines if isinstance(x, dict)]
                parts.append(f"External lines: {', '.join(numbers) if numbers else 'none registered'}.")
        parts.append(f"Employee map: {len(self.settings.users)} in the config")
        imported = self.employees.imported()
        parts[-1] += f", {len(imported)} imported." if imported is not None else ", none imported yet."
        if self.settings.unmapped == "default":
            parts.append(f"Unmapped extensions go to user {self.settings.default_user}.")
        else:
            parts.append("Calls of unmapped extensions are skipped (unmapped = skip).")
        if self.context is None or not self.context.public_url:
            parts.append("No http.public_url: click-to-call cannot be bound and records are not attached.")
        else:
            parts.append(f"Click-to-call events go to {self._hook_url('events')}.")
        blocked = self.client.blocked_methods()
        if blocked:
            parts.append("Blocked by OPERATION_TIME_LIMIT: " + ", ".join(sorted(blocked)) + ".")
        return " ".join(parts)

    def _hook_url(self, name: str) -> str:
        public = self.context.public_url if self.context is not None else None
        base = public.rstrip("/") if public else "https://<http.public_url>"
        return f"{base}/connectors/{self.name}/{name}"


def _list(refs: RefStore, entry: str, key: str) -> list[str]:
    value = refs.get(entry, key)
    return [v for v in value.split(",") if v] if value else []


def _add(refs: RefStore, entry: str, key: str, values: list[str]) -> None:
    current = _list(refs, entry, key)
    merged = current + [v for v in values if v not in current]
    if merged != current:
        refs.put(entry, key, ",".join(merged))
