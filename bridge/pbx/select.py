"""The one place that builds the PBX adapter from the settings (only Mango's exists).

The composition (the daemon, the web app and its WSGI entry point, the CLI) and the core reach the PBX
through what this module builds, typed by the port (`bridge.pbx.port`): `pbx_client` (commands and
queries), `event_decoder` (stored notifications into `PbxEvent`s, for the processor) and
`install_receiver` / `notifications_on_loop` (the signed notification endpoint). Only the Mango-specific
call-history import of its statistics report asks for Mango's own client, `mango_client`.
A second PBX adds its adapter package beside `bridge.pbx.mango` and a branch in each function here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bridge.config import Settings
from bridge.pbx.mango import codes as mango_codes
from bridge.pbx.mango import parse as mango_parse
from bridge.pbx.mango.client import MangoClient
from bridge.pbx.mango.receiver import EXTENSION, MangoCredentials, MangoReceiver
from bridge.pbx.port import EventDecoder, PbxCommands

if TYPE_CHECKING:
    from flask import Flask

    from bridge.ingest.writer import GroupCommitWriter

__all__ = [
    "event_decoder",
    "explain_result",
    "install_receiver",
    "mango_client",
    "notifications_on_loop",
    "pbx_client",
]

Answer = tuple[int, list[tuple[str, str]], bytes]


def mango_client(settings: Settings) -> MangoClient:
    """A Mango command client from the current settings."""
    return MangoClient(
        settings.mango.api_key,
        settings.mango.api_salt.get_secret_value(),
        settings.mango.api_url,
        verify_tls=settings.mango.verify_tls,
    )


def pbx_client(settings: Settings) -> PbxCommands:
    """A client of the configured PBX, from the current settings. Raises ValueError when the
    credentials are missing."""
    return mango_client(settings)


def event_decoder() -> EventDecoder:
    """How the configured PBX's stored notifications become typed events."""
    return mango_parse.decode


# What a refused click-to-call most often means, beyond the code's own meaning.
_CALLBACK_HINTS = {
    3100: "most often the extension is no employee's in the PBX; check it in the PBX's cabinet",
    3103: "the extension or the number was missing",
    3104: "the number is not in a form the PBX dials",
}


def explain_result(path: str, code: int) -> str:
    """A person's words for the PBX's result `code` of the command at `path` (e.g. commands/callback)."""
    text = f"{mango_codes.describe(code)} (result {code})"
    hint = _CALLBACK_HINTS.get(code) if path == "commands/callback" else None
    return f"{text}: {hint}" if hint else text


def install_receiver(
    app: Flask, settings: Settings, effective: Callable[[], Settings], writer: GroupCommitWriter
) -> None:
    """The PBX's signed notification endpoint on `app`: Mango's `/mango` blueprint, and its plain WSGI
    path for notifications in front of the app. `effective()` gives the settings in force (the key, the
    salt and the allowed addresses saved in the panel apply without a restart)."""
    credentials = MangoCredentials(
        lambda: (effective().mango.api_key, effective().mango.api_salt.get_secret_value())
    )
    receiver = MangoReceiver(
        credentials,
        writer,
        allowed_ips=lambda: effective().mango.allowed_ips,
        max_body_bytes=settings.mango.max_body_bytes,
    )
    app.register_blueprint(receiver.blueprint())
    # Notifications skip Flask (a plain WSGI path); the caller puts the proxy fix-up in front of it.
    app.wsgi_app = receiver.wsgi(app.wsgi_app)  # type: ignore[method-assign]


def notifications_on_loop(app: Flask) -> Callable[[dict[str, Any]], Awaitable[Answer | None]]:
    """The event-loop path of the receiver `install_receiver` put on `app`: the answer (status, headers,
    body) to a notification, or None for a request the app itself must serve."""
    receiver: MangoReceiver = app.extensions[EXTENSION]
    return receiver.answer_on_loop
