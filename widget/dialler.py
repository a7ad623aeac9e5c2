"""The dialler: claim a waiting request and send its `commands/callback_group` through the core's command
journal, then move the request on from how sending went.

Dialling starts with an atomic claim (a conditional UPDATE that only one process can win), so a request
is dialled exactly once per attempt however many workers and schedulers look at it. The command is
recorded in the claim's transaction, so its `/result/callback_group` and the legs it causes (which carry
its `command_id`) tie back to the request.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, case, select, update

from bridge.commands import journal
from bridge.commands.journal import CommandJournal
from bridge.connector_api.phones import mango_digits
from bridge.pbx.port import (
    PbxBadRequest,
    PbxBillingError,
    PbxClientFactory,
    PbxError,
    PbxRateLimited,
    PbxTransportError,
)
from widget import outcome
from widget.settings import SiteConfig
from widget.sites import load_site
from widget.states import CALLING, DIALLING, FAILED, QUEUED, RETRY, WAITING
from widget.tables import widget_requests

log = logging.getLogger("callbridge.widget")

COMMAND_PATH = "commands/callback_group"


def failed_attempt_values(
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


class Dialler:
    """`dial(request_id)`: claim, record and send the command, and move the request on."""

    def __init__(
        self,
        engine: Engine,
        client: PbxClientFactory,
        commands: CommandJournal,
        *,
        clock: Callable[[], float],
        claim_seconds: float,
    ) -> None:
        self._engine = engine
        self._client = client
        self._commands = commands
        self._clock = clock
        self.claim_seconds = claim_seconds

    def dial(self, request_id: int, now: float, *, inline: bool = False) -> bool:
        """Claim the request and send `commands/callback_group`; False when someone else has it.

        `inline` is the submitting process (claims a fresh `queued` request at once); the scheduler claims
        waiting requests whose time has come, once the schedule is open.
        """
        command_id = f"wcb-{request_id}-{secrets.token_hex(6)}"
        with self._engine.begin() as conn:
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
            self._commands.record(COMMAND_PATH, payload, conn=conn, command_id=command_id)
        log.info("widget dialling request=%s command=%s", request_id, command_id)
        self._send(request_id, command_id, group, number, line, site.config)
        return True

    def _send(
        self, request_id: int, command_id: str, group: str, number: str, line: str, config: SiteConfig
    ) -> None:
        command_status, sync_result = journal.FAILED, None
        values: dict[str, Any]
        try:
            accepted = self._client().callback_group(group, number, line, command_id=command_id)
            command_status, sync_result = journal.ACCEPTED, accepted.result
            values = {"status": CALLING, "dialled_at": self._clock(), "claimed_until": None}
        except PbxError as exc:
            sync_result = exc.code
            log.warning("widget command %s refused by Mango: %s", command_id, exc)
            now = self._clock()
            if isinstance(exc, PbxTransportError) and exc.maybe_delivered:
                # It may have reached Mango: wait for its result or its legs, as for an accepted one.
                command_status = journal.SENT
                values = {"status": CALLING, "dialled_at": now, "claimed_until": None}
            elif isinstance(exc, PbxRateLimited):
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
                permanent = isinstance(exc, PbxBadRequest | PbxBillingError) and not exc.retryable
                values = failed_attempt_values(
                    config, outcome.COMMAND_REFUSED, now, permanent=permanent, result=exc.code
                )
        except Exception:
            log.exception("widget command %s could not be sent", command_id)
            values = failed_attempt_values(config, outcome.COMMAND_REFUSED, self._clock())
        finally:
            self._commands.sent(command_id, command_status, sync_result)
        self._transition(request_id, command_id, DIALLING, values)

    def _transition(self, request_id: int, command_id: str, expected: str, values: dict[str, Any]) -> bool:
        """Apply `values` if the request is still `expected` under this command (nobody moved it on)."""
        with self._engine.begin() as conn:
            done = conn.execute(
                update(widget_requests)
                .where(
                    widget_requests.c.id == request_id,
                    widget_requests.c.command_id == command_id,
                    widget_requests.c.status == expected,
                )
                .values(updated_at=self._clock(), **values)
            ).rowcount
        return bool(done)


__all__ = ["COMMAND_PATH", "Dialler", "failed_attempt_values"]
