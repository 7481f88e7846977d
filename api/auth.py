"""Who may call the API: OpenID Connect bearer tokens, and the roles table.

Every route but the liveness probe (`/health/live`) needs a bearer token (a JWT)
issued by OIDC_ISSUER for OIDC_AUDIENCE: PyJWT checks its signature against the
issuer's published keys (JWKS, picked by `kid`), its issuer, audience and expiry.
The caller's roles come from the claim OIDC_ROLES_CLAIM (Keycloak's
`realm_access.roles` by default) and `ROUTE_ROLES` below is the one table that
says which role each route needs. Roles are ordered: an operator may do what a
reader may, an admin what an operator may.

    | role     | may                                                              |
    | reader   | read and search FHIR resources, list batches, their status, errors |
    | operator | also start, retry and cancel batches, preview (reads the source)  |
    | admin    | also read the audit trail (`/fhir/AuditEvent`)                   |

`API_AUTH=none` turns the check off, for development and benchmarks on one's own
machine: the API refuses to start so unless it listens on a loopback address.
Problems are OperationOutcomes: 401 with `WWW-Authenticate: Bearer ...` (RFC 6750)
when the token is missing or not trusted, 403 when the roles do not allow it.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from dataclasses import dataclass
from typing import Any

import jwt
import requests

from api.fhir import EXPIRED, FORBIDDEN, LOGIN, SECURITY, TRANSIENT, ApiError
from river.errors import ConfigurationError
from river.settings import Settings

log = logging.getLogger("river.api")

READER, OPERATOR, ADMIN = "reader", "operator", "admin"
ROLES = (READER, OPERATOR, ADMIN)  # each may do what the ones before it may
PUBLIC = None
OIDC, NONE = "oidc", "none"

# Flask endpoint -> the least role that may call it. An endpoint missing here
# (an unknown path, a new route not yet listed) needs a reader: closed by default.
ROUTE_ROLES: dict[str, str | None] = {
    "alive": PUBLIC,
    # The console's page and files hold no data: its data come through the routes below.
    "console.page": PUBLIC,
    "console.asset": PUBLIC,
    "console.config": PUBLIC,
    "me": READER,
    "health": READER,
    "openapi": READER,
    "batches.resources": READER,
    "batches.list_batches": READER,
    "batches.get_batch": READER,
    "batches.batch_errors": READER,
    "batches.create_batch": OPERATOR,
    "batches.retry_batch": OPERATOR,
    "batches.cancel_batch": OPERATOR,
    "batches.preview": OPERATOR,
    "batches.resource_keys": OPERATOR,  # reads the source, as a preview does
    "fhir.read": READER,
    "fhir.search": READER,
}
# Resource types that only admins read through /fhir: the audit trail.
ADMIN_RESOURCE_TYPES = frozenset({"AuditEvent"})

# Asymmetric algorithms only: an HS256 token would be checked with a public key as secret.
_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
_TIMEOUT = 5  # seconds to reach the provider


@dataclass(frozen=True)
class Caller:
    """Who calls: the token's subject, a name to show, and the roles it carries."""

    subject: str
    name: str
    roles: frozenset[str]

    def may(self, role: str | None) -> bool:
        if role is None:
            return True
        rank = max((ROLES.index(r) for r in self.roles if r in ROLES), default=-1)
        return rank >= ROLES.index(role)

    @property
    def role(self) -> str | None:
        """The highest of the caller's roles, or None."""
        held = [r for r in ROLES if r in self.roles]
        return held[-1] if held else None


# With API_AUTH=none every caller is this one (local development only).
LOCAL_CALLER = Caller(subject="local", name="local (API_AUTH=none)", roles=frozenset({ADMIN}))


def required_role(endpoint: str | None, view_args: dict[str, Any] | None) -> str | None:
    """The least role a request to `endpoint` needs (None: anyone)."""
    if endpoint is None:  # no route matched: a 404 after authentication
        return READER
    role = ROUTE_ROLES.get(endpoint, READER)
    resource_type = (view_args or {}).get("resource_type")
    if endpoint.startswith("fhir.") and resource_type in ADMIN_RESOURCE_TYPES:
        return ADMIN
    return role


def check_mode(settings: Settings) -> None:
    """Refuse settings that would open the API: an unknown API_AUTH, or none on a
    non-loopback address."""
    if settings.api_auth not in (OIDC, NONE):
        raise ConfigurationError(
            f"setting API_AUTH must be oidc or none, not {settings.api_auth!r}"
        )
    if settings.api_auth == NONE and not is_loopback(settings.api_host):
        raise ConfigurationError(
            f"API_AUTH=none leaves patient data open to anyone who reaches"
            f" {settings.api_host}:{settings.api_port}: it is allowed only when API_HOST is a"
            " loopback address (127.0.0.1, ::1, localhost); set API_AUTH=oidc and OIDC_ISSUER"
        )
    if settings.api_auth == OIDC and not settings.oidc_issuer:
        raise ConfigurationError("API_AUTH=oidc needs OIDC_ISSUER (the token issuer's URL)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class TokenVerifier:
    """Checks bearer tokens against the issuer's keys, fetched on first use (the
    provider may start after the API) and again when a token names a new key."""

    def __init__(self, settings: Settings) -> None:
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self._roles_path = [p for p in settings.oidc_roles_claim.split(".") if p]
        self._jwks_url = settings.oidc_jwks_url
        self._leeway = settings.oidc_leeway_seconds
        self._keys: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def caller(self, authorization: str | None) -> Caller:
        """The caller an `Authorization` header proves, or a 401 ApiError."""
        token = _bearer(authorization)
        try:
            key = self._key_client().get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=_ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError:
            raise self._unreachable() from None
        except jwt.ExpiredSignatureError:
            raise unauthorized(EXPIRED, "the token has expired: get a new one") from None
        except jwt.InvalidAudienceError:
            raise unauthorized(
                SECURITY, f"the token is not meant for this API (audience {self.audience})"
            ) from None
        except jwt.InvalidIssuerError:
            raise unauthorized(SECURITY, f"the token was not issued by {self.issuer}") from None
        except jwt.MissingRequiredClaimError as error:
            if error.claim == "aud":
                raise unauthorized(
                    SECURITY, f"the token is not meant for this API (audience {self.audience})"
                ) from None
            raise unauthorized(SECURITY, f"the token is not valid ({_kind(error)})") from None
        except (jwt.PyJWKClientError, jwt.InvalidTokenError) as error:
            # Malformed, tampered (bad signature), unknown key, missing claim: say which
            # kind, never echo the token.
            raise unauthorized(SECURITY, f"the token is not valid ({_kind(error)})") from None
        return Caller(
            subject=str(claims["sub"]),
            name=str(claims.get("preferred_username") or claims.get("azp") or claims.get("sub")),
            roles=frozenset(_roles(claims, self._roles_path)),
        )

    def _key_client(self) -> jwt.PyJWKClient:
        with self._lock:
            if self._keys is None:
                url = self._jwks_url or self._discover_jwks_url()
                self._keys = jwt.PyJWKClient(url, cache_keys=True, lifespan=300, timeout=_TIMEOUT)
            return self._keys

    def _discover_jwks_url(self) -> str:
        url = f"{self.issuer}/.well-known/openid-configuration"
        try:
            answer = requests.get(url, timeout=_TIMEOUT)
            answer.raise_for_status()
            return str(answer.json()["jwks_uri"])
        except (requests.RequestException, ValueError, KeyError) as error:
            log.warning("OpenID discovery at %s failed: %s", url, type(error).__name__)
            raise self._unreachable() from None

    def _unreachable(self) -> ApiError:
        return ApiError(
            503,
            TRANSIENT,
            f"the identity provider {self.issuer} cannot be reached to check the token;"
            " try again later",
        )


def unauthorized(code: str, diagnostics: str) -> ApiError:
    """A 401 whose WWW-Authenticate says why (RFC 6750, section 3)."""
    challenge = 'Bearer realm="fhir-river"'
    if code != LOGIN:
        description = diagnostics.replace('"', "'")
        challenge += f', error="invalid_token", error_description="{description}"'
    return ApiError(401, code, diagnostics, headers={"WWW-Authenticate": challenge})


def forbidden(caller: Caller, role: str, what: str) -> ApiError:
    held = ", ".join(sorted(caller.roles & set(ROLES))) or "no FHIR River role"
    return ApiError(
        403,
        FORBIDDEN,
        f"{what} needs the role {role} (or a higher one); {caller.name} has {held}",
        headers={
            "WWW-Authenticate": f'Bearer realm="fhir-river", error="insufficient_scope",'
            f' scope="{role}"'
        },
    )


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise unauthorized(
            LOGIN, "this API needs a bearer token (Authorization: Bearer <token>): `river token`"
        )
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized(SECURITY, "the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _roles(claims: dict[str, Any], path: list[str]) -> list[str]:
    value: Any = claims
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    if isinstance(value, str):
        return value.split()
    return [str(v) for v in value] if isinstance(value, list) else []


def _kind(error: Exception) -> str:
    if isinstance(error, jwt.InvalidSignatureError):
        return "its signature does not match"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"it has no {error.claim} claim"
    if isinstance(error, jwt.DecodeError):
        return "it cannot be read as a JWT"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "it is not valid yet"
    if isinstance(error, jwt.InvalidAlgorithmError):
        return "its algorithm is not accepted"
    if isinstance(error, jwt.PyJWKClientError):
        return "it names a key the issuer does not publish"
    return type(error).__name__
