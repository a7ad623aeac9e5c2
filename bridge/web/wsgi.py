"""The entry point the HTTP server imports in each worker process (`bridge.web.wsgi:front`).

`app` is the WSGI app; `front` serves it to granian (RSGI), reading each request body within
`http.body_timeout_seconds` before the request takes one of the `http.threads` threads
(see bridge/web/front.py). Signed Mango notifications take no thread: the front answers them on its
event loop through the app's receiver (`notifications`). Settings come from `CALLBRIDGE_CONFIG` and the
environment, exactly as `callbridge run` saw them; migrations were already applied by the parent process.
"""

from __future__ import annotations

import atexit
from collections.abc import Awaitable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

from bridge.config import load_config
from bridge.ingest.writer import GroupCommitWriter
from bridge.logging_setup import setup_logging
from bridge.pbx.select import notifications_on_loop
from bridge.store.engine import make_engine
from bridge.web.app import create_app
from bridge.web.front import WsgiFront

settings = load_config()
setup_logging(settings.log.level)
engine = make_engine(settings.database.url)
writer = GroupCommitWriter(engine)
atexit.register(writer.stop)
app = create_app(settings, engine, writer)
answer_on_loop = notifications_on_loop(app)
# The source address the app sees behind trusted proxies (create_app's fix-up, applied to a copy).
forwarded = ProxyFix(lambda environ, _start: environ, x_for=settings.http.trusted_proxies)


def notifications(environ: dict[str, Any]) -> Awaitable[tuple[int, list[tuple[str, str]], bytes] | None]:
    """The receiver's event-loop path, seeing the request as the WSGI app would."""
    if settings.http.trusted_proxies:
        environ = forwarded(dict(environ), None)
    return answer_on_loop(environ)


front = WsgiFront(
    app,
    threads=settings.http.threads,
    body_timeout=settings.http.body_timeout_seconds,
    max_body_bytes=settings.mango.max_body_bytes,
    inline=notifications,
)
