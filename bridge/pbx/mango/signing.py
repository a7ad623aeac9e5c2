"""Mango's request signature: lowercase hex sha256 over key + json + salt, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any


def sign(api_key: str, json_text: str, api_salt: str) -> str:
    """The `sign` form field for a `json` string exactly as it will be sent."""
    return hashlib.sha256(f"{api_key}{json_text}{api_salt}".encode()).hexdigest()


def verify(api_key: str, json_text: str, api_salt: str, signature: str) -> bool:
    """Constant-time check of a received `sign` against the raw `json` field as received."""
    expected = sign(api_key, json_text, api_salt)
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())


def dump_json(payload: Any) -> str:
    """Compact JSON as Mango wants it: no artificial spaces or line breaks, UTF-8 kept as is."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def signed_form(api_key: str, api_salt: str, payload: Any) -> dict[str, str]:
    """The three-field form (`vpbx_api_key`, `sign`, `json`) that both directions of the API use."""
    text = payload if isinstance(payload, str) else dump_json(payload)
    return {"vpbx_api_key": api_key, "sign": sign(api_key, text, api_salt), "json": text}


def recording_link_sign(api_key: str, timestamp: int, recording_id: str, api_salt: str) -> str:
    """The signature of a GET recording link (a different formula from `sign`)."""
    return hashlib.sha256(f"{api_key}{timestamp}{recording_id}{api_salt}".encode()).hexdigest()
