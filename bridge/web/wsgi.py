"""The entry point the HTTP server imports in each worker process (`bridge.web.wsgi:front`).

`app` is the WSGI app; `front` serves it to granian (RSGI), reading each request body within
`http.body_timeout_seconds` before the request takes one of the `http.threads` threads
(see bridge/web/front.py). Settings come from `CALLBRIDGE_CONFIG` and the environment, exactly as
`callbridge run` saw them; migrations were already applied by the parent process.
"""

from __future__ import annotations

import atexit

from bridge.config import load_config
from bridge.ingest.writer import GroupCommitWriter
from bridge.logging_setup import setup_logging
from bridge.store.engine import make_engine
from bridge.web.app import create_app
from bridge.web.front import WsgiFront

settings = load_config()
setup_logging(settings.log.level)
engine = make_engine(settings.database.url)
writer = GroupCommitWriter(engine)
atexit.register(writer.stop)
app = create_app(settings, engine, writer)
front = WsgiFront(
    app,
    threads=settings.http.threads,
    body_timeout=settings.http.body_timeout_seconds,
    max_body_bytes=settings.mango.max_body_bytes,
)
