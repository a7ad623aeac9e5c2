"""Click-to-call: ring an employee's extension, then dial the customer (Mango `commands/callback`).

Every command goes through the command journal (`bridge.commands.journal`): recorded before it is sent,
so its asynchronous result (`/result/callback`) and the calls it causes (events carrying the same
`command_id`) tie back to it.
"""

from __future__ import annotations

import logging
import re

from sqlalchemy import Engine

from bridge.commands.journal import ACCEPTED, FAILED, CommandJournal, new_command_id
from bridge.connector_api.phones import InvalidPhoneNumber, mango_digits, to_e164
from bridge.pbx.port import PbxClientFactory, PbxError

log = logging.getLogger(__name__)
_EXTENSION = re.compile(r"^[0-9]{1,16}$")
PATH = "commands/callback"


class InvalidExtension(ValueError):
    """The extension is not a PBX short number."""


class OriginateService:
    """`originate(extension, number) -> command_id`; raises `InvalidPhoneNumber`, `InvalidExtension`,
    or the specific `PbxError` kind when the PBX refuses the command."""

    def __init__(
        self,
        engine: Engine,
        client_factory: PbxClientFactory,
        *,
        region: str = "RU",
        line_number: str | None = None,
        journal: CommandJournal | None = None,
    ) -> None:
        self._engine = engine
        self._journal = journal or CommandJournal(engine)
        self._client_factory = client_factory
        self._region = region
        self._line_number = line_number

    def __call__(self, extension: str, number: str) -> str:
        extension = str(extension).strip()
        if not _EXTENSION.match(extension):
            raise InvalidExtension("the extension must be the employee's short number, e.g. 101")
        e164 = to_e164(number, self._region)
        payload = {"extension": extension, "to_number": mango_digits(e164), "line_number": self._line_number}
        command_id = self._journal.record(PATH, payload, command_id=new_command_id("cb"))
        status, result = FAILED, None
        try:
            accepted = self._client_factory().callback(
                extension, mango_digits(e164), line_number=self._line_number, command_id=command_id
            )
            status, result = ACCEPTED, accepted.result
        except PbxError as exc:
            result = getattr(exc, "code", None)
            log.warning("click-to-call %s refused by Mango: %s", command_id, exc)
            raise
        finally:
            self._journal.sent(command_id, status, result)
        return command_id


__all__ = ["InvalidExtension", "InvalidPhoneNumber", "OriginateService"]
