"""Structured logging: one event per line, key=value pairs, never secrets."""

from __future__ import annotations

import logging
import sys


def setup_logging(level: str = "INFO") -> None:
    root = logging.getLogger()
    if any(getattr(h, "_callbridge", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("ts=%(asctime)s level=%(levelname)s logger=%(name)s msg=%(message)s")
    )
    handler._callbridge = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
