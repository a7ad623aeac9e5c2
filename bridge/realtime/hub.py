"""The WebSocket hub: pushes call events and caller cards to the employees whose phones ring.

Runs in the parent process of `callbridge run`, on its own asyncio loop in one thread; the processor
hands it CallEvents with `publish` right after each committed batch (and HTTP workers through the local
relay, see `bridge.realtime.publish`). With Redis configured, every event also goes to the other
instances' hubs, and theirs come here (`bridge.realtime.redis_bridge`).

Per call, messages leave in the order the events came. A ringing waits for the caller card up to the
lookup deadline; whatever is known then goes with it, and the complete card follows as `call.card`.
The instance whose processor emitted the event does the lookup and shares the card with the others.

Clients connect to ``ws://HOST:PORT/ws?token=...[&last_event_id=N]``; see docs/realtime.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from bridge.connector_api import CallEvent
from bridge.lookup import Card, LookupService
from bridge.realtime import messages
from bridge.realtime.auth import Identity, TokenError, TokenSigner
from bridge.realtime.buffer import ResumeBuffer, Sent

log = logging.getLogger(__name__)

WS_PATH = "/ws"
CLOSE_TOKEN_EXPIRED = 4001


def _ws_logger() -> logging.Logger:
    # The library logs the request line (with the token) at DEBUG, and every connection at INFO.
    logger = logging.getLogger("callbridge.realtime.ws")
    logger.setLevel(logging.WARNING)
    return logger


def _dumps(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class RealtimeHub:
    """See the module docstring. `start()` binds (raising if it cannot); `publish()` is thread-safe."""

    def __init__(
        self,
        signer: TokenSigner,
        *,
        lookup: LookupService | None = None,
        host: str = "127.0.0.1",
        port: int = 8081,
        heartbeat: float = 25.0,
        resume_seconds: float = 300.0,
        max_clients: int = 10_000,
        region: str = "RU",
        redis_url: str = "",
        redis_channel: str = "callbridge:realtime",
    ) -> None:
        self._signer = signer
        self.lookup = lookup
        self.host = host
        self.port = port
        self.heartbeat = heartbeat
        self.max_clients = max_clients
        self.region = region
        self.instance_id = uuid.uuid4().hex[:12]
        self.buffer = ResumeBuffer(resume_seconds)
        self._redis_url = redis_url
        self._redis_channel = redis_channel
        self._redis: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: Server | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._by_extension: dict[str, set[ServerConnection]] = {}
        self._supervisors: set[ServerConnection] = set()
        self._identities: dict[ServerConnection, Identity] = {}
        self._chains: dict[str, asyncio.Future[None]] = {}
        self._remote_cards: dict[str, asyncio.Future[Card]] = {}
        self._last_id = 0
        self.sent_messages = 0
        if lookup is not None:
            lookup.on_card = self._card_done_threadsafe

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> RealtimeHub:
        self._thread = threading.Thread(target=self._run, name="realtime-hub", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("the WebSocket hub did not start in time")
        if self._start_error is not None:
            error = self._start_error
            if isinstance(error, OSError) and error.errno == errno.EADDRINUSE:
                raise RuntimeError(f"address {self.host}:{self.port} is already in use") from error
            raise RuntimeError(
                f"the WebSocket hub cannot listen on {self.host}:{self.port}: {error}"
            ) from error
        return self

    def stop(self, timeout: float = 5.0) -> None:
        loop = self._loop
        if loop is not None and self._stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def clients(self) -> int:
        return len(self._identities)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            if not self._started.is_set():
                self._start_error = exc
                self._started.set()
            else:
                log.exception("the WebSocket hub stopped")
        finally:
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._authenticate,
            compression=None,  # per-message deflate costs 2-3x for small JSON frames (performance.md)
            ping_interval=20,
            ping_timeout=20,
            max_size=8192,
            max_queue=4,
            server_header=None,
            logger=_ws_logger(),
        ) as server:
            self._server = server
            sockets = list(server.sockets)
            if sockets:
                self.port = sockets[0].getsockname()[1]
            tasks = [asyncio.create_task(self._heartbeats())]
            if self._redis_url:
                from bridge.realtime.redis_bridge import RedisBridge

                self._redis = RedisBridge(
                    self._redis_url, self._redis_channel, self.instance_id, self._on_remote
                )
                await self._redis.start()
                tasks.append(asyncio.create_task(self._redis.run()))
            log.info(
                "websocket hub listening on %s:%s redis=%s lookup_sources=%s",
                self.host,
                self.port,
                "on" if self._redis_url else "off",
                ",".join(self.lookup.sources) if self.lookup else "none",
            )
            self._started.set()
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            if self._redis is not None:
                await self._redis.close()
            server.close()

    # ------------------------------------------------------------------ input

    def publish(self, events: Sequence[CallEvent]) -> None:
        """Hand CallEvents of this instance to the hub (from any thread)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        wanted = [e for e in events if e.type in messages.FORWARDED]
        if wanted:
            received = time.monotonic()
            loop.call_soon_threadsafe(self._ingest_many, wanted, True, received)

    def _ingest_many(self, events: list[CallEvent], local: bool, received: float) -> None:
        if local and self._redis is not None:
            self._redis.publish({"k": "events", "events": [e.to_dict() for e in events]})
        for event in events:
            self._ingest(event, local, received)

    def _on_remote(self, payload: dict[str, Any]) -> None:
        """A message from another instance (on the hub's loop)."""
        kind = payload.get("k")
        if kind == "events":
            received = time.monotonic()
            for data in payload.get("events") or []:
                try:
                    event = CallEvent.from_dict(data)
                except (TypeError, ValueError):
                    continue
                if event.type in messages.FORWARDED:
                    self._ingest(event, False, received)
        elif kind == "card":
            try:
                card = Card.from_dict(payload["card"])
                key = str(payload["key"])
            except (KeyError, TypeError, ValueError):
                return
            if self.lookup is not None:
                self.lookup.remember(key, card)
            self._resolve_remote_card(key, card)

    def _ingest(self, event: CallEvent, local: bool, received: float) -> None:
        """Deliver now, or after the call's previous message (which may be waiting for its card)."""
        previous = self._chains.get(event.entry_id)
        if (previous is None or previous.done()) and not self._needs_wait(event, local):
            self._deliver_now(event, local)
            return
        task = asyncio.ensure_future(self._deliver_after(previous, event, local, received))
        self._chains[event.entry_id] = task

        def _cleanup(done: asyncio.Future[None], entry_id: str = event.entry_id) -> None:
            if self._chains.get(entry_id) is done:
                del self._chains[entry_id]

        task.add_done_callback(_cleanup)

    def _needs_wait(self, event: CallEvent, local: bool) -> bool:
        if event.type not in messages.WITH_CARD or self.lookup is None or not self.lookup.enabled:
            return False
        if self.lookup.deadline <= 0:
            return False
        found = self.lookup.key(event.customer_number)
        if found is None:
            return False
        return self.lookup.cached(event.customer_number) is None

    def _deliver_now(self, event: CallEvent, local: bool) -> None:
        card: Card | None = None
        pending = False
        if event.type in messages.WITH_CARD and self.lookup is not None and self.lookup.enabled:
            card = self.lookup.cached(event.customer_number)
            if card is None and self.lookup.key(event.customer_number) is not None:
                pending = True
                # deadline 0: ringing at once, the card follows as call.card
                asyncio.ensure_future(self._late_card(event, local, None))
        self._send_event(event, card, pending)

    async def _deliver_after(
        self, previous: asyncio.Future[None] | None, event: CallEvent, local: bool, received: float
    ) -> None:
        if previous is not None and not previous.done():
            with contextlib.suppress(Exception):  # the previous message's failure is logged there
                await asyncio.shield(previous)
        try:
            if event.type in messages.WITH_CARD and self.lookup is not None and self.lookup.enabled:
                await self._deliver_with_card(event, local, received)
            else:
                self._send_event(event, None, False)
        except Exception:
            log.exception("could not deliver %s entry_id=%s", event.type, event.entry_id)

    async def _deliver_with_card(self, event: CallEvent, local: bool, received: float) -> None:
        assert self.lookup is not None
        cached = self.lookup.cached(event.customer_number)
        if cached is not None or self.lookup.key(event.customer_number) is None:
            self._send_event(event, cached, False)
            return
        future = self._card_future(event, local)
        remaining = self.lookup.deadline - (time.monotonic() - received)
        card: Card | None = None
        if future is not None and remaining > 0:
            try:
                card = await asyncio.wait_for(asyncio.shield(future), remaining)
            except TimeoutError:
                card = None
        elif future is not None and future.done():
            card = future.result()
        if card is not None:
            self._send_event(event, card, False)
            return
        partial = self._partial(event) if local else None
        self._send_event(event, partial, True)
        if future is not None:
            asyncio.ensure_future(self._late_card(event, local, future))

    def _partial(self, event: CallEvent) -> Card | None:
        assert self.lookup is not None
        running = self.lookup.start(event.customer_number)
        return running.snapshot() if running is not None else None

    async def _late_card(self, event: CallEvent, local: bool, future: asyncio.Future[Card] | None) -> None:
        if future is None:
            future = self._card_future(event, local)
            if future is None:
                return
        timeout = self.lookup.timeout + 1.0 if self.lookup is not None else 10.0
        try:
            card = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return
        self._send(messages.card_message(event, card, self.region), messages.audience(event))

    def _card_future(self, event: CallEvent, local: bool) -> asyncio.Future[Card] | None:
        """A future of the final card: our own lookup for our events, another instance's card otherwise."""
        assert self.lookup is not None and self._loop is not None
        found = self.lookup.key(event.customer_number)
        if found is None:
            return None
        key = found[0]
        if not local:
            future = self._remote_cards.get(key)
            if future is None or future.done():
                future = self._remote_cards[key] = self._loop.create_future()
                self._loop.call_later(self.lookup.timeout + 2.0, self._drop_remote_card, key, future)
            return future
        running = self.lookup.start(event.customer_number)
        if running is None:
            return None
        loop = self._loop
        future = loop.create_future()

        def _done(card: Card) -> None:
            def _set() -> None:
                if not future.done():
                    future.set_result(card)

            if loop.is_closed():
                return
            try:
                if threading.current_thread() is self._thread:
                    _set()
                else:
                    loop.call_soon_threadsafe(_set)
            except RuntimeError:
                pass

        running.add_done_callback(_done)
        return future

    def _drop_remote_card(self, key: str, future: asyncio.Future[Card]) -> None:
        if self._remote_cards.get(key) is future:
            del self._remote_cards[key]
        if not future.done():
            future.cancel()

    def _resolve_remote_card(self, key: str, card: Card) -> None:
        future = self._remote_cards.pop(key, None)
        if future is not None and not future.done():
            future.set_result(card)

    def _card_done_threadsafe(self, key: str, card: Card) -> None:
        """A lookup of ours finished: share the card with the other instances."""
        loop = self._loop
        if self._redis_url and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._share_card, key, card)

    def _share_card(self, key: str, card: Card) -> None:
        if self._redis is not None:
            self._redis.publish({"k": "card", "key": key, "card": card.to_dict()})

    # ------------------------------------------------------------------ output

    def _send_event(self, event: CallEvent, card: Card | None, card_pending: bool) -> None:
        message = messages.call_message(event, card=card, card_pending=card_pending, region=self.region)
        self._send(message, messages.audience(event))

    def _next_id(self) -> int:
        # Time-based and increasing: ids from different instances are comparable (docs/realtime.md).
        self._last_id = max(self._last_id + 1, int(time.time() * 1000) * 1000)
        return self._last_id

    def _send(self, message: dict[str, Any], audience: frozenset[str]) -> None:
        message_id = self._next_id()
        data = _dumps({"id": message_id, **message})
        self.buffer.add(Sent(message_id, time.monotonic(), audience, data))
        recipients: list[ServerConnection] = list(self._supervisors)
        for extension in audience:
            recipients.extend(self._by_extension.get(extension, ()))
        if recipients:
            broadcast(recipients, data, text=True)
        self.sent_messages += 1

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            data = _dumps({"type": messages.HEARTBEAT, "ts": time.time(), "last_id": self._last_id})
            broadcast(list(self._identities), data, text=True)
            self.buffer.trim()

    # ------------------------------------------------------------------ clients

    def _authenticate(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path != WS_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "connect to /ws?token=...\n")
        query = parse_qs(parts.query)
        token = (query.get("token") or [""])[0]
        try:
            identity = self._signer.verify(token)
        except TokenError as exc:
            log.info("websocket refused: %s", exc)  # the reason only, never the token
            return connection.respond(HTTPStatus.UNAUTHORIZED, f"{exc}\n")
        if len(self._identities) >= self.max_clients:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "too many clients\n")
        last = (query.get("last_event_id") or [""])[0]
        connection.callbridge_identity = identity  # type: ignore[attr-defined]
        connection.callbridge_last_id = int(last) if last.isdigit() else None  # type: ignore[attr-defined]
        return None

    def _register(self, ws: ServerConnection, identity: Identity) -> None:
        self._identities[ws] = identity
        if identity.is_supervisor:
            self._supervisors.add(ws)
        elif identity.extension:
            self._by_extension.setdefault(identity.extension, set()).add(ws)

    def _unregister(self, ws: ServerConnection) -> None:
        identity = self._identities.pop(ws, None)
        if identity is None:
            return
        self._supervisors.discard(ws)
        if identity.extension:
            group = self._by_extension.get(identity.extension)
            if group is not None:
                group.discard(ws)
                if not group:
                    del self._by_extension[identity.extension]

    async def _handler(self, ws: ServerConnection) -> None:
        identity: Identity = ws.callbridge_identity  # type: ignore[attr-defined]
        last_id: int | None = ws.callbridge_last_id  # type: ignore[attr-defined]
        # Register and replay without yielding to the loop: nothing sent meanwhile can slip in between.
        replay, gap = self.buffer.since(last_id, identity) if last_id is not None else ([], False)
        self._register(ws, identity)
        hello = {
            "type": messages.HELLO,
            "identity": identity.to_dict(),
            "last_id": self._last_id,
            "resumed_from": last_id,
            "replayed": len(replay),
            "gap": gap,
            "heartbeat_seconds": self.heartbeat,
            "server_time": time.time(),
        }
        broadcast([ws], _dumps(hello), text=True)
        for item in replay:
            broadcast([ws], item.data, text=True)
        expiry = self._loop.call_later(  # type: ignore[union-attr]
            max(0.0, identity.expires_at - time.time()), self._expire, ws
        )
        try:
            async for raw in ws:
                self._client_message(ws, raw)
        except ConnectionClosed:
            pass
        finally:
            expiry.cancel()
            self._unregister(ws)

    def _expire(self, ws: ServerConnection) -> None:
        asyncio.ensure_future(ws.close(CLOSE_TOKEN_EXPIRED, "token expired"))

    def _client_message(self, ws: ServerConnection, raw: str | bytes) -> None:
        try:
            message = json.loads(raw)
        except ValueError:
            return
        if isinstance(message, dict) and message.get("type") == "ping":
            broadcast([ws], _dumps({"type": "pong", "ts": time.time(), "last_id": self._last_id}), text=True)


__all__ = ["CLOSE_TOKEN_EXPIRED", "WS_PATH", "RealtimeHub"]
