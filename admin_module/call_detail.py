"""One call in the panel: the caller's card (asked from every lookup connector now), the legs as a
timeline, the recordings, and the other calls with the same number."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, abort, g, render_template
from sqlalchemy import Engine

from admin_module import auth
from admin_module.recordings import may_see_call
from admin_module.roles import can
from bridge.api.calls_query import CallFilter, get_call, list_calls
from bridge.config import Settings
from bridge.connector_api import Connector
from bridge.lookup.card import Card
from bridge.lookup.service import LookupService

log = logging.getLogger(__name__)

CARD_DEADLINE = 3.0  # seconds the page waits for the CRMs; slower ones show as "did not answer in time"
HISTORY = 20
DIGITS = 10  # the same customer: the last 10 digits of the number


class CardLookup:
    """The caller-card service of the web process, built on first use from the running connectors."""

    def __init__(self, settings: Settings, connectors: Callable[[], Mapping[str, Connector]]) -> None:
        self._settings = settings
        self._connectors = connectors
        self._service: LookupService | None = None
        self._lock = threading.Lock()

    def card(self, number: str | None) -> Card | None:
        if not number:
            return None
        with self._lock:
            if self._service is None:
                self._service = LookupService.from_settings(self._settings, self._connectors())
        if not self._service.enabled:
            return None
        return self._service.lookup(number, deadline=CARD_DEADLINE)


def _same_number(engine: Engine, call: dict[str, Any], user: Any) -> list[dict[str, Any]]:
    digits = re.sub(r"\D", "", call.get("customer_number") or "")[-DIGITS:]
    if not digits:
        return []
    extension = None if can(user.role, "all_calls") else (user.extension or "-none-")
    flt = CallFilter(number_digits=digits, extension=extension)
    page = list_calls(engine, flt, limit=HISTORY + 1, cursor=None)
    return [c for c in page["items"] if c["entry_id"] != call["entry_id"]][:HISTORY]


def register_call_detail_routes(
    bp: Blueprint,
    *,
    engine: Engine,
    settings: Settings,
    connectors: Callable[[], Mapping[str, Connector]] | None,
) -> None:
    """`/admin/calls/<entry_id>`: the call page; 404 for an unknown call, 403 for someone else's."""
    cards = CardLookup(settings, connectors or dict)

    @bp.get("/calls/<path:entry_id>")
    @auth.requires("view_calls")
    def call_page(entry_id: str) -> Any:
        call = get_call(engine, entry_id)
        if call is None:
            abort(404)
        if not may_see_call(g.admin_user, call):
            abort(403)
        try:
            card = cards.card(call.get("customer_number"))
        except Exception as exc:  # noqa: BLE001 - the page still shows the call
            log.warning("admin.call card failed: %s", type(exc).__name__)
            card = None
        return render_template(
            "admin/call.html",
            call=call,
            card=card.to_dict() if card else None,
            history=_same_number(engine, call, g.admin_user),
        )
