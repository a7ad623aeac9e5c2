"""Find missed calls that have been called back, and tell the connectors once.

Every `interval` seconds the sweeper takes the closed missed calls of the last `horizon` seconds that have
no follow-up yet and looks, for each, for the first later *answered* call with the same number: an
outgoing one (an employee called back) or an incoming one (the customer got through). For each found it
writes, in one transaction, the `missed_followups` row and a `call.called_back` CallEvent for the missed
call (its `entry_id`), so the outbox delivers it after that call's own events (the missed-call task is
created before it is completed). The row's primary key and the outbox's idempotency key make it happen
once, however many instances sweep.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, and_, func, insert, or_, select
from sqlalchemy.exc import IntegrityError

from bridge.connector_api import CallEvent, Connector
from bridge.connector_api.events import CALL_CALLED_BACK
from bridge.connector_api.phones import InvalidPhoneNumber, mango_digits, to_e164
from bridge.outbox.enqueue import enqueue
from bridge.store.engine import reader
from bridge.store.schema import calls, missed_followups
from bridge.store.write_lock import write_transaction

log = logging.getLogger(__name__)

HORIZON = 7 * 86400.0  # missed calls older than this are no longer followed up
BATCH = 200  # missed calls looked at per sweep
EMPLOYEE_CALLED = "employee_called"
CUSTOMER_CALLED = "customer_called"


@dataclass(frozen=True)
class FollowUp:
    """A missed call and the later answered call that followed it up."""

    missed: dict[str, object]
    by_entry_id: str
    by_extension: str | None
    at: float
    how: str  # employee_called | customer_called


def _forms(raw: str, region: str) -> list[str]:
    forms = {raw}
    try:
        e164 = to_e164(raw, region)
    except InvalidPhoneNumber:
        return sorted(forms)
    forms.update({e164, mango_digits(e164)})
    return sorted(forms)


class FollowUpSweeper:
    """See the module docstring."""

    def __init__(
        self,
        engine: Engine,
        connectors: Mapping[str, Connector],
        *,
        region: str = "RU",
        interval: float = 2.0,
        clock: Callable[[], float] = time.time,
        on_written: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._reader = reader(engine)
        self._connectors = connectors
        self._region = region
        self.interval = interval
        self._clock = clock
        self._on_written = on_written
        self._after: tuple[float, str] | None = None  # where the next batch starts (None: the beginning)

    def due(self, now: float) -> list[FollowUp]:
        """The missed calls of the next batch that have been followed up (read only).

        Batches walk the missed calls of the horizon in order and start over at the end, so however many
        are never called back, every one is looked at again within a few sweeps."""
        done = select(missed_followups.c.entry_id).where(missed_followups.c.entry_id == calls.c.entry_id)
        conditions = [
            calls.c.missed.is_(True),
            calls.c.closed.is_(True),
            calls.c.customer_number.is_not(None),
            calls.c.started_at >= now - HORIZON,
            ~done.exists(),
        ]
        if self._after is not None:
            started, entry_id = self._after
            conditions.append(
                or_(
                    calls.c.started_at > started,
                    and_(calls.c.started_at == started, calls.c.entry_id > entry_id),
                )
            )
        found: list[FollowUp] = []
        with self._reader.connect() as conn:
            missed = conn.execute(
                select(calls).where(*conditions).order_by(calls.c.started_at, calls.c.entry_id).limit(BATCH)
            ).all()
            last = missed[-1] if len(missed) == BATCH else None
            self._after = None if last is None else (float(last.started_at), str(last.entry_id))
            for row in missed:
                follow = self._follow_up(conn, row._asdict())
                if follow is not None:
                    found.append(follow)
        return found

    def _follow_up(self, conn: Connection, missed: dict[str, object]) -> FollowUp | None:
        since = float(missed.get("ended_at") or missed.get("started_at") or 0.0)  # type: ignore[arg-type]
        later = conn.execute(
            select(
                calls.c.entry_id,
                calls.c.direction,
                func.coalesce(calls.c.answered_by, calls.c.responsible).label("employee"),
                calls.c.answered_at,
            )
            .where(
                calls.c.customer_number.in_(_forms(str(missed["customer_number"]), self._region)),
                calls.c.entry_id != missed["entry_id"],
                calls.c.direction.in_(("outgoing", "incoming")),
                calls.c.answered_at.is_not(None),
                calls.c.answered_at >= since,
            )
            .order_by(calls.c.answered_at)
            .limit(1)
        ).first()
        if later is None:
            return None
        how = EMPLOYEE_CALLED if later.direction == "outgoing" else CUSTOMER_CALLED
        return FollowUp(missed, later.entry_id, later.employee, float(later.answered_at), how)

    def run_once(self) -> int:
        """Record and announce the follow-ups found now; returns how many."""
        now = self._clock()
        written = 0
        for follow in self.due(now):
            try:
                with write_transaction(self._engine) as conn:
                    self._write(conn, follow, now)
            except IntegrityError:  # another instance recorded it first
                continue
            written += 1
        if written:
            log.info("%d missed call(s) called back", written)
            if self._on_written is not None:
                self._on_written()
        return written

    def _write(self, conn: Connection, follow: FollowUp, now: float) -> None:
        missed = follow.missed
        entry_id = str(missed["entry_id"])
        conn.execute(
            insert(missed_followups).values(
                entry_id=entry_id,
                by_entry_id=follow.by_entry_id,
                by_extension=follow.by_extension,
                how=follow.how,
                called_back_at=follow.at,
                created_at=now,
            )
        )
        event = CallEvent(
            type=CALL_CALLED_BACK,
            entry_id=entry_id,
            key=CALL_CALLED_BACK,
            occurred_at=follow.at,
            direction=str(missed.get("direction") or "unknown"),
            customer_number=missed.get("customer_number"),  # type: ignore[arg-type]
            line_number=missed.get("line_number"),  # type: ignore[arg-type]
            extension=follow.by_extension,
            started_at=missed.get("started_at"),  # type: ignore[arg-type]
            ended_at=missed.get("ended_at"),  # type: ignore[arg-type]
            received_at=now,
            extra={
                "by_entry_id": follow.by_entry_id,
                "how": follow.how,
                "responsible": missed.get("responsible"),
            },
        )
        enqueue(conn, [event], list(self._connectors.values()), now=now)

    def run_forever(self, stop: threading.Event) -> None:
        """Sweep every `interval` seconds until `stop` is set."""
        while not stop.is_set():
            try:
                self.run_once()
            except Exception:
                log.exception("missed-call follow-up sweep failed; retrying")
            stop.wait(self.interval)


__all__ = ["CUSTOMER_CALLED", "EMPLOYEE_CALLED", "FollowUp", "FollowUpSweeper"]
