"""The Microsoft Dynamics 365 connector: phone calls, missed-call tasks, leads, caller cards, and the
Channel Integration Framework page for popups and click-to-call.

What happens (docs/connectors/dynamics.md has the whole picture), on ``call.ended`` of an incoming or
outgoing call with a customer number:

1. the caller: a contact found by number (a digit-tail search, then the numbers compared normalised), or
   for ``unknown_caller = "lead"`` an open lead with that number; an unknown incoming caller becomes a new
   lead or contact (``unknown_caller``);
2. one ``phonecall`` (direction, subject, number, start, end, minutes; the exact seconds and the recording
   link in the description; regarding the caller; owner = who took it; from/to parties), then closed as
   Received or Made;
3. a missed incoming call: one ``task`` to call back, for the caller's owner (else the first employee rung).

`handle` is safe to repeat: each step's progress is kept in the outbox's reference store per call, and every
record carries a primary key derived from the call, so a create repeated after a lost answer meets
"duplicate key" instead of making a second record.
"""

from __future__ import annotations

import logging
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
from bridge.connector_api.events import CALL_ENDED
from bridge.connector_api.phones import InvalidPhoneNumber, to_e164
from connectors.dynamics import employees, records
from connectors.dynamics.client import (
    DataverseAuthError,
    DataverseClient,
    DataverseError,
    DataversePermanentError,
    DataverseRateLimited,
)
from connectors.dynamics.config import DEFAULT_RATE, SETTINGS_TITLES, DynamicsConfig
from connectors.dynamics.records import Party
from connectors.dynamics.tokens import TokenRefused, TokenSource

log = logging.getLogger("callbridge.connectors.dynamics")

DUPLICATE_KEY = "0x80040237"  # "Cannot insert duplicate key" (-2147220937)
CONTACT_COLUMNS = "contactid,fullname,telephone1,mobilephone,telephone2,_ownerid_value"
LEAD_COLUMNS = "leadid,fullname,telephone1,mobilephone,telephone2,_ownerid_value"
LOOKUP_TABLE = "Microsoft.Dynamics.CRM.lookuplogicalname"  # which table a lookup value points to
OWNER_KIND = {"Prefer": f'odata.include-annotations="{LOOKUP_TABLE}"'}


class DynamicsConnector(Connector):
    """Microsoft Dynamics 365 (see the module docstring and docs/connectors/dynamics.md)."""

    manifest: ClassVar[Manifest] = Manifest(
        name="dynamics",
        title=Title(en="Microsoft Dynamics 365", ru="Microsoft Dynamics 365"),
        docs="docs/connectors/dynamics.md",
        capabilities=frozenset(
            {
                Capability.CALL_LOG,
                Capability.MISSED_TASKS,
                Capability.LEADS,
                Capability.LOOKUP,
                Capability.POPUPS,
                Capability.CLICK_TO_CALL,
                Capability.RESPONSIBLE,
                Capability.EMPLOYEE_IMPORT,
            }
        ),
        requirements=(
            "an app registration in Microsoft Entra ID with a client secret",
            "the app as an application user of the Dataverse environment, with a security role",
        ),
        settings=SETTINGS_TITLES,
    )
    config_model: ClassVar[type[BaseModel]] = DynamicsConfig
    default_rate_limit: ClassVar[RateLimit | None] = RateLimit(DEFAULT_RATE, 1)
    default_event_types: ClassVar[frozenset[str] | None] = frozenset({CALL_ENDED})

    def __init__(
        self,
        config: DynamicsConfig | dict[str, Any],
        *,
        session: requests.Session | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not isinstance(config, DynamicsConfig):
            config = DynamicsConfig.model_validate(config)
        super().__init__(config, rate_limit=RateLimit(config.requests_per_second, 1))
        self.settings: DynamicsConfig = config
        self.tokens = TokenSource(
            authority=config.authority,
            client_id=config.client_id,
            client_secret=config.client_secret.get_secret_value(),
            scope=config.scope,
            instance_discovery=config.microsoft_authority,
            timeout=config.timeout,
        )
        self.client = DataverseClient(
            config.url,
            self.tokens,
            rate=config.requests_per_second,
            timeout=config.timeout,
            session=session,
            clock=monotonic,
            sleep=sleep,
        )
        self._monotonic = monotonic
        self.employees = EmployeeResolver(self._mapping(), None)
        self._cache: dict[str, tuple[float, CallerCard | None]] = {}
        self._cache_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DynamicsConnector(url={self.settings.url!r})"

    def _mapping(self) -> EmployeeMapping:
        s = self.settings
        return EmployeeMapping(users=dict(s.users), unmapped=s.unmapped, default_user=s.default_user)

    def bind(self, context: ConnectorContext) -> None:
        super().bind(context)
        self.employees = EmployeeResolver(self._mapping(), context.state)

    def wants(self, event: CallEvent) -> bool:
        """Ended incoming and outgoing calls, while there is something to send for them."""
        s = self.settings
        sends = s.log_calls or s.missed_task or s.unknown_caller != "none"
        return sends and event.type == CALL_ENDED and event.direction in ("incoming", "outgoing")

    def blueprint(self) -> Any:
        from connectors.dynamics.cif import make_blueprint

        return make_blueprint(self)

    # ------------------------------------------------------------------------------------ events

    def handle(self, event: CallEvent, refs: RefStore) -> None:
        if not self.wants(event):
            return
        number = self.e164(event.customer_number)
        if number is None:
            log.info("dynamics: no caller number, nothing sent entry_id=%s", event.entry_id)
            return
        party = self._party(event, number, refs)
        user = self.employees.user_for(records.who_took_it(event))
        if self.settings.log_calls:
            self._phonecall(event, number, party, user, refs)
        if self.settings.missed_task and event.direction == "incoming" and not records.answered(event):
            self._task(event, number, party, refs)

    def e164(self, raw: str | None) -> str | None:
        if not raw:
            return None
        try:
            return to_e164(raw, self.settings.default_region)
        except InvalidPhoneNumber:
            return None

    def _party(self, event: CallEvent, number: str, refs: RefStore) -> Party | None:
        """The caller's record: remembered for the call, found by number, or created when unknown."""
        stored = refs.get(event.entry_id, "party")
        if stored:
            table, _, rest = stored.partition(":")
            if table == "none":
                return None
            record_id, _, owner = rest.partition(":")
            return Party(table, record_id, owner=owner or None)
        party = self.find("contact", number)
        mode = self.settings.unknown_caller
        if party is None and mode == "lead":
            party = self.find("lead", number)
        if party is None and mode != "none" and event.direction == "incoming":
            party = self._create_party(mode, event, number)
        refs.put(
            event.entry_id, "party", f"{party.table}:{party.id}:{party.owner or ''}" if party else "none"
        )
        return party

    def _create_party(self, table: str, event: CallEvent, number: str) -> Party:
        owner = self.employees.user_for(records.who_took_it(event))
        body = records.new_party_body(table, event, number, owner)
        key = "leadid" if table == "lead" else "contactid"
        self._create(f"/{table}s", body)
        log.info("dynamics: unknown caller became a %s entry_id=%s", table, event.entry_id)
        return Party(table, body[key], owner=owner)

    def _create(self, path: str, body: dict[str, Any]) -> bool:
        """Create a record with its own key; False when it already exists (an earlier answer was lost)."""
        try:
            self.client.request("POST", path, body=body)
        except DataversePermanentError as exc:
            if exc.code == DUPLICATE_KEY:
                return False
            raise
        return True

    def _phonecall(
        self, event: CallEvent, number: str, party: Party | None, user: str | None, refs: RefStore
    ) -> None:
        entry = event.entry_id
        stage = refs.get(entry, "phonecall")
        if stage == "closed":
            return
        record_id = records.record_id(entry, "phonecall")
        if stage is None:
            link = None
            if self.context is not None and self.context.recording_url and event.recording_ids:
                link = self.context.recording_url(event.recording_ids[0]) if records.answered(event) else None
            body = records.phonecall_body(event, number=number, party=party, user=user, link=link)
            created = self._create("/phonecalls", body)
            # Found after a lost answer: it may have been closed as well, so the close checks first.
            stage = "created" if created else "closing"
            refs.put(entry, "phonecall", stage)
            log.info(
                "dynamics: phonecall %s entry_id=%s direction=%s regarding=%s owner=%s",
                "created" if created else "found after a lost answer",
                entry,
                event.direction,
                party.table if party else "-",
                "yes" if user else "no",
            )
        if stage == "closing":  # the close's answer was lost: it may have been taken
            state = self.client.get(f"/phonecalls({record_id})", {"$select": "statecode"})
            if isinstance(state, dict) and state.get("statecode") == records.COMPLETED:
                refs.put(entry, "phonecall", "closed")
                return
        refs.put(entry, "phonecall", "closing")
        self.client.request("PATCH", f"/phonecalls({record_id})", body=records.close_body(event))
        refs.put(entry, "phonecall", "closed")

    def _task(self, event: CallEvent, number: str, party: Party | None, refs: RefStore) -> None:
        if refs.get(event.entry_id, "task"):
            return
        rung = event.extensions[0] if event.extensions else records.who_took_it(event)
        owner = (party.owner if party else None) or self.employees.user_for(rung)
        body = records.task_body(
            event, number=number, party=party, owner=owner, due_minutes=self.settings.task_due_minutes
        )
        self._create("/tasks", body)
        refs.put(event.entry_id, "task", "created")
        log.info("dynamics: missed-call task entry_id=%s owner=%s", event.entry_id, "yes" if owner else "no")

    # ------------------------------------------------------------------------------------ lookup

    def find(self, table: str, number: str, *, max_wait: float | None = None) -> Party | None:
        """A contact or an open lead whose phone is `number` (a digit-tail search, compared in full)."""
        wanted = records.phone_filter(number, self.settings.default_region)
        if wanted is None:
            return None
        if table == "lead":
            wanted = f"({wanted}) and statecode eq 0"
        params = {
            "$select": CONTACT_COLUMNS if table == "contact" else LEAD_COLUMNS,
            "$filter": wanted,
            "$top": "50",
        }
        found = self.client.get(f"/{table}s", params, headers=OWNER_KIND, max_wait=max_wait)
        rows = found.get("value") if isinstance(found, dict) else None
        row = records.best_match(rows, number, self.settings.default_region)
        if row is None:
            return None
        # A record may be owned by a team: only a user can own the phone call's task.
        kind = row.get(f"_ownerid_value@{LOOKUP_TABLE}", "systemuser")
        owner = row.get("_ownerid_value") if kind == "systemuser" else None
        return Party(
            table, str(row[f"{table}id"]), name=row.get("fullname"), owner=str(owner) if owner else None
        )

    def lookup(self, phone: str) -> CallerCard | None:
        number = self.e164(phone)
        if number is None:
            return None
        now = self._monotonic()
        with self._cache_lock:
            hit = self._cache.get(number)
        if hit is not None and now - hit[0] < self.settings.lookup_cache_seconds:
            return hit[1]
        contact = self.find("contact", number, max_wait=self.settings.lookup_max_wait_seconds)
        card = self._card(contact) if contact is not None else None
        with self._cache_lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[number] = (self._monotonic(), card)
        return card

    def _card(self, contact: Party) -> CallerCard:
        url = f"{self.settings.url}/main.aspx?pagetype=entityrecord&etn=contact&id={contact.id}"
        responsible = None
        if contact.owner:
            extension = self.employees.extension_for(contact.owner)
            responsible = Employee(extension=extension, crm_user_id=contact.owner) if extension else None
        return CallerCard(
            source=self.name,
            name=contact.name,
            links=(("Dynamics 365", url),),
            responsible=responsible,
            details={"contactid": contact.id},
        )

    def responsible_for(self, phone: str) -> Employee | None:
        card = self.lookup(phone)
        return card.responsible if card is not None else None

    def mapped_users(self) -> dict[str, str]:
        return self.employees.mapped()

    def systemusers(self) -> list[dict[str, Any]]:
        """Every enabled Dynamics user (``GET /systemusers``, following ``@odata.nextLink``)."""
        params = {"$select": employees.USER_COLUMNS, "$filter": "isdisabled eq false"}
        found: list[dict[str, Any]] = []
        page: Any = self.client.get("/systemusers", params, headers={"Prefer": "odata.maxpagesize=500"})
        for _ in range(200):
            rows = page.get("value") if isinstance(page, dict) else None
            found += [row for row in rows or [] if isinstance(row, dict)]
            link = page.get("@odata.nextLink") if isinstance(page, dict) else None
            if not link:
                break
            page = self.client.get_link(str(link), headers={"Prefer": "odata.maxpagesize=500"})
        return found

    def import_employees(self, pbx_users: PbxUsers, *, save: bool = True) -> employees.ImportedUsers:
        """Match Mango's employees to Dynamics users (Main Phone = extension, else the e-mail) and store
        the map; the settings' ``users`` table still wins for the extensions it names."""
        result = employees.match(pbx_users(), self.systemusers())
        if save:
            self.employees.save_imported(result.mapped)
        return result

    # ------------------------------------------------------------------------------------ check

    def check(self) -> str:
        """Get a token and ask Dataverse who the application user is (``WhoAmI``)."""
        host = self.settings.host
        try:
            who = self.client.get("/WhoAmI")
        except TokenRefused as exc:
            raise TokenRefused(
                f"Microsoft Entra ID refused the app registration ({exc}): check tenant_id, client_id and "
                "client_secret (Certificates & secrets: the secret's Value, not its id)."
            ) from None
        except DataverseAuthError as exc:
            raise type(exc)(
                f"Dataverse at {host} refused the app: add it as an application user of the environment "
                f"(Power Platform admin center -> Environments -> Settings -> Users + permissions -> "
                f"Application users) with a security role. Dataverse said: {exc}"
            ) from None
        except DataverseRateLimited:
            raise
        except (DataverseError, DeliveryError) as exc:
            raise type(exc)(f"Could not use Dataverse at {host}: {exc}") from None
        user_id = who.get("UserId") if isinstance(who, dict) else None
        parts = [f"Connected to Dynamics 365 at {host} as application user {user_id}."]
        parts.append(f"{len(self.employees.mapped())} extension(s) mapped to Dynamics users.")
        parts.append(f"Unknown callers become: {self.settings.unknown_caller}.")
        if self.context is None or not self.context.public_url:
            parts.append(
                "No http.public_url: phone calls carry no recording link and the channel page has no address."
            )
        else:
            parts.append(f"Channel page for Dynamics: {self.context.public_url}/connectors/dynamics/cif")
        return " ".join(parts)

    def close(self) -> None:
        self.client.session.close()
