"""`GET /api/calls` and `GET /api/calls/<entry_id>`."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import Engine

from bridge.api.auth import require_bearer
from bridge.api.calls_query import (
    DIRECTIONS,
    MAX_ENTRY_ID,
    STATUSES,
    BadCursor,
    CallFilter,
    decode_cursor,
    get_call,
    list_calls,
)
from bridge.api.params import moment, refuse_unreadable_input, whole_number
from bridge.http_errors import ApiError

MAX_LIMIT = 200
_EXTENSION = re.compile(r"[0-9A-Za-z_.-]{1,32}")
# A phone number as people write it: digits, spaces and + - ( ) . separators; no wildcards.
_NUMBER = re.compile(r"[0-9+() .-]{1,40}")


def _one_of(name: str, value: str | None, allowed: tuple[str, ...]) -> str | None:
    if value and value not in allowed:
        raise ApiError(400, f"'{name}' must be one of {', '.join(allowed)}")
    return value or None


def _filter_from_request() -> CallFilter:
    args = request.args
    extension = args.get("extension") or None
    if extension and not _EXTENSION.fullmatch(extension):
        raise ApiError(400, "'extension' must be a short extension number (letters, digits, _ . -)")
    number = args.get("number") or None
    digits = None
    if number:
        if not _NUMBER.fullmatch(number):
            raise ApiError(400, "'number' may hold digits, spaces and + - ( ) . only (no wildcards)")
        digits = re.sub(r"[^0-9]", "", number)
        if len(digits) < 3:
            raise ApiError(400, "'number' needs at least 3 digits")
        digits = digits[-10:]
    return CallFilter(
        since=moment("since", args.get("since")),
        until=moment("until", args.get("until")),
        status=_one_of("status", args.get("status"), STATUSES),
        extension=extension,
        number_digits=digits,
        direction=_one_of("direction", args.get("direction"), DIRECTIONS),
    )


def _cursor_from_request() -> str | None:
    cursor = request.args.get("cursor") or None
    if cursor is not None:
        try:
            decode_cursor(cursor)
        except BadCursor as exc:
            raise ApiError(400, f"'cursor' is not a cursor this API returned: {exc}") from None
    return cursor


def make_calls_api(engine: Engine, token_source: Callable[[], str]) -> Blueprint:
    bp = Blueprint("calls_api", __name__, url_prefix="/api/calls")
    bp.before_request(require_bearer(token_source))
    bp.before_request(refuse_unreadable_input)

    @bp.get("")
    @bp.get("/")
    def index() -> Response:
        limit = whole_number("limit", request.args.get("limit"), default=50, low=1, high=MAX_LIMIT)
        flt, cursor = _filter_from_request(), _cursor_from_request()
        return jsonify(list_calls(engine, flt, limit=limit, cursor=cursor))

    @bp.get("/<path:entry_id>")
    def show(entry_id: str) -> Response:
        call = get_call(engine, entry_id) if len(entry_id) <= MAX_ENTRY_ID else None
        if call is None:
            raise ApiError(404, "no call with this entry id (URL-encode ids that hold / + =)")
        return jsonify(call)

    return bp
