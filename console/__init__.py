"""The web console, served by the API at /console/ (same origin: the API's
authentication and roles apply to everything it shows).

    app.register_blueprint(console.blueprint)      # api/app.py

It is a page and two files (`static/`: plain HTML, CSS and JavaScript modules,
nothing to build), which read and act through the API's own routes with the
caller's token: what a role may not do, the API refuses, and the console hides.
With `API_AUTH=oidc` it logs in through the identity provider (authorization
code with PKCE, the public client OIDC_CONSOLE_CLIENT_ID); `config.json` tells it
where. Docs: README, Console.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from flask import Blueprint, Response, current_app, send_from_directory

STATIC = Path(__file__).parent / "static"

blueprint = Blueprint("console", __name__, url_prefix="/console")


@blueprint.get("/")
def page() -> Response:
    """The one page; every screen is a part of it (#/batches, #/batches/<id>, ...)."""
    response = send_from_directory(STATIC, "index.html", mimetype="text/html", max_age=0)
    _harden(response)
    return response


@blueprint.get("/<path:name>")
def asset(name: str) -> Response:
    mimetype = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}.get(
        name.rsplit(".", 1)[-1]
    )
    response = send_from_directory(STATIC, name, mimetype=mimetype, max_age=0)
    _harden(response)
    return response


@blueprint.get("/config.json")
def config() -> Response:
    """Where the console logs in: no secret (the console's client is public)."""
    settings = current_app.extensions["river"].settings
    oidc = current_app.extensions["river_auth"] is not None
    body = {
        "auth": "oidc" if oidc else "none",
        "issuer": settings.oidc_issuer if oidc else None,
        "client_id": settings.oidc_console_client_id if oidc else None,
    }
    return current_app.json.response(body)


def _harden(response: Response) -> None:
    # Scripts, styles and requests of this origin only (and the identity provider's
    # token endpoint), no frames: patient data are on screen.
    issuer = current_app.extensions["river"].settings.oidc_issuer
    provider = "{0.scheme}://{0.netloc}".format(urlsplit(issuer)) if issuer else ""
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; connect-src 'self' {provider}; img-src 'self' data:;"
        " frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
