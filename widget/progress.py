"""Status and outcome: where a dialled request has got to, from what its command's asynchronous result
and the legs it caused say (read through the core's command journal), and what the widget shows.

`refresh` tells "calling the managers", "connecting you", "connected" or "we could not reach you" and moves
a `calling` request on; `status` answers the widget's poll; `describe` turns a row into that answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from bridge.commands.journal import CommandJournal
from bridge.connector_api.phones import mango_digits
from widget import outcome
from widget.dialler import failed_attempt_values
from widget.sites import Site, load_site
from widget.states import CALLING, DIALLING, DONE, FAILED, QUEUED, RETRY, SCHEDULED, iso
from widget.tables import widget_requests

log = logging.getLogger("callbridge.widget")


def describe(row: Any, site: Site | None) -> dict[str, Any]:
    """A request row as the widget shows it."""
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
        "next_attempt_at": iso(row.next_attempt_at) if row.status in (SCHEDULED, RETRY) else None,
        "timezone": site.config.timezone if site else "UTC",
        "countdown": site.config.countdown if site else 30,
        "final": row.status in (DONE, FAILED),
        "failure": row.failure if row.status in (RETRY, FAILED) else None,
    }


class Progress:
    """Follows dialled requests to their outcome."""

    def __init__(
        self,
        engine: Engine,
        commands: CommandJournal,
        *,
        clock: Callable[[], float],
        outcome_timeout: float,
        attempt_timeout: float,
    ) -> None:
        self._engine = engine
        self._commands = commands
        self._clock = clock
        self.outcome_timeout = outcome_timeout
        self.attempt_timeout = attempt_timeout

    def refresh(self, conn: Connection, row: Any, now: float) -> bool:
        """Move a `calling` request on from what its command's result and legs say; True if it changed."""
        if row.status != CALLING or not row.command_id:
            return False
        caused = self._commands.caused(conn, row.command_id)
        command = self._commands.find(conn, row.command_id)
        async_result = command.async_result if command else None
        state = outcome.progress(
            [
                outcome.Leg(
                    state=leg.state,
                    from_extension=leg.from_extension,
                    from_number=leg.from_number,
                    to_extension=leg.to_extension,
                    to_number=leg.to_number,
                    connected_at=leg.connected_at,
                )
                for leg in caused.legs
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
            or (not caused.legs and async_result is None and since > self.outcome_timeout)
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
                values = failed_attempt_values(config, reason, now, permanent=permanent, result=async_result)
        elif state.phase != row.phase:
            values = {"phase": state.phase}
        if caused.entry_id and caused.entry_id != row.entry_id:
            values["entry_id"] = caused.entry_id
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

    def status(self, token: str, now: float | None = None) -> dict[str, Any] | None:
        """The request's state for the widget, after bringing a call in progress up to date."""
        now = self._clock() if now is None else now
        query = select(widget_requests).where(widget_requests.c.token == token)
        with self._engine.begin() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            if row.status == CALLING and self.refresh(conn, row, now):
                row = conn.execute(query).one()
            site = load_site(conn, row.site_key)
        return describe(row, site)


__all__ = ["Progress", "describe"]
