"""JSON errors with messages a person can act on; never an HTML page, never a bare 500."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error answered as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_payload(status: int, message: str) -> dict[str, object]:
    """The JSON body of every error answer."""
    return {"error": message, "status": status}


def error_response(status: int, message: str) -> Response:
    response = jsonify(error_payload(status, message))
    response.status_code = status
    return response


_FRIENDLY = {
    400: "the request could not be read: its body is not well-formed (JSON or form)",
    404: "no such endpoint",
    405: "method not allowed here",
    413: "request body too large",
}
INTERNAL_ERROR = "internal error; the event was not accepted, please retry"


def http_error(exc: HTTPException) -> tuple[int, str]:
    """The status and message answered for a werkzeug HTTP exception."""
    status = exc.code or 500
    if exc.description and exc.description != type(exc).description:  # a message written for this case
        return status, exc.description
    return status, _FRIENDLY.get(status, exc.description or exc.name)


def install_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.message)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        response = error_response(*http_error(exc))
        for name, value in exc.get_headers():  # e.g. Allow of a 405, Retry-After of a 429
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unexpected error: %s", type(exc).__name__)
        return error_response(500, INTERNAL_ERROR)
