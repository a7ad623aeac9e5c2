"""The Channel Integration Framework page, served at ``/connectors/dynamics/cif`` by the daemon's web app.

Dynamics 365 has no server push: an administrator registers this page as a channel provider, and Dynamics
shows it in a panel beside every record. The page (static/cif.js) loads the CIF library from the
environment (``<url>/webresources/Widget/msdyn_ciLibrary.js``), signs in with a callbridge operator token
(``callbridge token --extension 101``, kept in the browser), gets a hub token from
``/operator/api/session``, opens the caller's record (``searchAndOpenRecords``) while the phone rings, and
turns ``onclicktoact`` into ``POST /api/calls/originate`` from the employee's own extension.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, make_response, render_template

if TYPE_CHECKING:
    from connectors.dynamics.connector import DynamicsConnector

CIF_LIBRARY = "/webresources/Widget/msdyn_ciLibrary.js"


def make_blueprint(connector: DynamicsConnector) -> Blueprint:
    blueprint = Blueprint(
        "dynamics_hooks",
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    crm = connector.settings.url

    @blueprint.after_request
    def _headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if response.mimetype == "text/html":
            response.headers["Cache-Control"] = "no-store"
            # Framed by the Dynamics environment only; the CIF library is the one script from elsewhere.
            response.headers["Content-Security-Policy"] = (
                f"default-src 'self'; script-src 'self' {crm}; connect-src 'self' ws: wss:; "
                f"style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; "
                f"form-action 'self'; frame-ancestors 'self' {crm}"
            )
        return response

    @blueprint.get("/cif")
    def cif() -> Any:
        html = render_template(
            "dynamics/cif.html",
            cif_library=f"{crm}{CIF_LIBRARY}",
            crm_url=crm,
            region=connector.settings.default_region,
        )
        return make_response(html)

    return blueprint
