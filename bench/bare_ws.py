"""Baseline for bench/popup_latency.py: the least a server can do between a webhook and a popup frame.

One asyncio process: a minimal HTTP/1.1 endpoint that reads the Mango form, and a `websockets` server
(no compression, like the hub). When an `events/call` Appeared at an employee arrives, it sends one small
JSON frame to that extension's clients, then answers 200. No signature check, no store, no tracker.

    python bench/bare_ws.py HTTP_PORT WS_PORT
Clients connect to ws://127.0.0.1:WS_PORT/ws?ext=1000.
"""

from __future__ import annotations

import asyncio
import json
import sys
from urllib.parse import parse_qs, unquote_plus, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve

clients: dict[str, set[ServerConnection]] = {}


async def ws_handler(ws: ServerConnection) -> None:
    ext = (parse_qs(urlsplit(ws.request.path).query).get("ext") or [""])[0]  # type: ignore[union-attr]
    clients.setdefault(ext, set()).add(ws)
    try:
        await ws.send(json.dumps({"type": "hello"}))
        async for _ in ws:
            pass
    finally:
        clients[ext].discard(ws)


def _form_json(body: bytes) -> dict:
    for part in body.split(b"&"):
        key, _, value = part.partition(b"=")
        if key == b"json":
            return json.loads(unquote_plus(value.decode()))
    return {}


async def http_handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            payload = _form_json(body)
            if payload.get("call_state") == "Appeared" and payload.get("location") == "abonent":
                ext = str((payload.get("to") or {}).get("extension") or "")
                frame = json.dumps(
                    {"type": "call.ringing", "entry_id": payload.get("entry_id"), "extension": ext}
                )
                broadcast(clients.get(ext, ()), frame)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(http_port: int, ws_port: int) -> None:
    async with serve(ws_handler, "127.0.0.1", ws_port, compression=None):
        server = await asyncio.start_server(http_handler, "127.0.0.1", http_port, backlog=2048)
        async with server:
            await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
