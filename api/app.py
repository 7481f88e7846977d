"""The FHIR River API: a Flask app made by `create_app`.

    app = create_app()                                      # settings from the environment
    app = create_app(settings, engine=e, store=s, producer=p)   # tests pass real parts

`python -m api` serves it with gunicorn (the local stack and the Dockerfile run it;
a bare `gunicorn 'api.app:create_app()'` works too, without the metrics port). Every
answer is JSON; every problem is a FHIR OperationOutcome (api/fhir.py) with the status
that fits it:

- 400: the request is wrong (body, field, parameter, unknown resource id, too large);
- 404: no such batch, resource, route; 405: method; 409: the batch's state forbids it;
- 502: the source database refused a preview's query (missing table or column);
- 503: Kafka, the FHIR store or the source database cannot be reached now;
- 500: anything else, logged here with a reference the answer gives, never a trace.
"""

from __future__ import annotations

import logging
import threading
import uuid

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from adapters import logs
from adapters.kafka import EventProducer, KafkaUnavailable
from adapters.store import FhirStore, StoreUnavailable, open_store
from api import batches, fhir_routes
from api.audit import AUDITED, audit_event
from api.auth import (
    LOCAL_CALLER,
    NONE,
    OIDC,
    PUBLIC,
    TokenVerifier,
    check_mode,
    forbidden,
    required_role,
)
from api.fhir import (
    EXCEPTION,
    NOT_FOUND,
    NOT_SUPPORTED,
    TRANSIENT,
    ApiError,
    error_response,
    json_response,
)
from api.health import check
from api.inputs import MAX_BODY, drain_body, oversize_error
from api.metrics import instrument
from api.openapi import document
from api.services import Services, services, warm_up
from console import blueprint as console_blueprint
from river.engine import Engine
from river.errors import RiverError, SourceUnavailable
from river.secrets import install_log_filter
from river.settings import Settings

log = logging.getLogger("river.api")


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    store: FhirStore | None = None,
    producer: EventProducer | None = None,
) -> Flask:
    """The API over these parts; what is not given is made from `settings`
    (read from the environment and `.env` when not given)."""
    if not logging.getLogger().handlers:
        # Served as `gunicorn 'api.app:create_app()'`, nothing set logging up (python -m api did).
        logs.configure_logging("api")
    if settings is None:
        settings = Settings.load()
    check_mode(settings)  # before anything opens: API_AUTH=none only on loopback
    own_engine = engine is None
    if engine is None:
        engine = Engine.from_settings(settings)
    if store is None:
        store = open_store(
            settings.fhir_store_url,
            bulk_size=settings.mongo_bulk_size,
            fhir_server=settings.fhir_server,
        )

    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY
    app.url_map.strict_slashes = False  # /batches/ and /batches are the same
    river = Services(settings, engine, store, producer)
    app.extensions["river"] = river
    app.extensions["river_auth"] = TokenVerifier(settings) if settings.api_auth == OIDC else None
    install_log_filter(log, river.secrets)

    app.register_blueprint(batches.blueprint)
    app.register_blueprint(fhir_routes.blueprint)
    app.add_url_rule("/health", "health", health, methods=["GET"])
    app.add_url_rule("/health/live", "alive", alive, methods=["GET"])
    app.add_url_rule("/openapi.json", "openapi", openapi, methods=["GET"])
    app.add_url_rule("/me", "me", me, methods=["GET"])
    app.register_blueprint(console_blueprint)
    _register_error_handlers(app)
    instrument(app)  # first: a refused token is counted and timed too
    app.before_request(_authenticate)
    app.after_request(_audit)  # after_request functions run last registered first

    if own_engine:
        threading.Thread(target=warm_up, args=(engine,), name="warm-up", daemon=True).start()
    return app


# --- endpoints that are not batches or FHIR --------------------------------------------


def health() -> Response:
    """Every part FHIR River needs (api/health.py): 200 when all are ok, else 503."""
    report = check(services())
    return json_response(report, 200 if report["status"] == "ok" else 503)


def alive() -> Response:
    """The liveness probe: the API process answers (a container's healthcheck, the
    scripts waiting for it). Whether the pipeline works is /health's question."""
    return json_response({"status": "alive"})


def openapi() -> Response:
    return json_response(document())


def me() -> Response:
    """Who calls, as the API sees the token: what the console shows beside its menu."""
    caller = g.caller
    return json_response(
        {
            "name": caller.name,
            "role": caller.role,
            "roles": sorted(caller.roles),
            "auth": OIDC if current_app.extensions["river_auth"] is not None else NONE,
        }
    )


# --- who calls, and the audit trail ----------------------------------------------------


def _authenticate() -> None:
    """The caller's token and roles against the route's (api/auth.py's ROUTE_ROLES)."""
    role = required_role(request.endpoint, request.view_args)
    if role is PUBLIC:
        return
    verifier: TokenVerifier | None = current_app.extensions["river_auth"]
    caller = (
        LOCAL_CALLER if verifier is None else verifier.caller(request.headers.get("Authorization"))
    )
    g.caller = caller
    if not caller.may(role):
        raise forbidden(caller, role, f"{request.method} {request.path}")


def _audit(response: Response) -> Response:
    """One AuditEvent per audited request (api/audit.py); none lost silently."""
    endpoint = request.endpoint
    if endpoint not in AUDITED:
        return response
    river = services()
    event = audit_event(
        endpoint,
        caller=g.get("caller"),
        issuer=river.settings.oidc_issuer,
        method=request.method,
        path=request.path,
        query=request.query_string.decode("utf-8", "replace"),
        view_args=request.view_args or {},
        status=response.status_code,
        batch_id=g.get("batch_id"),
        client_address=request.remote_addr,
    )
    try:
        river.store.record_audit(event)
    except Exception as error:  # the store is down, or refuses: the answer is withheld
        log.error(
            "%s %s: the audit event could not be kept (%s); the answer is withheld",
            request.method,
            request.path,
            type(error).__name__,
        )
        started = g.get("batch_id")
        done = f" (batch {started} was started)" if started else ""
        return error_response(
            ApiError(
                503,
                TRANSIENT,
                f"the audit trail cannot be written now{done}, so the answer is withheld;"
                " try again later",
            )
        )
    return response


# --- errors -----------------------------------------------------------------------------


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> Response:
        return error_response(error)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> Response:
        # The issue asks for a 400 with an OperationOutcome, not werkzeug's bare 413.
        drain_body()
        return error_response(oversize_error())

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        status = error.code or 500
        methods: list[str] = list(getattr(error, "valid_methods", None) or [])
        if status == 404:
            problem = ApiError(404, NOT_FOUND, f"no such endpoint: {request.path}")
        elif status == 405:
            allowed = ", ".join(sorted(m for m in methods if m not in ("HEAD", "OPTIONS")))
            problem = ApiError(
                405,
                NOT_SUPPORTED,
                f"{request.method} is not allowed on {request.path}; use {allowed}",
            )
        else:
            problem = ApiError(status, EXCEPTION, error.description or error.name)
        response = error_response(problem)
        if methods:
            response.headers["Allow"] = ", ".join(methods)
        return response

    @app.errorhandler(StoreUnavailable)
    @app.errorhandler(KafkaUnavailable)
    @app.errorhandler(SourceUnavailable)
    def unavailable(error: RiverError) -> Response:
        log.warning("%s %s: %s", request.method, request.path, error)
        return error_response(ApiError(503, TRANSIENT, f"{error} Try again later."))

    @app.errorhandler(RiverError)
    def river_error(error: RiverError) -> Response:
        # A sentence written for users (river/errors.py): show it, and log it.
        log.warning("%s %s: %s", request.method, request.path, error)
        return error_response(ApiError(500, EXCEPTION, str(error)))

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> Response:
        reference = uuid.uuid4().hex[:12]
        log.error(
            "%s %s failed (reference %s)", request.method, request.path, reference, exc_info=error
        )
        return error_response(
            ApiError(
                500,
                EXCEPTION,
                f"internal error (reference {reference}); the API's log has the details",
            )
        )
