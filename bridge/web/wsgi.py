"""The WSGI entry point the HTTP server imports in each worker process (`bridge.web.wsgi:app`).

Settings come from `CALLBRIDGE_CONFIG` and the environment, exactly as `callbridge run` saw them;
migrations were already applied by the parent process.
"""

from __future__ import annotations

import atexit

from bridge.config import load_config
from bridge.ingest.writer import GroupCommitWriter
from bridge.logging_setup import setup_logging
from bridge.store.engine import make_engine
from bridge.web.app import create_app

settings = load_config()
setup_logging(settings.log.level)
engine = make_engine(settings.database.url)
writer = GroupCommitWriter(engine)
atexit.register(writer.stop)
app = create_app(settings, engine, writer)
