"""Signed notifications are answered on the HTTP worker's event loop: they need no app thread.

Through `callbridge run` with one worker of one app thread, on SQLite and PostgreSQL: a click-to-call
request holds that thread (the Mango API it calls accepts the connection and never answers), and
notifications sent meanwhile are still answered 200 and committed. The answers themselves are compared
with the Flask and plain WSGI paths in test_receiver_plain_path.py.
"""

from __future__ import annotations

import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from sqlalchemy import func, select

from bridge.pbx.mango.signing import signed_form
from bridge.store.engine import make_engine
from bridge.store.schema import raw_events
from tests.daemon import API_KEY, API_SALT, API_TOKEN, Daemon
from tests.test_receiver_plain_path import CALL


class SilentApi:
    """A Mango API that takes each request and never answers it (until closed)."""

    def __init__(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self._connections: list[socket.socket] = []
        self.asked = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.getsockname()[1]}/vpbx/"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:  # closed
                return
            self._connections.append(connection)
            if connection.recv(65536):
                self.asked.set()

    def close(self) -> None:
        self._server.close()
        for connection in self._connections:
            connection.close()


def stored(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(raw_events)).scalar_one()
    finally:
        engine.dispose()


def test_notifications_are_answered_while_the_only_app_thread_is_held(
    database_url: str, tmp_path: Path
) -> None:
    api = SilentApi()
    daemon = Daemon(
        database_url,
        tmp_path,
        env={
            "CALLBRIDGE_HTTP_WORKERS": "1",
            "CALLBRIDGE_HTTP_THREADS": "1",
            "CALLBRIDGE_MANGO_API_URL": api.url,
        },
    )
    pool = ThreadPoolExecutor(1)
    try:
        daemon.start()
        held = pool.submit(
            requests.post,
            f"{daemon.url}/api/calls/originate",
            json={"extension": "101", "number": "+79161234567"},
            headers={"Authorization": f"Bearer {API_TOKEN}"},
            timeout=30,
        )
        assert api.asked.wait(15), "the click-to-call request did not reach the Mango API"
        for i in range(5):
            body = signed_form(API_KEY, API_SALT, {**CALL, "call_id": f"loop-{i}", "seq": i + 1})
            answer = requests.post(f"{daemon.mango_url}/events/call", data=body, timeout=5)
            assert answer.status_code == 200, answer.text
            assert answer.content == b'{"success":true}\n'
        assert not held.done(), "the app thread was free after all"
        assert stored(database_url) == 5
    finally:
        api.close()  # the click-to-call request fails now and frees its thread
        pool.shutdown(wait=True)
        daemon.stop()
