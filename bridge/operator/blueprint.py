"""`/operator`: the page an employee keeps open (or a CRM embeds in an iframe).

Login: the employee pastes the token an administrator printed with `callbridge token --extension 101`
(or opens `/operator?token=...`, which is how an iframe embeds it). The login token is kept in an
HttpOnly cookie; the page asks `/operator/api/session` for a short-lived token for the WebSocket hub
and the click-to-call API, never longer-lived than the login itself. See docs/operator.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Blueprint, Response, jsonify, make_response, redirect, render_template, request, url_for
from sqlalchemy import Engine

from bridge.api.calls_query import CallFilter, list_calls
from bridge.config import Settings
from bridge.http_errors import ApiError
from bridge.realtime.auth import Identity, TokenError, TokenSigner
from bridge.realtime.session import browser_session

COOKIE = "cb_operator"
MAX_CALLS = 200


class LoginRefused(Exception):
    """A password login refused; the message is for the person logging in."""


LOGIN_SECONDS = 12 * 3600  # a password login lasts a working day, like the admin panel's
SESSION_PREFIX = "s."  # a password login's cookie: a server-side session, not a signed access code


class PasswordLogin(Protocol):
    """Password logins kept on the server: `login` -> (identity, cookie value starting with
    `SESSION_PREFIX`) or `LoginRefused`; `identity(cookie)` is None once the session has ended."""

    def login(self, username: str, password: str, address: str | None) -> tuple[Identity, str]: ...

    def identity(self, cookie: str) -> Identity | None: ...

    def logout(self, cookie: str) -> None: ...


def make_operator(
    settings: Settings,
    engine: Engine,
    signer: Callable[[], TokenSigner],
    *,
    password_login: PasswordLogin | None = None,
    company_zone: Callable[[], str] = lambda: "UTC",
) -> Blueprint:
    """`password_login` lets employees log in with a panel password (a session checked on every request,
    ended by logging out); without it only access codes work. `company_zone()` names the company's time
    zone (the panel's setting): the page shows times in it, 24-hour, and "today" starts at its midnight."""
    bp = Blueprint(
        "operator",
        __name__,
        url_prefix="/operator",
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )

    def _identity_from_request() -> tuple[Identity, str]:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        token = given.strip() if scheme.lower() == "bearer" else request.cookies.get(COOKIE, "")
        if not token:
            raise ApiError(401, "not logged in")
        if token.startswith(SESSION_PREFIX):
            identity = password_login.identity(token) if password_login is not None else None
            if identity is None:
                raise ApiError(401, "logged out")
            return identity, token
        try:
            return signer().verify(token), token
        except TokenError as exc:
            raise ApiError(401, str(exc)) from None

    @bp.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")  # the page's URL may carry a token
        response.headers.setdefault("Cache-Control", "no-store")
        if response.mimetype == "text/html":
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
                "style-src 'self'; script-src 'self'; base-uri 'none'; form-action 'self'",
            )
        return response

    @bp.get("")
    @bp.get("/")
    def page() -> Response:
        return make_response(_page())

    def _page(**values: Any) -> str:
        return render_template(
            "operator/index.html",
            heartbeat=settings.ws.heartbeat_seconds,
            passwords=password_login is not None,
            **values,
        )

    def _login_identity() -> tuple[Identity, str]:
        """The identity and the cookie token of a login form: a password, or a pasted access code."""
        username = (request.form.get("username") or "").strip()
        if username and password_login is not None:
            return password_login.login(username, request.form.get("password") or "", request.remote_addr)
        token = (request.form.get("token") or "").strip()
        return signer().verify(token), token

    @bp.post("/login")
    def login() -> Response:
        try:
            identity, token = _login_identity()
        except (TokenError, LoginRefused) as exc:
            return make_response(_page(error=str(exc)), 401)
        response = redirect(url_for("operator.page"), code=303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=max(1, int(identity.expires_at - time.time())),
            httponly=True,
            samesite="Lax",
            secure=request.is_secure,
            path="/operator",
        )
        return response

    @bp.post("/logout")
    def logout() -> Response:
        cookie = request.cookies.get(COOKIE, "")
        if password_login is not None and cookie.startswith(SESSION_PREFIX):
            password_login.logout(cookie)  # ends the session on the server, not only this cookie
        response = redirect(url_for("operator.page"), code=303)
        response.delete_cookie(COOKIE, path="/operator")
        return response

    @bp.get("/api/session")
    def session() -> Response:
        identity, _login = _identity_from_request()
        session = browser_session(settings, signer(), identity, not_after=identity.expires_at)
        return jsonify({**session, "timezone": _zone().key})

    def _zone() -> ZoneInfo:
        try:
            return ZoneInfo(company_zone())
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo("UTC")

    def _midnight() -> float:
        """Today's start in the company's time zone, as Unix seconds."""
        now = datetime.now(_zone())
        return now.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    @bp.get("/api/calls")
    def today() -> Response:
        identity, _ = _identity_from_request()
        try:  # default: today in the company's time zone
            since = float(request.args.get("since") or _midnight())
        except ValueError:
            raise ApiError(
                400, "'since' must be Unix seconds (the start of the day in your time zone)"
            ) from None
        if not 0 <= time.time() - since <= 8 * 86400:
            raise ApiError(400, "'since' must be within the last week")
        flt = CallFilter(since=since, extension=None if identity.is_supervisor else identity.extension)
        page = list_calls(engine, flt, limit=MAX_CALLS, cursor=None)
        items: list[dict[str, Any]] = [
            {
                k: call.get(k)
                for k in (
                    "entry_id",
                    "direction",
                    "status",
                    "customer_number",
                    "answered_by",
                    "responsible",
                    "extensions",
                    "missed",
                    "started_at",
                    "duration",
                    "talk_seconds",
                    "command_id",
                )
            }
            for call in page["items"]
        ]
        return jsonify({"items": items, "more": page["next_cursor"] is not None})

    return bp
