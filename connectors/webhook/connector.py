"""The generic webhook connector: every CallEvent as a signed JSON POST to one URL."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, ClassVar

import requests
from pydantic import BaseModel

from bridge import __version__
from bridge.connector_api import (
    CallEvent,
    Connector,
    DeliveryError,
    Manifest,
    PermanentDeliveryError,
    RateLimit,
    RefStore,
    RetryableDeliveryError,
    Title,
)
from bridge.connector_api.http import idempotency_key, make_session, safe_host, send
from connectors.webhook.config import SETTINGS_TITLES, WebhookConfig
from connectors.webhook.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

PING = "ping"
CONNECT_TIMEOUT = 3.05


def build_payload(connector_name: str, event: CallEvent) -> dict[str, Any]:
    """The JSON document POSTed for one event (documented in docs/connectors/webhook.md)."""
    return {
        "id": idempotency_key(connector_name, event),
        "type": event.type,
        "entry_id": event.entry_id,
        "occurred_at": event.occurred_at,
        "data": event.to_dict(),
    }


def encode_body(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed and sent."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class WebhookConnector(Connector):
    """POSTs each event, signed with HMAC-SHA256, to ``[connectors.webhook] url``.

    Per-config behaviour lives on the instance: ``self.event_types`` (what `wants` accepts) and
    ``self.rate_limit`` (what the dispatcher throttles to), passed to `Connector.__init__`.
    """

    manifest: ClassVar[Manifest] = Manifest(
        name="webhook",
        title=Title(en="Signed webhook", ru="Подписанный вебхук"),
        docs="docs/connectors/webhook.md",
        capabilities=frozenset(),
        requirements=("an HTTPS endpoint that verifies the HMAC-SHA256 signature",),
        settings=SETTINGS_TITLES,
    )
    config_model: ClassVar[type[BaseModel]] = WebhookConfig

    def __init__(
        self,
        config: WebhookConfig,
        *,
        session: requests.Session | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not isinstance(config, WebhookConfig):
            config = WebhookConfig.model_validate(config)
        # burst 1: requests are spaced evenly, never more than rate_per_second in any second.
        super().__init__(
            config,
            rate_limit=RateLimit(rate=config.rate_per_second, burst=1),
            event_types=frozenset(config.event_types) if config.event_types else None,
        )
        self.settings: WebhookConfig = config
        self.url = str(config.url)
        self._session = session or make_session(user_agent=f"callbridge-webhook/{__version__}")
        self._clock = clock
        self._timeout = (min(CONNECT_TIMEOUT, config.timeout), config.timeout)

    def __repr__(self) -> str:
        return f"WebhookConnector(url={safe_host(self.url)!r})"

    def handle(self, event: CallEvent, refs: RefStore) -> None:
        """POST the event. The receiver deduplicates on Idempotency-Key, so `refs` is not needed."""
        self._post(event)

    def check(self) -> str:
        """POST a signed ``ping`` event and say in plain words how the receiver answered."""
        now = self._clock()
        ping = CallEvent(type=PING, entry_id=PING, key=f"{PING}:{int(now * 1000)}", occurred_at=now)
        where = safe_host(self.url)
        started = time.monotonic()
        try:
            response = self._post(ping)
        except DeliveryError as exc:
            raise type(exc)(self._explain(where, exc)) from None
        elapsed = time.monotonic() - started
        return (
            f"The receiver at {where} accepted a signed ping "
            f"(HTTP {response.status_code} in {elapsed * 1000:.0f} ms)."
        )

    # ------------------------------------------------------------------ internals

    def _post(self, event: CallEvent) -> requests.Response:
        payload = build_payload(self.name, event)
        body = encode_body(payload)
        timestamp = str(int(self._clock()))
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: payload["id"],
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.settings.secret.get_secret_value(), timestamp, body),
        }
        response = send(
            self._session,
            "POST",
            self.url,
            data=body,
            headers=headers,
            timeout=self._timeout,
            allow_redirects=False,  # a redirect would take the signed event somewhere else
        )
        status = response.status_code
        response.close()
        if not 200 <= status < 300:
            err = PermanentDeliveryError(
                f"POST {safe_host(self.url)}: HTTP {status}: the receiver must answer 2xx "
                "(redirects are not followed; configure the final URL)"
            )
            err.status = status  # type: ignore[attr-defined]
            raise err
        return response

    @staticmethod
    def _explain(where: str, exc: DeliveryError) -> str:
        status = getattr(exc, "status", None)
        if status in (401, 403):
            return (
                f"The receiver at {where} refused the ping (HTTP {status}): check that it uses the same "
                "secret and that both clocks are right (the timestamp must be within 5 minutes)."
            )
        if status == 404:
            return f"The receiver at {where} answered 404 Not Found: check the path in the URL."
        if status is not None and 300 <= status < 400:
            return f"The receiver at {where} answered a redirect (HTTP {status}): configure the final URL."
        if isinstance(exc, RetryableDeliveryError):
            if status is not None:
                return f"The receiver at {where} is reachable but failing (HTTP {status}); try again later."
            return f"Could not reach {where}: {_after_colon(str(exc))}."
        return f"The receiver at {where} rejected the ping: {_after_colon(str(exc))}."


def _after_colon(message: str) -> str:
    """The reason part of an ``"POST https://host: reason"`` message."""
    head, sep, tail = message.partition("//")
    rest = tail.split(": ", 1)[1] if sep and ": " in tail else message
    return rest
