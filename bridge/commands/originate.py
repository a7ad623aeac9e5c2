"""Click-to-call: ring an employee's extension, then dial the customer (Mango `commands/callback`).

Every command is recorded in the `commands` table before it is sent, so its asynchronous result
(`/result/callback`) and the calls it causes (events carrying the same `command_id`) can be tied back.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable

from sqlalchemy import Engine, insert, update

from bridge.connector_api.phones import InvalidPhoneNumber, mango_digits, to_e164
from bridge.pbx.mango.client import MangoClient
from bridge.pbx.mango.errors import MangoError
from bridge.store.schema import commands

log = logging.getLogger(__name__)
_EXTENSION = re.compile(r"^[0-9]{1,16}$")


class InvalidExtension(ValueError):
    """The extension is not a PBX short number."""


class OriginateService:
    """`originate(extension, number) -> command_id`; raises `InvalidPhoneNumber`, `InvalidExtension`,
    or the specific `MangoError` when Mango refuses the command."""

    def __init__(
        self,
        engine: Engine,
        client_factory: Callable[[], MangoClient],
        *,
        region: str = "RU",
        line_number: str | None = None,
    ) -> None:
        self._engine = engine
        self._client_factory = client_factory
        self._region = region
        self._line_number = line_number

    def __call__(self, extension: str, number: str) -> str:
        extension = str(extension).strip()
        if not _EXTENSION.match(extension):
            raise InvalidExtension("the extension must be the employee's short number, e.g. 101")
        e164 = to_e164(number, self._region)
        command_id = f"cb-{uuid.uuid4().hex}"
        payload = {"extension": extension, "to_number": mango_digits(e164), "line_number": self._line_number}
        now = time.time()
        with self._engine.begin() as conn:
            conn.execute(
                insert(commands).values(
                    command_id=command_id,
                    path="commands/callback",
                    payload=json.dumps(payload),
                    status="sending",
                    created_at=now,
                    updated_at=now,
                )
            )
        status, result = "failed", None
        try:
            accepted = self._client_factory().callback(
                extension, mango_digits(e164), line_number=self._line_number, command_id=command_id
            )
            status, result = "accepted", accepted.result
        except MangoError as exc:
            result = getattr(exc, "code", None)
            log.warning("click-to-call %s refused by Mango: %s", command_id, exc)
            raise
        finally:
            with self._engine.begin() as conn:
                conn.execute(
                    update(commands)
                    .where(commands.c.command_id == command_id)
                    .values(status=status, sync_result=result, updated_at=time.time())
                )
        return command_id


__all__ = ["InvalidExtension", "InvalidPhoneNumber", "OriginateService"]
