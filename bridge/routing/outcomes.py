"""The outcomes a call's routing goes through (`call_routes.outcome`).

deciding --no employee in time--> undecided (the IVR scheme goes on)
deciding --employee chosen--> queued --sent, accepted--> sent
queued --the leg left the IVR, or waited too long--> dropped
queued --Mango refused (4101 and the like)--> failed (the IVR scheme goes on)
"""

from __future__ import annotations

DECIDING = "deciding"
UNDECIDED = "undecided"
QUEUED = "queued"
SENT = "sent"
DROPPED = "dropped"
FAILED = "failed"

FAMILIAR = "familiar"
CRM_RESPONSIBLE = "crm_responsible"

__all__ = ["CRM_RESPONSIBLE", "DECIDING", "DROPPED", "FAILED", "FAMILIAR", "QUEUED", "SENT", "UNDECIDED"]
