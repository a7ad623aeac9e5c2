"""Caller lookup and routing: ``telephony.externalCall.searchCrmEntities`` -> a caller card.

The answer is a list of ``{CRM_ENTITY_TYPE, CRM_ENTITY_ID, ASSIGNED_BY_ID, NAME, ASSIGNED_BY: {ID,
USER_PHONE_INNER, ...}}``. A contact beats a company beats a lead beats anything else; within a type the
first one Bitrix24 lists wins. The responsible employee is the entity's ``ASSIGNED_BY`` with their inner
phone number (the Mango extension), or the extension the employee map gives their user ID.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bridge.connector_api import CallerCard, Employee

SOURCE = "bitrix24"
_RANK = {"CONTACT": 0, "COMPANY": 1, "LEAD": 2, "DEAL": 3}
# The portal's page of an entity (the portal's own URL scheme: crm/<type>/details/<id>/).
_PAGE = {"CONTACT": "contact", "COMPANY": "company", "LEAD": "lead", "DEAL": "deal"}


def best_entity(entities: Any) -> Mapping[str, Any] | None:
    rows = [e for e in entities if isinstance(e, Mapping)] if isinstance(entities, list) else []
    if not rows:
        return None
    ordered = sorted(enumerate(rows), key=lambda p: (_RANK.get(str(p[1].get("CRM_ENTITY_TYPE")), 9), p[0]))
    return ordered[0][1]


def responsible(entity: Mapping[str, Any], extension_for: Callable[[str], str | None]) -> Employee | None:
    assigned = entity.get("ASSIGNED_BY") if isinstance(entity.get("ASSIGNED_BY"), Mapping) else {}
    user_id = str(entity.get("ASSIGNED_BY_ID") or assigned.get("ID") or "").strip()
    if not user_id:
        return None
    inner = str(assigned.get("USER_PHONE_INNER") or "").strip() or extension_for(user_id)
    name = " ".join(str(assigned.get(k) or "").strip() for k in ("NAME", "LAST_NAME")).strip() or None
    return Employee(extension=inner or None, name=name, crm_user_id=user_id)


def card(portal_url: str, entities: Any, extension_for: Callable[[str], str | None]) -> CallerCard | None:
    entity = best_entity(entities)
    if entity is None:
        return None
    kind = str(entity.get("CRM_ENTITY_TYPE") or "").upper()
    entity_id = str(entity.get("CRM_ENTITY_ID") or "")
    links: tuple[tuple[str, str], ...] = ()
    if kind in _PAGE and entity_id:
        links = ((f"Bitrix24 {kind.lower()}", f"{portal_url}/crm/{_PAGE[kind]}/details/{entity_id}/"),)
    return CallerCard(
        source=SOURCE,
        name=str(entity.get("NAME") or "").strip() or None,
        links=links,
        responsible=responsible(entity, extension_for),
        details={"entity_type": kind, "entity_id": entity_id, "matches": len(entities)},
    )
