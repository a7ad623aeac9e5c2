"""The amoCRM (Kommo) connector: popups, call log, unsorted leads, missed-call tasks, caller lookup, and
click-to-call from its widget (widget_hooks.py).

What happens per CallEvent (docs/connectors/amocrm.md has the full picture):

* ``call.ringing`` of an incoming call: ``POST /api/v2/events`` ``phone_call`` to the amoCRM user mapped
  to the ringing extension (never to everyone: an event without ``users`` would notify every user);
* ``call.ended``: the caller is looked up (``GET /api/v4/contacts?query=``); a known number gets
  ``POST /api/v4/calls`` (direction, duration, source, status, responsible, recording link); an unknown
  incoming caller gets ``POST /api/v4/leads/unsorted/sip``;
* ``call.missed``: ``POST /api/v4/tasks``, a follow-up call for the responsible employee's user, on the
  unsorted lead or the contact.

`handle` is safe to repeat: everything created is remembered in the outbox's reference store per call
(``popup:<user>``, ``contact``, ``call``, ``unsorted``, ``lead``, ``task``) and checked first.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import click
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
    RetryableDeliveryError,
    Title,
)
from bridge.connector_api.employees import EMPLOYEE_SETTINGS, EmployeeResolver
from bridge.connector_api.events import CALL_CALLED_BACK, CALL_ENDED, CALL_MISSED, CALL_RINGING
from bridge.connector_api.phones import InvalidPhoneNumber, to_e164
from connectors.amocrm import handler
from connectors.amocrm.client import (
    AmoApiError,
    AmoAuthError,
    AmoClient,
    AmoPermanentError,
    AmoRateLimited,
    StaticToken,
)
from connectors.amocrm.config import DEFAULT_RATE, SETTINGS_TITLES, AmoCrmConfig
from connectors.amocrm.lookup import Match, best_match, contacts_of, lead_ids, query_terms
from connectors.amocrm.mapping import MappingSuggestion, suggest_mapping
from connectors.amocrm.oauth import Grant, OAuthTokens, TokenRecord, fingerprint
from connectors.amocrm.widget_package import package_command

log = logging.getLogger("callbridge.connectors.amocrm")

CALLBACK_PATH = "/connectors/amocrm/oauth/callback"
NONE_MARK = "none"
_MATCHED_ON = ("E.164", "national number", "last 10 digits")


class AmoCrmConnector(Connector):
    """amoCRM / Kommo over API v4 (see the module docstring and docs/connectors/amocrm.md)."""

    manifest: ClassVar[Manifest] = Manifest(
        name="amocrm",
        title=Title(en="amoCRM / Kommo", ru="amoCRM / Kommo"),
        docs="docs/connectors/amocrm.md",
        capabilities=frozenset(
            {
                Capability.LOOKUP,
                Capability.CALL_LOG,
                Capability.MISSED_TASKS,
                Capability.POPUPS,
                Capability.LEADS,
                Capability.EMPLOYEE_IMPORT,
                Capability.RESPONSIBLE,
                Capability.CLICK_TO_CALL,
            }
        ),
        requirements=(
            "an amoCRM account",
            "a long-lived token or a private integration (OAuth)",
            "for click-to-call: the integration's secret key and its widget uploaded",
        ),
        settings={**EMPLOYEE_SETTINGS, **SETTINGS_TITLES},
    )
    config_model: ClassVar[type[BaseModel]] = AmoCrmConfig
    default_rate_limit: ClassVar[RateLimit | None] = RateLimit(DEFAULT_RATE, 1)
    default_event_types: ClassVar[frozenset[str] | None] = frozenset({CALL_RINGING, CALL_ENDED, CALL_MISSED})

    @classmethod
    def cli_commands(cls) -> list[click.Command]:
        """`callbridge connectors amocrm-widget --out FILE.zip` (the widget to upload to amoCRM)."""
        return [package_command]

    def __init__(
        self,
        config: AmoCrmConfig | dict[str, Any],
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(config, AmoCrmConfig):
            config = AmoCrmConfig.model_validate(config)
        types = set()
        if config.popup:
            types.add(CALL_RINGING)
        if config.log_calls or config.unsorted_for_unknown:
            types.add(CALL_ENDED)
        if config.missed_task:
            types.update((CALL_MISSED, CALL_CALLED_BACK))
        # Per-config limits and filters live on the instance (the dispatcher reads the instance).
        super().__init__(
            config, rate_limit=RateLimit(config.requests_per_second, 1), event_types=frozenset(types)
        )
        self.settings: AmoCrmConfig = config
        self._clock = clock
        self.client = AmoClient(
            config.account_url,
            rate=config.requests_per_second,
            timeout=config.timeout,
            session=session,
            clock=monotonic,
            sleep=sleep,
        )
        self.tokens: OAuthTokens | None = None
        if config.oauth:
            assert config.client_id and config.client_secret
            self.tokens = OAuthTokens(
                client_id=config.client_id,
                client_secret=config.client_secret.get_secret_value(),
                post_token=self.client.post_token,
                state=lambda: self.context.state if self.context is not None else None,
                redirect_uri=self.redirect_uri,
                seed=_seed(config),
                clock=clock,
                sleep=sleep,
            )
            self.client.auth = self.tokens
        else:
            assert config.long_lived_token is not None
            self.client.auth = StaticToken(config.long_lived_token.get_secret_value())
        self.employees = EmployeeResolver(config, None)
        self._cache: dict[str, tuple[float, Match | None]] = {}
        self._cache_lock = threading.Lock()
        self._monotonic = monotonic

    def __repr__(self) -> str:
        mode = "oauth" if self.settings.oauth else "long-lived token"
        return f"AmoCrmConnector(account={self.settings.host!r}, auth={mode!r})"

    def bind(self, context: ConnectorContext) -> None:
        super().bind(context)
        self.employees = EmployeeResolver(self.settings, context.state)

    def wants(self, event: CallEvent) -> bool:
        """Only calls with a customer: internal calls never reach amoCRM; popups for incoming calls only."""
        if event.type not in (self.event_types or ()):
            return False
        if event.type == CALL_RINGING:
            return event.direction == "incoming"
        return event.direction in handler.DIRECTIONS

    # ------------------------------------------------------------------------------------ events

    def handle(self, event: CallEvent, refs: RefStore) -> None:
        if not self.wants(event):
            return
        phone = self.phone(event.customer_number)
        if phone is None:
            log.info(
                "amocrm: no dialable customer number, nothing to send entry_id=%s type=%s",
                event.entry_id,
                event.type,
            )
            return
        if event.type == CALL_RINGING:
            self._popup(event, refs, phone)
        elif event.type == CALL_ENDED:
            self._log_call(event, refs, phone)
        elif event.type == CALL_MISSED:
            self._missed_task(event, refs, phone)
        elif event.type == CALL_CALLED_BACK:
            self._complete_task(event, refs)

    def _popup(self, event: CallEvent, refs: RefStore, phone: str) -> None:
        max_age = self.settings.popup_max_age_seconds
        # callbridge's own clock on both sides: Mango's timestamp may be minutes off the host's clock
        rang_at = event.received_at if event.received_at is not None else event.occurred_at
        age = self._clock() - rang_at
        if max_age and age > max_age:
            log.info("amocrm: popup dropped, the call rang %.0f s ago entry_id=%s", age, event.entry_id)
            return
        user = self.employees.user_for(event.extension)
        if user is None:
            log.info(
                "amocrm: no amoCRM user for extension %s (unmapped = skip), no popup entry_id=%s",
                event.extension,
                event.entry_id,
            )
            return
        key = f"popup:{user}"
        if refs.get(event.entry_id, key):
            return
        self.client.post("/api/v2/events", handler.popup_body(phone, [user]))
        refs.put(event.entry_id, key, "sent")
        log.info("amocrm: popup sent entry_id=%s extension=%s user=%s", event.entry_id, event.extension, user)

    def _log_call(self, event: CallEvent, refs: RefStore, phone: str) -> None:
        entry = event.entry_id
        if refs.get(entry, "call") or refs.get(entry, "unsorted"):
            return
        responsible = event.extra.get("responsible") or event.extension
        user = self.employees.user_for(responsible)
        link = handler.recording_link(event, self.context.recording_url if self.context else None)
        contact_id = self._contact_for(event, refs, phone)
        if contact_id is not None and self.settings.log_calls:
            body = handler.call_body(
                event,
                phone=phone,
                source=self.settings.source,
                user_id=user,
                link=link,
                language=self.settings.language,
            )
            answer = self.client.post("/api/v4/calls", body)
            calls = handler.embedded(answer, "calls")
            if calls:
                refs.put(entry, "call", str(calls[0].get("id", "added")))
                log.info(
                    "amocrm: call logged entry_id=%s contact=%s call=%s status=%s user=%s",
                    entry,
                    contact_id,
                    calls[0].get("id"),
                    body[0]["call_status"],
                    user,
                )
                return
            errors = answer.get("errors") if isinstance(answer, dict) else None
            log.warning(
                "amocrm: amoCRM did not add the call (no entity with that number on its side) "
                "entry_id=%s errors=%s",
                entry,
                json.dumps(errors, ensure_ascii=False)[:300] if errors else "none",
            )
        elif contact_id is not None:
            return  # a known caller, and log_calls is off
        if event.direction != "incoming" or not self.settings.unsorted_for_unknown:
            if contact_id is None:
                log.info("amocrm: unknown number, outgoing call not logged entry_id=%s", entry)
            return
        body = handler.unsorted_body(
            event,
            phone=phone,
            source_name=self.settings.source,
            source_uid=self.settings.source_uid,
            service_code=self.settings.service_code,
            user_id=user,
            link=link,
            pipeline_id=self.settings.pipeline_id,
            language=self.settings.language,
        )
        answer = self.client.post("/api/v4/leads/unsorted/sip", body)
        items = handler.embedded(answer, "unsorted")
        if not items or not items[0].get("uid"):
            raise AmoPermanentError(
                "amoCRM POST /api/v4/leads/unsorted/sip: the answer has no unsorted item "
                f"(errors: {json.dumps(answer.get('errors') if isinstance(answer, dict) else None)[:200]})"
            )
        uid = str(items[0]["uid"])
        refs.put(entry, "unsorted", uid)
        leads = handler.embedded(items[0], "leads")
        if leads and str(leads[0].get("id", "")).isdigit():
            refs.put(entry, "lead", str(leads[0]["id"]))
        log.info("amocrm: unsorted lead created entry_id=%s uid=%s user=%s", entry, uid, user)

    def _missed_task(self, event: CallEvent, refs: RefStore, phone: str) -> None:
        entry = event.entry_id
        if refs.get(entry, "task"):
            return
        user = self.employees.user_for(event.extension)
        if user is None:
            log.info(
                "amocrm: no amoCRM user for the responsible extension %s, no task entry_id=%s",
                event.extension,
                entry,
            )
            return
        entity: tuple[str, int] | None = None
        lead = refs.get(entry, "lead")
        if lead and lead.isdigit():
            entity = ("leads", int(lead))
        else:
            contact_id = self._contact_for(event, refs, phone)
            if contact_id is not None:
                entity = ("contacts", contact_id)
        body = handler.task_body(
            event,
            phone=phone,
            user_id=user,
            entity=entity,
            text=self.settings.task_text,
            due_minutes=self.settings.task_due_minutes,
            language=self.settings.language,
        )
        answer = self.client.post("/api/v4/tasks", body)
        tasks = handler.embedded(answer, "tasks")
        refs.put(entry, "task", str(tasks[0].get("id", "added")) if tasks else "added")
        log.info(
            "amocrm: missed-call task created entry_id=%s user=%s entity=%s",
            entry,
            user,
            f"{entity[0]}/{entity[1]}" if entity else "none",
        )

    def _complete_task(self, event: CallEvent, refs: RefStore) -> None:
        """The missed call was followed up: its task is completed with a result (`PATCH /api/v4/tasks`)."""
        entry = event.entry_id
        task = refs.get(entry, "task")
        if not task or not task.isdigit() or refs.get(entry, "task_completed"):
            return  # no task of ours, or already completed
        body = [handler.task_completion(int(task), event, language=self.settings.language)]
        self.client.request("PATCH", "/api/v4/tasks", json=body)
        refs.put(entry, "task_completed", "1")
        log.info("amocrm: missed-call task %s completed entry_id=%s by=%s", task, entry, event.extension)

    def _contact_for(self, event: CallEvent, refs: RefStore, phone: str) -> int | None:
        stored = refs.get(event.entry_id, "contact")
        if stored == NONE_MARK:
            return None
        if stored and stored.isdigit():
            return int(stored)
        match = self.find_contact(phone)
        refs.put(event.entry_id, "contact", str(match.contact_id) if match else NONE_MARK)
        return match.contact_id if match else None

    # ------------------------------------------------------------------------------------ lookup

    def phone(self, raw: str | None) -> str | None:
        """The customer's number in E.164, or None when it is hidden or not a phone number."""
        if not raw:
            return None
        try:
            return to_e164(raw, self.settings.default_region)
        except InvalidPhoneNumber:
            return None

    def find_contact(self, phone: str, *, max_wait: float | None = None) -> Match | None:
        """The contact with this number (see lookup.py). A found contact is reused for
        ``lookup_cache_seconds`` (the popup's lookup then serves the call log), a miss only for
        ``lookup_miss_cache_seconds`` (the manager may create the contact during the call)."""
        now = self._monotonic()
        with self._cache_lock:
            hit = self._cache.get(phone)
        if hit is not None:
            ttl = (
                self.settings.lookup_cache_seconds
                if hit[1] is not None
                else self.settings.lookup_miss_cache_seconds
            )
            if now - hit[0] < ttl:
                return hit[1]
        match: Match | None = None
        for term in query_terms(phone, self.settings.default_region):
            body = self.client.get("/api/v4/contacts", {"query": term, "with": "leads"}, max_wait=max_wait)
            match = best_match(contacts_of(body), phone, self.settings.default_region)
            if match is not None:
                break
        with self._cache_lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[phone] = (self._monotonic(), match)
        return match

    def lookup(self, phone: str) -> CallerCard | None:
        e164 = self.phone(phone)
        if e164 is None:
            return None
        match = self.find_contact(e164, max_wait=self.settings.lookup_max_wait_seconds)
        if match is None:
            return None
        contact = match.contact
        responsible = None
        user = contact.get("responsible_user_id")
        if user not in (None, 0, ""):
            responsible = Employee(extension=self.employees.extension_for(str(user)), crm_user_id=str(user))
        return CallerCard(
            source=self.name,
            name=contact.get("name") or None,
            links=(("amoCRM", f"{self.settings.account_url}/contacts/detail/{match.contact_id}"),),
            responsible=responsible,
            details={
                "contact_id": match.contact_id,
                "lead_ids": lead_ids(contact),
                "matched_on": _MATCHED_ON[match.rank],
            },
        )

    def responsible_for(self, phone: str) -> Employee | None:
        card = self.lookup(phone)
        return card.responsible if card is not None else None

    # ------------------------------------------------------------------------------------ setup

    def redirect_uri(self) -> str | None:
        if self.settings.redirect_uri:
            return self.settings.redirect_uri
        public = self.context.public_url if self.context is not None else None
        return f"{public.rstrip('/')}{CALLBACK_PATH}" if public else None

    def exchange_code(self, code: str) -> TokenRecord:
        """OAuth: exchange an authorization code for tokens and store them (the callback uses this)."""
        if self.tokens is None:
            raise AmoPermanentError("amoCRM: this connector uses a long-lived token, not OAuth")
        return self.tokens.exchange_code(code)

    def blueprint(self) -> Any | None:
        from connectors.amocrm.hooks import make_blueprint

        return make_blueprint(self)

    def users(self) -> list[dict[str, Any]]:
        """Every amoCRM user (``GET /api/v4/users``, 250 a page)."""
        users: list[dict[str, Any]] = []
        for page in range(1, 41):
            body = self.client.get("/api/v4/users", {"page": page, "limit": 250})
            batch = handler.embedded(body, "users")
            users.extend(batch)
            links = body.get("_links") if isinstance(body, dict) else None
            if not batch or not (isinstance(links, dict) and links.get("next")):
                break
        return users

    def mapped_users(self) -> dict[str, str]:
        return self.employees.mapped()

    def import_employees(
        self, mango_users: Iterable[Any] | PbxUsers, *, save: bool = True
    ) -> MappingSuggestion:
        """Match Mango employees (``config/users/request``, or a `PbxUsers` fetcher) to amoCRM users by
        e-mail; store the map.

        The stored map is used for extensions that ``users`` in the config does not name.
        """
        if callable(mango_users):
            mango_users = mango_users()
        suggestion = suggest_mapping(self.users(), mango_users)
        if save:
            self.employees.save_imported(suggestion.mapped)
        return suggestion

    def check(self) -> str:
        """Prove the account address and credentials work; say in plain words what is set up."""
        host = self.settings.host
        try:
            account = self.client.get("/api/v4/account")
            users = self.users()
        except DeliveryError as exc:
            raise type(exc)(self._explain(exc)) from None
        name = account.get("name") if isinstance(account, dict) else None
        known = {str(u.get("id")) for u in users}
        explicit = dict(self.settings.users)
        imported = self.employees.imported() if self.context is not None else {}
        mapped = {**imported, **explicit}
        missing = sorted(ext for ext, uid in mapped.items() if uid not in known)
        parts = [f"Connected to amoCRM account {name!r} ({host}) {self._auth_words()}."]
        parts.append(f"{len(users)} amoCRM user(s); {len(mapped)} extension(s) mapped")
        if imported:
            parts[-1] += f" ({len(explicit)} in the config, {len(imported)} imported by e-mail)"
        parts[-1] += "."
        if missing:
            parts.append(
                "These extensions point at user ids amoCRM does not have: " + ", ".join(missing) + "."
            )
        if self.settings.unmapped == "default":
            parts.append(f"Unmapped extensions go to user {self.settings.default_user}.")
        else:
            parts.append("Unmapped extensions get no popup and no task (unmapped = skip).")
        if self.context is None or not self.context.public_url:
            parts.append("No http.public_url: calls are logged without a recording link.")
        if self.settings.widget:
            parts.append("The widget's click-to-call is on (the integration's secret key is set).")
        return " ".join(parts)

    def _auth_words(self) -> str:
        if self.tokens is None:
            expires = _jwt_expiry(
                self.settings.long_lived_token.get_secret_value() if self.settings.long_lived_token else ""
            )
            if expires is None:
                return "with a long-lived token"
            days = (expires - self._clock()) / 86400
            when = time.strftime("%Y-%m-%d", time.gmtime(expires))
            warning = " (renew it soon)" if days < 14 else ""
            return f"with a long-lived token valid until {when}{warning}"
        record = self.tokens.status()
        if record is None or not record.access_token:
            return "via OAuth"
        return f"via OAuth (token pair #{record.generation}, refreshed automatically)"

    def _explain(self, exc: DeliveryError) -> str:
        host = self.settings.host
        status = getattr(exc, "status", None)
        if isinstance(exc, AmoAuthError) and status is None:
            return str(exc)
        if status == 401:
            if self.tokens is None:
                return (
                    f"amoCRM at {host} refused the long-lived token (HTTP 401): it has expired or was "
                    "revoked. Generate a new one in amoCRM: Settings -> Integrations -> your private "
                    "integration -> Keys and scopes -> Generate long-lived token."
                )
            return (
                f"amoCRM at {host} refused the OAuth token (HTTP 401) even after a refresh: authorise the "
                "integration again (<public_url>/connectors/amocrm/oauth/start)."
            )
        if status == 403:
            return (
                f"amoCRM at {host} answered 403 Forbidden: the token's user lacks rights (the connector "
                "needs an administrator's token) or the API is blocked for this IP address."
            )
        if status == 404:
            return f"amoCRM answered 404 at {host}: check account_url (the account's own address)."
        if isinstance(exc, AmoRateLimited):
            return f"amoCRM at {host} is rate-limiting this address (HTTP 429); try again in a minute."
        if isinstance(exc, AmoApiError) and status is not None and status >= 500:
            return f"amoCRM at {host} is failing (HTTP {status}); try again later."
        if isinstance(exc, RetryableDeliveryError) and status is None:
            return f"Could not reach amoCRM at {host}: {str(exc).split(': ', 1)[-1]}."
        return f"amoCRM at {host} rejected the check: {exc}"


def _seed(config: AmoCrmConfig) -> Grant | None:
    if config.authorization_code is not None:
        code = config.authorization_code.get_secret_value()
        return Grant("authorization_code", code, fingerprint("code", code), "configured authorization code")
    if config.refresh_token is not None:
        token = config.refresh_token.get_secret_value()
        return Grant("refresh_token", token, fingerprint("refresh", token), "configured refresh token")
    return None


def _jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (a long-lived token is one), read without verifying: for messages only."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
        return float(claims["exp"])
    except (ValueError, KeyError, TypeError):
        return None
