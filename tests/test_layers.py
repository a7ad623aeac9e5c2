"""Layers: the core (`bridge`) imports none of its add-ons or connectors; they plug in by entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bridge.addons import load_addons

ROOT = Path(__file__).resolve().parent.parent
CORE_MODULES = ("bridge", "bridge.daemon", "bridge.web.app", "bridge.cli", "bridge.store.schema")
PLUG_INS = ("admin_module", "widget", "connectors")


def test_importing_the_core_pulls_in_no_add_on_or_connector() -> None:
    code = (
        "import importlib, json, sys\n"
        f"for name in {CORE_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {PLUG_INS!r})))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_the_add_ons_are_found_by_entry_point_in_their_order() -> None:
    addons = load_addons()
    assert [addon.name for addon in addons] == ["admin", "widget"]
    assert all(addon.tables and addon.register_web and addon.cli_group for addon in addons)


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
