"""The Notebook CRM's API on a loopback port, built on the kit's `FakeServer`."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

from bridge.connector_api.testing import FakeServer, Reply, Request


class FakeNotebook(FakeServer):
    """Keeps notes (deduplicated by Idempotency-Key, as the real API does) and contacts."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.notes: list[dict[str, Any]] = []
        self.by_key: dict[str, int] = {}
        self.contacts: dict[str, str] = {}

    def answer(self, request: Request) -> Reply:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return Reply(401, {"error": "bad token"})
        parts = urlsplit(request.path)
        if request.method == "POST" and parts.path == "/notes":
            key = request.headers.get("Idempotency-Key", "")
            if key not in self.by_key:
                self.notes.append(request.json())
                self.by_key[key] = len(self.notes)
            return Reply(201, {"id": self.by_key[key]})
        if request.method == "GET" and parts.path == "/contacts":
            phone = parse_qs(parts.query).get("phone", [""])[0]
            name = self.contacts.get(phone)
            return Reply(200, [{"name": name}] if name else [])
        return Reply(404, {"error": "no such method"})

    def kinds(self, entry_id: str) -> list[str]:
        with self.lock:
            return [note["kind"] for note in self.notes if note["entry_id"] == entry_id]
