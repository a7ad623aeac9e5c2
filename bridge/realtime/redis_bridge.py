"""Cross-instance fan-out through Redis pub/sub: every instance's hub gets every call event and card.

Only one processor is active per database at a time, so the hub of an instance may never see a given
call's events locally: the instance that emits them publishes them (and later the caller card it looked
up) on one channel, and every other instance's hub takes them from there. Publishing goes through one
queue and one connection, so the order of the messages is kept. If Redis is down, local popups still
work; the bridge reconnects with backoff and says so in the log (without the URL's password).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis

from bridge.connector_api.http import redact

log = logging.getLogger(__name__)

_MAX_QUEUE = 10_000


class RedisBridge:
    def __init__(
        self, url: str, channel: str, instance_id: str, on_message: Callable[[dict[str, Any]], None]
    ) -> None:
        self._url = url
        self.channel = channel
        self.instance_id = instance_id
        self._on_message = on_message
        self._client: aioredis.Redis | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(_MAX_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self.subscribed = asyncio.Event()

    def __repr__(self) -> str:
        return f"RedisBridge(channel={self.channel!r})"

    async def start(self) -> None:
        self._client = aioredis.Redis.from_url(self._url, socket_connect_timeout=5, health_check_interval=30)
        self._tasks.append(asyncio.create_task(self._publisher()))
        # Wait briefly for the subscription so events right after start are not missed.
        listener = asyncio.create_task(self._listen_forever())
        self._tasks.append(listener)
        try:
            await asyncio.wait_for(self.subscribed.wait(), 5.0)
        except TimeoutError:
            log.warning("redis not reachable yet; popups of other instances arrive once it is")

    async def run(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def publish(self, payload: dict[str, Any]) -> None:
        data = json.dumps({"o": self.instance_id, **payload}, separators=(",", ":")).encode()
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            log.warning("redis publish queue full; a realtime message for other instances was dropped")

    async def _publisher(self) -> None:
        assert self._client is not None
        while True:
            data = await self._queue.get()
            for attempt in range(3):
                try:
                    await self._client.publish(self.channel, data)
                    break
                except Exception as exc:  # noqa: BLE001
                    log.warning("redis publish failed (%s); attempt %d", redact(str(exc)), attempt + 1)
                    await asyncio.sleep(0.2 * (attempt + 1))

    async def _listen_forever(self) -> None:
        delay = 0.5
        while True:
            try:
                await self._listen()
                delay = 0.5
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                self.subscribed.clear()
                log.warning("redis subscription lost (%s); retrying in %.1f s", redact(str(exc)), delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 15.0)

    async def _listen(self) -> None:
        assert self._client is not None
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self.channel)
            self.subscribed.set()
            log.info("subscribed to realtime channel %s", self.channel)
            while True:
                message = await pubsub.get_message(timeout=30.0)
                if message is None or message.get("type") != "message":
                    continue
                try:
                    payload = json.loads(message["data"])
                except (TypeError, ValueError):
                    continue
                if not isinstance(payload, dict) or payload.get("o") == self.instance_id:
                    continue
                try:
                    self._on_message(payload)
                except Exception:
                    log.exception("realtime message from another instance failed")
        finally:
            await pubsub.aclose()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
