"""The OpenAPI document at `/api/openapi.json`, and schemathesis run from it against `callbridge run`
(SQLite and PostgreSQL, the Mango command simulator behind it), with valid and with invalid input: no
operation answers 500, and every answer has a documented status, content type, headers and body."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from bridge.api.openapi import document
from bridge.pbx.mango import parse as mango_parse
from bridge.pbx.mango.signing import sign
from tests.api_stack import AUTH, ApiStack, api_stack
from tests.conftest import BACKENDS
from tests.daemon import API_KEY, API_SALT, CALLBRIDGE

SITE = "openapi-shop"
# Per operation, mode and backend (about 1,300 requests per backend); raise it for a deeper run.
EXAMPLES = int(os.environ.get("CALLBRIDGE_TEST_OPENAPI_EXAMPLES", "20"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
# Every documented operation; schemathesis leaves out the document's own URL (checked on its own below).
OPERATIONS = [
    f"{method.upper()} {path}"
    for path, item in document()["paths"].items()
    for method in item
    if method in ("get", "post", "put", "patch", "delete", "options") and path != "/api/openapi.json"
]

stack = pytest.fixture(scope="module", params=BACKENDS)(api_stack)


@pytest.fixture(scope="module")
def served(stack: ApiStack) -> Iterator[tuple[ApiStack, schemathesis.BaseSchema, str]]:
    """The stack with calls to read and a widget site, the schema loaded from the daemon itself, and the
    entry id of a stored call."""
    call = stack.play("incoming_answered", seed=1, extensions=("101",))
    stack.play("incoming_missed", seed=2)
    added = subprocess.run(
        [CALLBRIDGE, "widget", "add-site", "--key", SITE, "--origin", "https://shop.example"]
        + ["--group", "200", "--line", "74951234567", "--hours", "daily 00:00-24:00"],
        env=stack.daemon.env,
        cwd=stack.daemon.workdir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    schema = schemathesis.openapi.from_url(f"{stack.url}/api/openapi.json")
    yield stack, schema, call["entry_id"]


def test_document_is_served_without_a_token_and_is_valid(served: tuple[ApiStack, Any, str]) -> None:
    stack, schema, _ = served
    response = requests.get(f"{stack.url}/api/openapi.json", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.json() == document()
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    assert response.json()["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert sorted(f"{op.ok().method.upper()} {op.ok().path}" for op in schema.get_all_operations()) == sorted(
        OPERATIONS
    )


def test_the_root_lists_every_entrance_with_the_add_ons_pages(served: tuple[ApiStack, Any, str]) -> None:
    stack, _, _ = served
    links = requests.get(f"{stack.url}/", timeout=10).json()
    assert links["api"] == "/api/openapi.json" and links["operator"] == "/operator"
    assert (links["admin"], links["widget"]) == ("/admin", "/widget/callback.js")  # from the add-ons
    for path in ("/admin", "/operator", "/widget/callback.js", "/api/openapi.json", "/healthz"):
        assert requests.get(f"{stack.url}{path}", timeout=10).status_code == 200, path


def test_every_mango_notification_path_is_documented() -> None:
    documented = {path.removeprefix("/mango/") for path in document()["paths"] if path.startswith("/mango/")}
    for path in documented:
        assert mango_parse.is_known_path(path), path
    known = set(mango_parse._PARSERS) | set(mango_parse.KEPT_UNINTERPRETED_PATHS)
    known |= {f"result/{command}" for command in mango_parse.COMMAND_RESULT_PATHS}
    assert documented == known


def _steer(case: schemathesis.Case, entry_id: str) -> None:
    """Point a generated case at what exists, so the answers for valid input are checked too: the
    registered widget site, a correctly signed Mango form, a stored call, a placeable click-to-call."""
    path = case.operation.path
    if path.startswith("/widget/") and path != "/widget/callback.js":
        case.query = {**(case.query or {}), "site": SITE}
    elif path.startswith("/mango/") and isinstance(case.body, dict):
        json_text = str(case.body.get("json", ""))
        case.body = {**case.body, "vpbx_api_key": API_KEY, "sign": sign(API_KEY, json_text, API_SALT)}
    elif path == "/api/calls/{entry_id}":
        case.path_parameters = {"entry_id": entry_id}
    elif path == "/api/calls/originate" and isinstance(case.body, dict):
        case.body = {**case.body, "extension": "101", "number": "+7 916 123-45-67"}


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=str)
@pytest.mark.parametrize("label", OPERATIONS)
def test_operation_conforms_to_the_document(
    served: tuple[ApiStack, Any, str], label: str, mode: GenerationMode
) -> None:
    stack, schema, entry_id = served
    operation = schema.find_operation_by_label(label)
    assert operation is not None, label
    session = requests.Session()

    @given(case=operation.as_strategy(generation_mode=mode), steered=st.booleans())
    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def conforms(case: schemathesis.Case, steered: bool) -> None:
        if steered:
            _steer(case, entry_id)
        case.call_and_validate(base_url=stack.url, session=session, headers=AUTH, checks=CHECKS, timeout=15)

    try:
        conforms()
    except Unsatisfiable:
        if mode is not GenerationMode.NEGATIVE:
            raise
        pytest.skip("nothing this operation takes can be made invalid on the wire")
    finally:
        session.close()
    assert stack.tracebacks() == []
