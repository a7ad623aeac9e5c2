"""Debian's Chromium for the browser tests: where it is, how it is launched, and when tests may skip.

On a developer's machine without Chromium the browser tests skip with a reason; in CI (`CI` set) a
missing Chromium or Playwright is an error, so a browser test can never be skipped silently there.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

CHROMIUM = os.environ.get("CALLBRIDGE_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed (pip install -e '.[test]')"
    if not os.path.exists(CHROMIUM):
        return "no Chromium found (install Debian's: apt-get install chromium; `make test` does it as root)"
    return None


MISSING = _missing()
if MISSING and os.environ.get("CI"):
    raise RuntimeError(f"browser tests cannot run in CI: {MISSING}")

requires_chromium = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")
