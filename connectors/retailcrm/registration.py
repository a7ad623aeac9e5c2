"""The telephony's registration in retailCRM: ``integration-modules/{code}/edit`` (retailcrm.md §3.2).

The module carries ``clientId``, a secret callbridge generates once and keeps in the connector's state
(key ``client_id``): retailCRM sends it back on every click-to-call request, which is how those requests
are told from forged ones. The same call creates the module or updates it, so registering again is
harmless; the connector still sends it only when the module's content changed: the process that stores
the new content's digest first (``module_digest``, compare-and-set) sends it, so several processes
starting at once register once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any

from bridge.connector_api import StateStore

CLIENT_ID_KEY = "client_id"
DIGEST_KEY = "module_digest"
MAKE_CALL_PATH = "/connectors/retailcrm/make-call"


def client_id(state: StateStore) -> str:
    """The stored ``clientId``, generated on first use (compare-and-set: every process gets the same)."""
    for _ in range(10):
        stored = state.get(CLIENT_ID_KEY)
        if stored is not None:
            return stored[0]
        if state.compare_and_set(CLIENT_ID_KEY, secrets.token_urlsafe(32), None) is not None:
            continue  # re-read what won
    raise RuntimeError("could not store the retailCRM clientId")


def client_id_matches(state: StateStore, offered: str) -> bool:
    """Whether `offered` is the stored ``clientId``, compared in constant time."""
    stored = state.get(CLIENT_ID_KEY)
    if stored is None or not offered:
        return False
    return hmac.compare_digest(stored[0].encode(), offered.encode())


def module(
    *,
    code: str,
    name: str,
    client: str,
    public_url: str | None,
    employees: Mapping[str, str],
    external_phones: Mapping[str, str],
) -> dict[str, Any]:
    """``integrationModule`` for ``integration-modules/{code}/edit``: the telephony with its click-to-call
    address, the events it sends, extension codes of the mapped employees and the shop lines."""
    telephony: dict[str, Any] = {
        "allowEdit": False,
        "inputEventSupported": True,
        "outputEventSupported": True,
        "hangupEventSupported": True,
        "additionalCodes": [
            {"userId": str(user), "code": ext} for ext, user in sorted(employees.items(), key=lambda i: i[0])
        ],
        "externalPhones": [
            {"siteCode": site, "externalPhone": line} for line, site in sorted(external_phones.items())
        ],
    }
    if public_url:
        telephony["makeCallUrl"] = public_url.rstrip("/") + MAKE_CALL_PATH
    body: dict[str, Any] = {
        "code": code,
        "integrationCode": code,
        "active": True,
        "name": name,
        "clientId": client,
        "integrations": {"telephony": telephony},
    }
    if public_url:
        body["baseUrl"] = public_url.rstrip("/")
        body["accountUrl"] = public_url.rstrip("/") + "/admin"  # where the module's settings live
    return body


def digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def claim(state: StateStore, body: Mapping[str, Any]) -> bool:
    """Whether this process should send `body`: True for the one that stores its digest first, False when
    retailCRM already holds it (or another process is sending it right now)."""
    wanted = digest(body)
    for _ in range(5):
        stored = state.get(DIGEST_KEY)
        if stored is not None and stored[0] == wanted:
            return False
        if state.compare_and_set(DIGEST_KEY, wanted, stored[1] if stored else None) is not None:
            return True
    return False


def release(state: StateStore, body: Mapping[str, Any]) -> None:
    """Sending `body` failed: forget its digest, so the next start (or check) sends it again."""
    stored = state.get(DIGEST_KEY)
    if stored is not None and stored[0] == digest(body):
        state.compare_and_set(DIGEST_KEY, "failed", stored[1])
