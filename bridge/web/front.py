"""The asynchronous front of the HTTP workers: a request occupies a WSGI thread only once it is whole.

granian serves this front through its native asynchronous interface (RSGI). For each request the front
reads the body on the worker's event loop, at most `max_body_bytes` of it and within `body_timeout`
seconds, then runs the WSGI app in a pool of `threads` threads with the whole body in memory. A client
that trickles its body costs a coroutine, not a thread: other requests keep being answered meanwhile,
and the slow one gets 408 and a closed connection at the deadline. (granian's own WSGI mode reads the
body inside the app's thread, with no deadline.) Header read time is bounded by granian itself.

Requests the `inline` route takes (signed Mango notifications) are answered on the event loop itself,
with no thread: their checks take microseconds and their commit is awaited, not waited for.

A body declared longer than `max_body_bytes` is not read at all: the app sees the declared
Content-Length and answers 413 as it always does. Answers up to `BUFFERED` bytes leave in one piece;
longer ones (recordings) are streamed, the app's iterator advanced in the pool.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import queue
import sys
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from granian.rsgi import HTTPProtocol, ProtocolClosed, ProtocolError, Scope

from bridge.http_errors import INTERNAL_ERROR, error_payload

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
InlineRoute = Callable[[dict[str, Any]], Awaitable[tuple[int, list[tuple[str, str]], bytes] | None]]
"""Answers (status, headers, body) the requests it takes on the event loop; None leaves one to the app."""
BUFFERED = 256 * 1024  # answers up to this size are sent at once, longer ones streamed in such pieces
_JSON = ("content-type", "application/json")
_CLOSE = ("connection", "close")


@dataclass
class Answer:
    """What the WSGI app answered: the first `BUFFERED` bytes, and the rest still to iterate (or None)."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    rest: Iterator[bytes] | None = None
    close: Callable[[], None] | None = None


def json_answer(status: int, message: str, *headers: tuple[str, str]) -> Answer:
    body = json.dumps(error_payload(status, message), separators=(",", ":")).encode()
    return Answer(status, [_JSON, ("content-length", str(len(body))), *headers], body)


class ThreadHandoff:
    """`threads` threads that run blocking calls for an event loop.

    One queue put there and one `call_soon_threadsafe` back: measured at about half the cost of
    `loop.run_in_executor` per request, which matters at thousands of requests per second.
    """

    def __init__(self, threads: int, name: str = "http") -> None:
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """`fn(*args)` in one of the threads; await the result on the calling loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((loop, future, fn, args))
        return future

    def stop(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            loop, future, fn, args = item
            try:
                result, error = fn(*args), None
            except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                result, error = None, exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop is closed: the worker is shutting down
                return


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class WsgiFront:
    """An RSGI application around a WSGI app; see the module docstring."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        threads: int,
        body_timeout: float,
        max_body_bytes: int,
        inline: InlineRoute | None = None,
    ) -> None:
        self.app = app
        self.inline = inline
        self.body_timeout = body_timeout
        self.max_body_bytes = max_body_bytes
        self.threads = ThreadHandoff(threads)

    def __rsgi_del__(self, _loop: asyncio.AbstractEventLoop) -> None:
        self.threads.stop()

    async def __rsgi__(self, scope: Scope, protocol: HTTPProtocol) -> None:
        if scope.proto != "http":  # no WebSockets here: the hub has its own port
            return
        try:
            body = await self.read_body(scope, protocol)
        except TimeoutError:
            answer = json_answer(
                408, f"the request body did not arrive within {self.body_timeout:g} s", _CLOSE
            )
            protocol.response_bytes(answer.status, answer.headers, answer.body)
            return
        except (ProtocolClosed, ProtocolError):  # the client went away mid-body
            return
        environ = wsgi_environ(scope, body)
        if self.inline is not None and (answer := await self._inline(environ)) is not None:
            protocol.response_bytes(answer.status, answer.headers, answer.body)
            return
        answer = await self.threads.run(run_app, self.app, environ)
        if answer.rest is None:
            protocol.response_bytes(answer.status, answer.headers, answer.body)
            return
        await self._stream(protocol, answer)

    async def _inline(self, environ: dict[str, Any]) -> Answer | None:
        assert self.inline is not None
        try:
            reply = await self.inline(environ)
        except Exception:
            log.exception("the inline route failed")
            return json_answer(500, INTERNAL_ERROR)
        return None if reply is None else Answer(*reply)

    async def _stream(self, protocol: HTTPProtocol, answer: Answer) -> None:
        """Send a long answer piece by piece, advancing the app's iterator in the pool."""
        assert answer.rest is not None
        try:
            transport = protocol.response_stream(answer.status, answer.headers)
            chunk = answer.body
            while chunk:
                await transport.send_bytes(chunk)
                chunk = await self.threads.run(next_piece, answer.rest)
        except (ProtocolClosed, ProtocolError):
            pass  # the client stopped reading
        except Exception:
            log.exception("the WSGI app failed while streaming its answer")
        finally:
            if answer.close is not None:
                await self.threads.run(answer.close)

    async def read_body(self, scope: Scope, protocol: HTTPProtocol) -> bytes:
        """The whole body, read within the deadline (TimeoutError otherwise); b"" when it is too long."""
        headers = scope.headers
        length = headers.get("content-length")
        if length is None:
            if "transfer-encoding" not in headers:
                return b""
        elif not length.isdigit() or int(length) == 0 or int(length) > self.max_body_bytes:
            return b""  # the app answers from the declared length (413), nothing is read
        async with asyncio.timeout(self.body_timeout):
            if length is not None:
                return await protocol()
            return await self._read_capped(protocol)

    async def _read_capped(self, protocol: HTTPProtocol) -> bytes:
        """A chunked body up to one byte past the cap (so the app sees that it is too long)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in protocol:
            chunks.append(chunk)
            size += len(chunk)
            if size > self.max_body_bytes:
                break
        return b"".join(chunks)


def wsgi_environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """The WSGI environ of a request whose body is already in memory (PEP 3333)."""
    server_host, _, server_port = scope.server.rpartition(":")
    client_host = scope.client.rpartition(":")[0] or scope.client
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": scope.path.encode("utf-8", "surrogateescape").decode("latin-1"),
        "QUERY_STRING": scope.query_string,
        "SERVER_NAME": server_host.strip("[]"),
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
        "REMOTE_ADDR": client_host.strip("[]"),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in scope.headers.items():
        if "_" in name:  # X_Forwarded_For must not pass for X-Forwarded-For
            continue
        if name == "content-type":
            key = "CONTENT_TYPE"
        elif name == "content-length":
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        if key in environ:
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    return environ


def run_app(app: WSGIApp, environ: dict[str, Any]) -> Answer:
    """Call the WSGI app (in a pool thread) and collect its answer, or its first `BUFFERED` bytes."""
    started: list[tuple[str, list[tuple[str, str]]]] = []
    chunks: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [(status, headers)]
        return chunks.append

    try:
        result = app(environ, start_response)
    except Exception:
        log.exception("the WSGI app failed")
        return json_answer(500, INTERNAL_ERROR)
    close = getattr(result, "close", None)
    pieces: Iterator[bytes] | None = iter(result)
    size = sum(len(c) for c in chunks)
    try:
        for chunk in pieces:
            chunks.append(chunk)
            size += len(chunk)
            if size >= BUFFERED:
                break
        else:
            pieces = None
    except Exception:
        log.exception("the WSGI app failed while answering")
        started[:] = []
    if (not started or pieces is None) and close is not None:
        close()
    if not started:
        return json_answer(500, INTERNAL_ERROR)
    status, headers = started[0]
    return Answer(int(status[:3]), list(headers), b"".join(chunks), pieces, close if pieces else None)


def next_piece(pieces: Iterator[bytes]) -> bytes:
    """The next `BUFFERED` bytes of a streamed answer (b"" at its end)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in pieces:
        chunks.append(chunk)
        size += len(chunk)
        if size >= BUFFERED:
            break
    return b"".join(chunks)
