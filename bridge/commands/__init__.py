"""Commands the bridge sends to the PBX on someone's behalf (click-to-call, routing, hang-up)."""
