"""The callback service: the facade the widget's blueprint, scheduler and CLI use.

A visitor's request goes through three parts, one job each:

- `widget.intake`: form validation, form tokens, limits, the block list, the daily cap; stores the request
  with its `callback.requested` event (also to the live popups) (`submit`);
- `widget.dialler`: claims a waiting request and sends `commands/callback_group` through the core's
  command journal (`bridge.commands.journal`); failed attempts and transitions (`dial`);
- `widget.progress`: follows a dialled request from its command's result and legs (`refresh`), answers the
  widget's poll (`status`, `describe`).

The request's life (`widget_requests.status`) is in `widget.states`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, select

from bridge.commands.journal import CommandJournal
from bridge.connector_api import Connector
from bridge.pbx.port import PbxClientFactory, PbxCommands
from widget import tokens
from widget.dialler import COMMAND_PATH, Dialler
from widget.errors import WidgetError
from widget.intake import UTM_KEYS, CallbackForm, Intake
from widget.popups import GroupManagers, Rosters
from widget.progress import Progress, describe
from widget.settings import SiteConfig
from widget.sites import Site, SiteCache
from widget.states import CALLING, DIALLING, DONE, FAILED, QUEUED, RETRY, SCHEDULED, WAITING
from widget.tables import widget_requests

FORM_TOKEN_MAX_AGE = tokens.FORM_TOKEN_MAX_AGE

__all__ = [
    "CALLING",
    "COMMAND_PATH",
    "DIALLING",
    "DONE",
    "FAILED",
    "QUEUED",
    "RETRY",
    "SCHEDULED",
    "UTM_KEYS",
    "WAITING",
    "CallbackForm",
    "WidgetError",
    "WidgetService",
]


class WidgetService:
    """Everything the widget's endpoints and the scheduler do, over the store and a Mango client."""

    def __init__(
        self,
        engine: Engine,
        connectors: Mapping[str, Connector] | Sequence[Connector],
        client_factory: PbxClientFactory,
        *,
        default_region: str = "RU",
        clock: Callable[[], float] = time.time,
        claim_seconds: float = 60.0,
        outcome_timeout: float = 90.0,
        attempt_timeout: float = 900.0,
        site_cache_ttl: float = 5.0,
    ) -> None:
        self.engine = engine
        self._client_factory = client_factory
        self._client: PbxCommands | None = None
        self._client_lock = threading.Lock()
        self.default_region = default_region
        self.clock = clock
        self.claim_seconds = claim_seconds
        self.outcome_timeout = outcome_timeout
        self.attempt_timeout = attempt_timeout
        self.sites = SiteCache(engine, ttl=site_cache_ttl)
        self.managers = GroupManagers(rosters=self._group_rosters, clock=clock)
        self.journal = CommandJournal(engine, clock=clock)
        found = list(connectors.values()) if isinstance(connectors, Mapping) else list(connectors)
        self.intake = Intake(engine, found, self.managers, default_region=default_region, clock=clock)
        self.dialler = Dialler(engine, self.client, self.journal, clock=clock, claim_seconds=claim_seconds)
        self.progress = Progress(
            engine,
            self.journal,
            clock=clock,
            outcome_timeout=outcome_timeout,
            attempt_timeout=attempt_timeout,
        )

    def client(self) -> PbxCommands:
        """One Mango client per service, so its rate limiter and connection pool are shared."""
        with self._client_lock:
            if self._client is None:
                self._client = self._client_factory()
            return self._client

    def _group_rosters(self) -> Rosters:
        """Every ring group's operators from Mango, by the group's short number."""
        return {group.extension: group.operators for group in self.client().groups() if group.extension}

    # ------------------------------------------------------------------------------- intake

    def region(self, config: SiteConfig) -> str:
        return self.intake.region(config)

    def countries(self, config: SiteConfig) -> list[str]:
        """The countries the site calls: its setting, else the site's region alone."""
        return self.intake.countries(config)

    def form_token(self, site: Site, now: float | None = None) -> str:
        """A signed token of when the widget was shown, good for one accepted request (`widget.tokens`)."""
        return self.intake.form_token(site, now)

    def public_config(self, site: Site, now: float | None = None) -> dict[str, Any]:
        """What `GET /widget/config` answers: texts, look, countdown, schedule state and a form token."""
        return self.intake.public_config(site, now)

    def submit(
        self, site: Site, form: CallbackForm, ip: str | None, now: float | None = None
    ) -> dict[str, Any]:
        """Accept a callback request: checks, then store it with its `callback.requested` event and, inside
        working hours, dial at once. Raises `WidgetError` for anything refused (nothing is stored then)."""
        now = self.clock() if now is None else now
        accepted = self.intake.submit(site, form, ip, now)
        if accepted.dial_now:
            self.dial(accepted.request_id, now, inline=True)
        return self.status(accepted.token, now=self.clock()) or {}

    # --------------------------------------------------------------------------------- dial

    def dial(self, request_id: int, now: float | None = None, *, inline: bool = False) -> bool:
        """Claim the request and send `commands/callback_group`; False when someone else has it."""
        return self.dialler.dial(request_id, self.clock() if now is None else now, inline=inline)

    # ----------------------------------------------------------------------- status/outcome

    def refresh(self, conn: Connection, row: Any, now: float) -> bool:
        """Move a `calling` request on from what its command's result and legs say; True if it changed."""
        return self.progress.refresh(conn, row, now)

    def status(self, token: str, now: float | None = None) -> dict[str, Any] | None:
        """The request's state for the widget, after bringing a call in progress up to date."""
        return self.progress.status(token, now)

    @staticmethod
    def describe(row: Any, site: Site | None) -> dict[str, Any]:
        """A request row as the widget shows it."""
        return describe(row, site)

    def origins_for_token(self, token: str) -> list[str]:
        """The allowed origins of the site a request belongs to (for CORS on the status endpoint)."""
        with self.engine.connect() as conn:
            key = conn.execute(
                select(widget_requests.c.site_key).where(widget_requests.c.token == token)
            ).scalar()
        site = self.sites.get(key) if key else None
        return site.config.origins if site else []
