"""Click-to-call over HTTP: `POST /api/calls/originate` and `GET /api/calls/originate/<command_id>`.

`POST {"extension": "101", "number": "8 (916) 123-45-67"}` sends Mango's `commands/callback` (ring the
employee's phone, then dial the number) and answers 202 with the command id. The command's result
(`/result/callback`) and the call it causes (its legs carry the command id) are tracked by that id:
`GET .../<command_id>` shows both, and the live popups carry `command_id` too.

Authorization: `Bearer <api.token>` may call from any extension (a CRM or a script); an employee's
realtime token (`callbridge token`, or the operator page's) only from its own extension. A bad number or
extension gets 422 with the reason; Mango's refusals are passed on in plain words.
"""

from __future__ import annotations

import hmac
import json
import re
import threading
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import Engine, select

from bridge.api.params import refuse_unreadable_input
from bridge.api.text import unstorable
from bridge.commands.originate import InvalidExtension, InvalidPhoneNumber, OriginateService
from bridge.connector_api.phones import to_e164
from bridge.http_errors import ApiError
from bridge.pbx.port import PbxBadRequest, PbxError, PbxRateLimited, PbxTransportError
from bridge.pbx.select import explain_result
from bridge.processing.calls_store import row_to_dict
from bridge.ratelimit import TokenBucket
from bridge.realtime.auth import SUPERVISOR, Identity, TokenError, TokenSigner
from bridge.store.schema import calls, commands

MAX_FIELD = 64
_SHORT_NUMBER = re.compile(r"^[0-9]{1,16}$")
# Per caller: a short burst of clicks, then one call every two seconds (Mango allows 4 callbacks/s).
RATE, BURST = 0.5, 3


def _error(status: int, message: str, field: str | None = None) -> Response:
    body: dict[str, Any] = {"error": message, "status": status}
    if field:
        body["field"] = field
    response = jsonify(body)
    response.status_code = status
    return response


def bearer_identity(api_token: str, signer: Callable[[], TokenSigner]) -> Identity:
    """Who is calling: the API token is the integration (any extension); else a realtime token."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "missing bearer token (Authorization: Bearer <token>)")
    if api_token and hmac.compare_digest(given.encode(), api_token.encode()):
        return Identity(SUPERVISOR, None, 0.0)
    try:
        return signer().verify(given)
    except TokenError as exc:
        raise ApiError(401, str(exc)) from None


def make_originate_api(
    engine: Engine,
    originate: OriginateService,
    *,
    api_token: Callable[[], str],
    signer: Callable[[], TokenSigner],
    enabled: Callable[[], bool],
    region: str = "RU",
) -> Blueprint:
    bp = Blueprint("originate_api", __name__, url_prefix="/api/calls/originate")
    buckets: dict[str, TokenBucket] = {}
    lock = threading.Lock()

    def _throttle(who: str) -> None:
        with lock:
            if len(buckets) > 10_000:
                buckets.clear()
            bucket = buckets.setdefault(who, TokenBucket(RATE, BURST))
        wait = bucket.try_acquire()
        if wait:
            raise ApiError(429, f"too many calls placed; try again in {wait:.0f} s")

    @bp.post("")
    @bp.post("/")
    def place() -> Response:
        identity = bearer_identity(api_token(), signer)
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error(400, 'send JSON: {"extension": "101", "number": "+7 916 123-45-67"}')
        number, extension = body.get("number"), body.get("extension")
        if extension is None and not identity.is_supervisor:
            extension = identity.extension
        if isinstance(extension, int) and not isinstance(extension, bool):
            extension = str(extension)
        if not isinstance(extension, str) or not extension.strip():
            return _error(
                422, "extension: give the employee's extension (short number), e.g. 101", "extension"
            )
        if not isinstance(number, str | int) or isinstance(number, bool) or not str(number).strip():
            return _error(422, "number: give the number to call", "number")
        number, extension = str(number), extension.strip()
        if len(number) > MAX_FIELD or len(extension) > MAX_FIELD:
            return _error(422, "number or extension is too long", "number")
        if unstorable(number) or unstorable(extension):
            return _error(422, "number or extension holds a NUL or an unpaired surrogate character", "number")
        if not identity.is_supervisor and extension != identity.extension:
            return _error(403, f"this token may only place calls from extension {identity.extension}")
        if not enabled():
            return _error(503, "click-to-call is not set up: set CALLBRIDGE_MANGO_API_KEY and _SALT")
        try:  # refuse bad input before it counts against the caller's rate
            to_e164(number, region)
        except InvalidPhoneNumber as exc:
            return _error(422, f"number: {exc}", "number")
        if not _SHORT_NUMBER.match(extension):
            return _error(
                422, "extension: the extension must be the employee's short number, e.g. 101", "extension"
            )
        _throttle(extension)
        try:
            command_id = originate(extension, number)
        except InvalidPhoneNumber as exc:
            return _error(422, f"number: {exc}", "number")
        except InvalidExtension as exc:
            return _error(422, f"extension: {exc}", "extension")
        except PbxRateLimited as exc:
            response = _error(429, f"Mango is rate limiting commands: {exc.message}")
            if exc.retry_after:
                response.headers["Retry-After"] = str(int(exc.retry_after + 0.999))
            return response
        except PbxTransportError as exc:
            return _error(503, f"Mango could not be reached: {exc.message}")
        except PbxBadRequest as exc:
            return _error(502, f"Mango refused the command (code {exc.code}): {exc.message}")
        except PbxError as exc:
            return _error(502, f"Mango could not place the call (code {exc.code}): {exc.message}")
        status = command_status(engine, command_id) or {}
        response = jsonify(
            {
                **status,
                "command_id": command_id,
                "status_url": f"/api/calls/originate/{command_id}",
            }
        )
        response.status_code = 202
        return response

    @bp.get("/<command_id>")
    def show(command_id: str) -> Response:
        identity = bearer_identity(api_token(), signer)
        refuse_unreadable_input()
        status = command_status(engine, command_id[:160])
        if status is None or (not identity.is_supervisor and status.get("extension") != identity.extension):
            return _error(404, "no click-to-call with this command id")
        return jsonify(status)

    return bp


def command_status(engine: Engine, command_id: str) -> dict[str, Any] | None:
    """A click-to-call command: its state, Mango's answers, and the call it caused (when known)."""
    with engine.connect() as conn:
        row = conn.execute(select(commands).where(commands.c.command_id == command_id)).first()
        if row is None or row.path != "commands/callback":
            return None
        call = conn.execute(
            select(calls).where(calls.c.command_id == command_id).order_by(calls.c.started_at.desc()).limit(1)
        ).first()
    try:
        payload = json.loads(row.payload)
    except ValueError:
        payload = {}
    digits = str(payload.get("to_number") or "")
    refused = row.async_result if row.async_result not in (None, 1000) else row.sync_result
    return {
        "command_id": row.command_id,
        "status": row.status,  # bridge.commands.journal: sending, accepted, sent, failed, done, timed_out
        "sync_result": row.sync_result,
        "async_result": row.async_result,
        # Why it failed, in words (null unless it failed with the PBX's result code).
        "reason": explain_result(row.path, refused) if row.status == "failed" and refused else None,
        "extension": payload.get("extension"),
        "number": f"+{digits}" if digits else None,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "call": row_to_dict(call) if call is not None else None,
    }
