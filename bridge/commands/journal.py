"""The command journal: the one place the life of a PBX command is written (the `commands` table).

    record --> sending --sent()--> accepted | sent (may have reached Mango) | failed (refused, not sent)
    accepted | sent --result() 1000--> done
    accepted | sent --result() other--> failed
    accepted | sent --no result for `timeout` seconds, time_out()--> timed_out

A command is recorded before it is sent, so its asynchronous result (Mango's `/result/...` webhook, folded
by the event processor) and the calls it causes (legs carrying its `command_id`) tie back to it. The first
asynchronous result is kept: a duplicate is ignored, and so is a result for a command nobody recorded. A
result that comes after the command timed out still records what Mango says.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Select, case, insert, select, update

from bridge.store.engine import reader
from bridge.store.schema import calls, commands, legs
from bridge.store.write_lock import write_transaction

log = logging.getLogger(__name__)

# Statuses of a `commands` row.
SENDING = "sending"  # recorded, not answered yet
ACCEPTED = "accepted"  # Mango accepted it (synchronous result 1000)
SENT = "sent"  # the request went out but its answer was lost: it may have reached Mango
FAILED = "failed"  # refused (synchronously, or by its asynchronous result)
DONE = "done"  # the asynchronous result said 1000
TIMED_OUT = "timed_out"  # accepted or sent, and no asynchronous result came in time
AWAITING_RESULT = (ACCEPTED, SENT)
SENT_STATUSES = (ACCEPTED, SENT, FAILED)  # what `sent()` may record

SUCCESS = 1000  # Mango's result code for success
DEFAULT_TIMEOUT = 120.0  # seconds an accepted command waits for its asynchronous result
_SWEEP_BATCH = 500


@dataclass(frozen=True)
class CommandRecord:
    """A `commands` row."""

    command_id: str
    path: str
    payload: str
    status: str
    sync_result: int | None
    async_result: int | None
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class CausedLeg:
    """A leg that carries the command's id."""

    entry_id: str
    state: str
    from_extension: str | None
    from_number: str | None
    to_extension: str | None
    to_number: str | None
    connected_at: float | None


@dataclass(frozen=True)
class Caused:
    """What a command caused so far: its legs, and the call they belong to (the first leg's)."""

    legs: tuple[CausedLeg, ...]
    entry_id: str | None
    call_closed: bool


def _overdue(updated_before: float) -> tuple[ColumnElement[bool], ...]:
    return (
        commands.c.status.in_(AWAITING_RESULT),
        commands.c.async_result.is_(None),
        commands.c.updated_at <= updated_before,
    )


def overdue(updated_before: float) -> Select[tuple[str]]:
    """The ids of commands still waiting for their result, last changed before `updated_before` (one
    sweep's batch; read by `ix_commands_waiting`)."""
    return select(commands.c.command_id).where(*_overdue(updated_before)).limit(_SWEEP_BATCH)


def new_command_id(prefix: str = "cmd") -> str:
    """A fresh command id (Mango echoes it in the result and on the legs)."""
    return f"{prefix}-{uuid.uuid4().hex}"


class CommandJournal:
    """Records PBX commands and their results in the `commands` table; see the module docstring."""

    def __init__(
        self, engine: Engine, *, clock: Callable[[], float] = time.time, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._engine = engine
        self._clock = clock
        self.timeout = timeout

    def record(
        self,
        path: str,
        payload: Mapping[str, Any],
        *,
        conn: Connection | None = None,
        command_id: str | None = None,
    ) -> str:
        """Record a command about to be sent (status `sending`) and return its id.

        With `conn`, inside the caller's transaction (so a claim and its command commit together);
        otherwise in a transaction of its own.
        """
        command_id = command_id or new_command_id()
        now = self._clock()
        statement = insert(commands).values(
            command_id=command_id,
            path=path,
            payload=json.dumps(dict(payload)),
            status=SENDING,
            created_at=now,
            updated_at=now,
        )
        if conn is not None:
            conn.execute(statement)
        else:
            with self._engine.begin() as own:
                own.execute(statement)
        return command_id

    def sent(self, command_id: str, status: str, sync_result: int | None) -> None:
        """Store how sending went: `ACCEPTED`, `SENT` (no answer: it may have reached Mango) or `FAILED`,
        with Mango's synchronous result code. An asynchronous result that already came keeps its status."""
        if status not in SENT_STATUSES:
            raise ValueError(f"not a status after sending: {status!r}")
        with self._engine.begin() as conn:
            conn.execute(
                update(commands)
                .where(commands.c.command_id == command_id)
                .values(
                    status=case((commands.c.status == SENDING, status), else_=commands.c.status),
                    sync_result=sync_result,
                    updated_at=self._clock(),
                )
            )

    def result(self, conn: Connection, command_id: str, code: int | None) -> bool:
        """Store the asynchronous result, in the caller's transaction: `DONE` for 1000, else `FAILED`.

        False (and nothing written) for an unknown command or one that already has its result."""
        changed = conn.execute(
            update(commands)
            .where(commands.c.command_id == command_id, commands.c.async_result.is_(None))
            .values(async_result=code, status=DONE if code == SUCCESS else FAILED, updated_at=self._clock())
        ).rowcount
        if not changed:
            log.debug("result %s for command %s ignored (unknown, or already has one)", code, command_id)
        return bool(changed)

    def time_out(self) -> int:
        """Mark `TIMED_OUT` the commands accepted or sent more than `timeout` seconds ago whose asynchronous
        result has not come; returns how many. Candidates are read outside the write lock."""
        now = self._clock()
        waiting = _overdue(now - self.timeout)
        with reader(self._engine).connect() as conn:
            ids = conn.execute(overdue(now - self.timeout)).scalars().all()
        if not ids:
            return 0
        with write_transaction(self._engine) as conn:
            changed = conn.execute(
                update(commands)
                .where(commands.c.command_id.in_(ids), *waiting)
                .values(status=TIMED_OUT, updated_at=now)
            ).rowcount
        if changed:
            log.info("%d command(s) timed out waiting for their result", changed)
        return int(changed)

    def find(self, conn: Connection, command_id: str) -> CommandRecord | None:
        """The command's row, or None."""
        row = conn.execute(select(commands).where(commands.c.command_id == command_id)).first()
        return None if row is None else CommandRecord(**row._asdict())

    def caused(self, conn: Connection, command_id: str) -> Caused:
        """The legs that carry the command's id, and whether their call has closed."""
        rows = conn.execute(
            select(
                legs.c.entry_id,
                legs.c.state,
                legs.c.from_extension,
                legs.c.from_number,
                legs.c.to_extension,
                legs.c.to_number,
                legs.c.connected_at,
            ).where(legs.c.command_id == command_id)
        ).all()
        found = tuple(CausedLeg(**row._asdict()) for row in rows)
        entry_id = found[0].entry_id if found else None
        closed = False
        if entry_id is not None:
            closed = bool(conn.execute(select(calls.c.closed).where(calls.c.entry_id == entry_id)).scalar())
        return Caused(legs=found, entry_id=entry_id, call_closed=closed)


__all__ = [
    "ACCEPTED",
    "AWAITING_RESULT",
    "DEFAULT_TIMEOUT",
    "DONE",
    "FAILED",
    "SENDING",
    "SENT",
    "SUCCESS",
    "TIMED_OUT",
    "Caused",
    "CausedLeg",
    "CommandJournal",
    "CommandRecord",
    "new_command_id",
]
