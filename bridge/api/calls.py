"""`GET /api/calls` and `GET /api/calls/<entry_id>`."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import Engine

from bridge.api.auth import require_bearer
from bridge.api.calls_query import DIRECTIONS, STATUSES, CallFilter, get_call, list_calls
from bridge.web.errors import ApiError

MAX_LIMIT = 200


def _parse_time(name: str, value: str | None) -> float | None:
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400, f"'{name}' must be Unix seconds or an ISO 8601 time, got '{value[:40]}'"
        ) from None
    if moment.tzinfo is None:
        raise ApiError(400, f"'{name}' needs a time zone (e.g. 2026-11-25T10:00:00+03:00)")
    return moment.timestamp()


def _filter_from_request() -> CallFilter:
    args = request.args
    status = args.get("status") or None
    if status and status not in STATUSES:
        raise ApiError(400, f"'status' must be one of {', '.join(STATUSES)}")
    direction = args.get("direction") or None
    if direction and direction not in DIRECTIONS:
        raise ApiError(400, f"'direction' must be one of {', '.join(DIRECTIONS)}")
    extension = args.get("extension") or None
    if extension and not re.fullmatch(r"[0-9A-Za-z_.-]{1,32}", extension):
        raise ApiError(400, "'extension' must be a short extension number")
    number = args.get("number") or None
    digits = None
    if number:
        digits = re.sub(r"\D", "", number)
        if len(digits) < 3:
            raise ApiError(400, "'number' needs at least 3 digits")
        digits = digits[-10:]
    return CallFilter(
        since=_parse_time("since", args.get("since")),
        until=_parse_time("until", args.get("until")),
        status=status,
        extension=extension,
        number_digits=digits,
        direction=direction,
    )


def make_calls_api(engine: Engine, token_source: Callable[[], str]) -> Blueprint:
    bp = Blueprint("calls_api", __name__, url_prefix="/api/calls")
    bp.before_request(require_bearer(token_source))

    @bp.get("")
    @bp.get("/")
    def index() -> Response:
        try:
            limit = int(request.args.get("limit", "50"))
        except ValueError:
            raise ApiError(400, "'limit' must be a whole number") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(400, f"'limit' must be between 1 and {MAX_LIMIT}")
        cursor = request.args.get("cursor") or None
        try:
            page = list_calls(engine, _filter_from_request(), limit=limit, cursor=cursor)
        except (ValueError, TypeError):
            raise ApiError(400, "'cursor' is not a cursor this API returned") from None
        return jsonify(page)

    @bp.get("/<path:entry_id>")
    def show(entry_id: str) -> Response:
        call = get_call(engine, entry_id)
        if call is None:
            raise ApiError(404, "no call with this entry id (URL-encode ids that hold / + =)")
        return jsonify(call)

    return bp
