"""The OpenAPI document of the public HTTP API, served at `GET /api/openapi.json` (no token needed).

Its source is the YAML files in `spec/`: `core.yaml` (shared parts, the read API, click-to-call, health),
`mango.yaml` (the receiver; one operation per notification path, stamped from one template) and
`widget.yaml` (the callback widget). Each file holds `paths` and `components`; a name defined twice is an
error, so a file never silently overrides another.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify

SPEC_DIR = Path(__file__).parent / "spec"
PARTS = ("core.yaml", "mango.yaml", "widget.yaml")


def _load(name: str) -> dict[str, Any]:
    with (SPEC_DIR / name).open(encoding="utf-8") as file:
        return yaml.safe_load(file)


def _mango_operations(part: dict[str, Any]) -> dict[str, Any]:
    """`POST /mango/<path>` for every notification listed in `x-notifications`, from `x-notification`."""
    template = part.pop("x-notification")
    paths = {}
    for path, summary in part.pop("x-notifications").items():
        operation = copy.deepcopy(template)
        operation["summary"] = summary
        operation["operationId"] = "mango_" + path.replace("/", "_")
        paths[f"/mango/{path}"] = {"post": operation}
    return paths


def _merge(into: dict[str, Any], part: dict[str, Any], where: str) -> None:
    for name, value in part.items():
        if name in into:
            raise ValueError(f"OpenAPI: {where}{name} is defined twice")
        into[name] = value


@functools.cache
def document() -> dict[str, Any]:
    """The whole document (built once per process)."""
    doc = _load(PARTS[0])
    doc.setdefault("components", {})
    for name in PARTS[1:]:
        part = _load(name)
        if "x-notification" in part:
            _merge(doc["paths"], _mango_operations(part), "paths.")
        _merge(doc["paths"], part.pop("paths", {}), "paths.")
        for section, entries in part.pop("components", {}).items():
            _merge(doc["components"].setdefault(section, {}), entries, f"components.{section}.")
        if part:
            raise ValueError(f"OpenAPI: {name} may only hold paths and components, not {', '.join(part)}")
    return doc


def make_openapi() -> Blueprint:
    """The blueprint serving the document at `/api/openapi.json`."""
    bp = Blueprint("openapi", __name__)

    @bp.get("/api/openapi.json")
    def openapi_json() -> Response:
        response = jsonify(document())
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    return bp
