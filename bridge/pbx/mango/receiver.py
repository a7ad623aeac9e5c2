"""The Mango webhook receiver: `/mango/<path>` for every notification Mango sends.

Checks, in order: source IP (optional allow-list), body size (a Content-Length, or a chunked body read up
to the same cap), content type, the three form fields, `vpbx_api_key`, the signature over the raw `json`
field (constant time), the JSON and its bounds (`parse.check_bounds`: 64-bit integers, no NUL or lone
surrogate, limited nesting), the payload. Only then is the event committed, and only after the commit is
it answered 200. A value the database still refuses is answered 422 (the writer stores its neighbours).

Notifications are answered on the HTTP worker's event loop (`MangoReceiver.answer_on_loop`, called by
the asynchronous front in bridge/web/front.py), with a plain WSGI callable in front of the Flask app
(`MangoReceiver.wsgi`) for servers without that front; the rest of `/mango` (the GET status page) is a
Flask blueprint. All three run one sequence of checks (`MangoReceiver.check`) and give the same answers.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wrappers import Request
from werkzeug.wsgi import get_path_info

from bridge.http_errors import INTERNAL_ERROR, ApiError, error_payload, http_error
from bridge.ingest.writer import EventRefused, GroupCommitWriter
from bridge.pbx.events import PbxEvent
from bridge.pbx.mango import parse as mango_parse
from bridge.pbx.mango.signing import verify
from bridge.store.raw_events import RawRecord

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
PREFIX = "/mango/"
EXTENSION = "mango_receiver"  # the key of the receiver in its Flask app's `extensions`


class MangoCredentials:
    """The key and salt, read through a callable so saved settings apply without a restart."""

    def __init__(self, source: Callable[[], tuple[str, str]]) -> None:
        self._source = source

    def get(self) -> tuple[str, str]:
        return self._source()


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowList:
    """The source-address allow-list, read through a callable so a list saved in the panel applies
    without a restart. The parsed networks are kept per list, so a request costs one call of the (cached)
    source and a membership test. An empty list lets every address in.
    """

    def __init__(self, source: Callable[[], Sequence[str]] | Sequence[str]) -> None:
        self._source: Callable[[], Sequence[str]] = source if callable(source) else (lambda: source)
        # (the list object last seen, its entries, its networks): replaced in one assignment, so other
        # threads see either the old triple or the new one.
        self._compiled: tuple[object, tuple[str, ...], tuple[Network, ...]] = (None, (), ())

    def networks(self) -> tuple[Network, ...] | None:
        """The current networks, or None when the list is empty (open). Invalid entries are ignored."""
        current = self._source()
        seen, entries, networks = self._compiled
        if current is not seen:
            items = tuple(current)
            if items != entries:
                networks = _parse(items)
            self._compiled = (current, items, networks)
            entries = items
        return networks if entries else None

    def allows(self, address: str | None) -> bool:
        networks = self.networks()
        if networks is None:
            return True
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks if network.version == ip.version)


def _parse(items: Sequence[str]) -> tuple[Network, ...]:
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            log.warning("mango.allowed_ips: %r is not an address or network; ignored", item[:64])
    return tuple(networks)


class _FormRequest(Request):
    """The request of the plain WSGI path: Flask's form limits, set per receiver, without an app context."""

    max_form_parts = 1000  # Flask's MAX_FORM_PARTS default


def _json_body(data: dict[str, object]) -> bytes:
    """The body Flask's `jsonify` gives for `data` in this app (compact, ASCII, keys in order, newline)."""
    return (json.dumps(data, separators=(",", ":")) + "\n").encode()


Reply = tuple[int, bytes]
"""A notification's answer: its status and JSON body (the headers follow from the body, `_headers`)."""

_OK: Reply = (200, _json_body({"success": True}))


def _error_reply(status: int, message: str) -> Reply:
    return status, _json_body(error_payload(status, message))


def _headers(body: bytes) -> list[tuple[str, str]]:
    return [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]


def _settle(future: asyncio.Future[BaseException | None], error: BaseException | None) -> None:
    if not future.done():  # not given up on (timed out, or the client left)
        future.set_result(error)


def raw_record(
    path: str, event: PbxEvent | None, json_text: str, received_at: float | None = None
) -> RawRecord:
    """The stored form of a checked notification: its dedup key and call, and the JSON as received."""
    return RawRecord(
        path=path,
        dedup_key=mango_parse.dedup_key(path, event, json_text),
        entry_id=mango_parse.entry_id_of(event),
        payload=json_text,
        received_at=time.time() if received_at is None else received_at,
    )


class MangoReceiver:
    """The `/mango` receiver. `allowed_ips` is the list, or a callable giving the current one.

    Notifications (`POST /mango/<path>`) are answered on the event loop (`answer_on_loop`) or by a plain
    WSGI path in front of the Flask app (`wsgi`), so they skip Flask's contexts, URL map, session and
    hooks; everything else under `/mango` (the GET status page, other methods, odd paths) goes through
    the Flask blueprint (`blueprint`). All of them run the same checks in the same order and give the
    same answers.
    """

    def __init__(
        self,
        credentials: MangoCredentials,
        writer: GroupCommitWriter,
        *,
        allowed_ips: Callable[[], Sequence[str]] | Sequence[str],
        max_body_bytes: int,
        commit_timeout: float = 10.0,
    ) -> None:
        self._credentials = credentials
        self._writer = writer
        self._allow_list = AllowList(allowed_ips)
        self._max_body_bytes = max_body_bytes
        self._commit_timeout = commit_timeout
        self._request_class = type(
            "MangoFormRequest",
            (_FormRequest,),
            {"max_content_length": max_body_bytes, "max_form_memory_size": max_body_bytes},
        )

    def guard(self, request: Request) -> None:
        """Source address, then a length for a POST (or a body the server delimits), then its size."""
        if not self._allow_list.allows(request.remote_addr):
            raise ApiError(403, "source address not allowed")
        length = request.content_length
        if length is None and request.method == "POST" and not _delimited(request.environ):
            raise ApiError(411, "a Content-Length header or a chunked body is required")
        if length is not None and length > self._max_body_bytes:
            raise self._too_large()

    def _too_large(self) -> ApiError:
        return ApiError(413, f"request body too large (limit {self._max_body_bytes} bytes)")

    def _read_streamed(self, request: Request) -> None:
        """Read a body without a Content-Length (chunked) up to the cap, so the form parses from memory
        and a body over the cap is refused like one whose length says so."""
        if request.content_length is not None:
            return
        stream = request.environ["wsgi.input"]
        data = stream.read(self._max_body_bytes + 1)
        if len(data) > self._max_body_bytes:
            raise self._too_large()
        request.environ["wsgi.input"] = io.BytesIO(data)
        request.get_data(cache=True)  # kept on the request: the form parser reads it from there

    def accept(self, path: str, request: Request) -> None:
        """Check, parse and commit one notification (a ping is checked, not stored); raises ApiError."""
        record = self._checked(path, request)
        if record is None:
            return
        try:
            self._writer.write(record, timeout=self._commit_timeout)
        except Exception as exc:
            raise self._store_error(record, exc) from None

    def _checked(self, path: str, request: Request) -> RawRecord | None:
        """The checks after `guard`: the record to commit, or None for a ping; raises ApiError."""
        path = path.strip("/")
        if not mango_parse.is_known_path(path):
            raise ApiError(404, f"unknown Mango notification path '/{path[:64]}'")
        if request.mimetype not in FORM_TYPES:
            raise ApiError(
                415, "expected a form (application/x-www-form-urlencoded) with vpbx_api_key, sign and json"
            )
        self._read_streamed(request)
        form = request.form
        missing = [name for name in ("vpbx_api_key", "sign", "json") if not form.get(name)]
        if missing:
            raise ApiError(400, "missing form field(s): " + ", ".join(missing))
        api_key, api_salt = self._credentials.get()
        if not api_key or not api_salt:
            raise ApiError(503, "callbridge has no Mango API key and salt configured yet")
        if form["vpbx_api_key"] != api_key:
            raise ApiError(403, "unknown vpbx_api_key")
        json_text = form["json"]
        if not verify(api_key, json_text, api_salt, form["sign"]):
            raise ApiError(403, "signature does not match (check the API salt)")
        try:
            payload = mango_parse.load_json(json_text)
        except mango_parse.ParseError as exc:
            raise ApiError(400, str(exc)) from None
        try:
            event = mango_parse.parse(path, payload)
        except mango_parse.ParseError as exc:
            raise ApiError(400, f"invalid /{path} notification: {exc}") from None
        return None if path == "ping" else raw_record(path, event, json_text)

    @staticmethod
    def _store_error(record: RawRecord, exc: BaseException) -> ApiError:
        """The answer to a commit that failed: 422 for a value the database refuses, else 503."""
        if isinstance(exc, EventRefused):
            return ApiError(422, f"the store refused a value of this event ({exc})")
        log.error("could not store /%s notification: %s", record.path, type(exc).__name__)
        log.debug("store failure", exc_info=exc)
        return ApiError(503, "the event could not be stored right now; please resend")

    def check(self, environ: WSGIEnvironment, path: str) -> RawRecord | Reply:
        """Every check of a notification, in order: the record to commit, or the answer (an error, or
        200 for a ping). Shared by the plain WSGI path and the event-loop path."""
        request = self._request_class(environ)
        try:
            self.guard(request)
            record = self._checked(path, request)
            return _OK if record is None else record
        except ApiError as exc:
            return _error_reply(exc.status, exc.message)
        except HTTPException as exc:  # e.g. a multipart form over the limits
            return _error_reply(*http_error(exc))
        except Exception as exc:
            log.exception("unexpected error: %s", type(exc).__name__)
            return _error_reply(500, INTERNAL_ERROR)
        finally:
            request.close()

    def committed(self, record: RawRecord, error: BaseException | None) -> Reply:
        """The answer once the writer has had its say on `record` (`error` None: it is committed)."""
        if error is None:
            return _OK
        failure = self._store_error(record, error)
        return _error_reply(failure.status, failure.message)

    # -- the Flask side: the status page and everything the plain path leaves to Flask ------------------

    def blueprint(self) -> Blueprint:
        bp = Blueprint("mango", __name__, url_prefix="/mango")
        # The app's server finds the receiver here, to answer notifications on its event loop.
        bp.record_once(lambda state: state.app.extensions.setdefault(EXTENSION, self))

        @bp.before_request
        def _guard() -> None:
            self.guard(request)

        @bp.route("", methods=["GET"])
        @bp.route("/", methods=["GET"])
        @bp.route("/ping", methods=["GET"])
        def status() -> Response:
            return jsonify({"success": True, "service": "callbridge", "receiver": "mango"})

        @bp.route("/<path:path>", methods=["POST"])
        def notification(path: str) -> Response:
            self.accept(path, request)
            return jsonify({"success": True})

        return bp

    # -- the plain WSGI path ----------------------------------------------------------------------------

    def wsgi(self, app: WSGIApplication) -> WSGIApplication:
        """`app` with `POST /mango/<path>` answered here, before Flask (mount inside any proxy fix-up)."""

        def receiver_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
            path = _notification_path(environ)
            if path is None:
                return app(environ, start_response)
            status, body = self._answer(environ, path)
            start_response(f"{status} {HTTP_STATUS_CODES.get(status, 'UNKNOWN').upper()}", _headers(body))
            return [body]

        return receiver_app

    def _answer(self, environ: WSGIEnvironment, path: str) -> Reply:
        verdict = self.check(environ, path)
        if not isinstance(verdict, RawRecord):
            return verdict
        try:
            self._writer.write(verdict, timeout=self._commit_timeout)
        except Exception as exc:
            return self.committed(verdict, exc)
        return self.committed(verdict, None)

    # -- the event-loop path ----------------------------------------------------------------------------

    async def answer_on_loop(
        self, environ: dict[str, Any]
    ) -> tuple[int, list[tuple[str, str]], bytes] | None:
        """The answer (status, headers, body) to a notification, checked on the running event loop and
        committed by the writer thread while the loop serves others; None for any other request (the
        WSGI app answers it). `environ` is the request's, its body in memory, past any proxy fix-up."""
        path = _notification_path(environ)
        if path is None:
            return None
        verdict = self.check(environ, path)
        if isinstance(verdict, RawRecord):
            verdict = self.committed(verdict, await self._commit_on_loop(verdict))
        status, body = verdict
        return status, _headers(body), body

    async def _commit_on_loop(self, record: RawRecord) -> BaseException | None:
        """Hand `record` to the writer and wait, without a thread, until it is committed (None) or failed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[BaseException | None] = loop.create_future()

        def done(_stored: bool | None, error: BaseException | None) -> None:  # on the writer thread
            loop.call_soon_threadsafe(_settle, future, error)

        try:
            self._writer.submit_with(record, done)
            async with asyncio.timeout(self._commit_timeout):
                return await future
        except Exception as exc:  # the writer is stopped, or the commit took too long
            return exc


def _delimited(environ: WSGIEnvironment) -> bool:
    """Whether the server ends the input stream itself (it decoded a chunked body), so reading it to
    the end is safe without a Content-Length."""
    return bool(environ.get("wsgi.input_terminated"))


def _notification_path(environ: WSGIEnvironment) -> str | None:
    """The `<path>` of a request the blueprint's notification route would take, or None.

    Only plain `POST /mango/<path>`; anything Flask would redirect or refuse (a doubled slash, an empty
    path) is left to it.
    """
    if environ.get("REQUEST_METHOD") != "POST":
        return None
    path_info = get_path_info(environ)
    if not path_info.startswith(PREFIX) or "//" in path_info:
        return None
    return path_info[len(PREFIX) :] or None
