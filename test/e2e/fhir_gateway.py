"""A hospital's API gateway in front of its FHIR server, in a thread of the test process:
an authenticating reverse proxy that passes to the real FHIR server (the local HAPI)
only the requests carrying valid credentials.

- `Authorization: Bearer <JWT>`: the signature checked against the issuer's JWKS
  (PyJWT's PyJWKClient), its issuer, audience and expiry; each distinct token
  accepted is kept (`tokens`), with its claims.
- `Authorization: Basic ...`: the one username and password it was given.

Anything else is answered 401 with an OperationOutcome (and `WWW-Authenticate`), and
kept in `refused`. What it forwards is kept in `forwarded`, and the `Type/id` of every
Bundle entry the server wrote (2xx) in `written`: a test knows what went through it.

    with FhirGateway(HAPI, issuer=ISSUER, audience="fhir-gateway", basic=("u", "p")) as gw:
        gw.url  # http://127.0.0.1:<port>/fhir, to give as FHIR_SERVER_URL
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests

# What is passed on to the FHIR server, and back to the client.
REQUEST_HEADERS = ("Content-Type", "Accept", "Prefer", "If-Match", "If-None-Exist")
RESPONSE_HEADERS = ("Content-Type", "Location", "ETag", "Last-Modified", "Content-Location")


@dataclass(frozen=True)
class Seen:
    """One request the gateway answered."""

    method: str
    path: str
    scheme: str  # bearer, basic or "" (none)
    status: int  # what the client got
    reason: str = ""  # why it was refused


@dataclass
class Records:
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)  # token -> its claims
    forwarded: list[Seen] = field(default_factory=list)
    refused: list[Seen] = field(default_factory=list)
    written: list[str] = field(default_factory=list)  # Type/id of each entry written


class FhirGateway:
    """The gateway: `start()` / `stop()`, or a context manager."""

    def __init__(
        self,
        upstream: str,
        *,
        issuer: str = "",
        audience: str = "",
        jwks_url: str = "",
        basic: tuple[str, str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.prefix = urlsplit(self.upstream).path  # /fhir: the same base path here
        self.issuer = issuer
        self.audience = audience
        self.jwks = PyJWKClientOf(jwks_url or f"{issuer}/protocol/openid-connect/certs")
        self.basic = basic
        self.records = Records()
        self.lock = threading.Lock()
        self._local = threading.local()
        self.server = ThreadingHTTPServer((host, 0), _handler_of(self))
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}{self.prefix}"
        self._thread: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> FhirGateway:
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="fhir-gateway", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FhirGateway:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- what a test reads ----------------------------------------------------------------
    def mark(self) -> tuple[int, int, int, int]:
        """Where the records stand now: `since(mark)` gives what came after."""
        with self.lock:
            r = self.records
            return len(r.tokens), len(r.forwarded), len(r.refused), len(r.written)

    def since(self, mark: tuple[int, int, int, int]) -> Records:
        with self.lock:
            r = self.records
            tokens = dict(list(r.tokens.items())[mark[0] :])
            return Records(
                tokens, r.forwarded[mark[1] :], r.refused[mark[2] :], r.written[mark[3] :]
            )

    # --- the checks -----------------------------------------------------------------------
    def check(self, authorization: str) -> tuple[str, str]:
        """(scheme, "") when the credentials are good, else (scheme, why not)."""
        scheme, _, credentials = authorization.partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == "bearer" and self.issuer:
            return scheme, self._check_token(credentials)
        if scheme == "basic" and self.basic is not None:
            return scheme, self._check_basic(credentials)
        if not authorization:
            return "", "no credentials"
        return scheme, f"credentials of scheme {scheme!r} are not accepted here"

    def _check_token(self, token: str) -> str:
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256", "RS384", "RS512", "ES256", "PS256"],
                issuer=self.issuer,
                audience=self.audience or None,
                options={"require": ["exp", "iat", "iss"], "verify_aud": bool(self.audience)},
            )
        except jwt.PyJWTError as error:
            return f"invalid bearer token ({type(error).__name__}: {error})"
        with self.lock:
            self.records.tokens.setdefault(token, claims)
        return ""

    def _check_basic(self, credentials: str) -> str:
        try:
            user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return "malformed basic credentials"
        expected_user, expected_password = self.basic or ("", "")
        good_user = hmac.compare_digest(user.encode(), expected_user.encode())
        good_password = hmac.compare_digest(password.encode(), expected_password.encode())
        return "" if good_user and good_password else "wrong username or password"

    # --- forwarding -----------------------------------------------------------------------
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # no proxy of the environment between us and HAPI
        return session

    def note_written(self, request_body: bytes, answer: requests.Response) -> None:
        """The Type/id of each PUT entry of a Bundle the server answered 2xx for."""
        try:
            sent = json.loads(request_body)
            got = answer.json()
        except ValueError:
            return
        if not isinstance(sent, dict) or sent.get("resourceType") != "Bundle":
            return
        written = []
        for entry, response in zip(sent.get("entry") or [], got.get("entry") or [], strict=False):
            request = entry.get("request") or {}
            status = str((response.get("response") or {}).get("status") or "")
            if request.get("method") == "PUT" and status[:1] == "2":
                written.append(request.get("url", ""))
        with self.lock:
            self.records.written += written


class PyJWKClientOf(jwt.PyJWKClient):
    """PyJWKClient with a short cache: Keycloak's keys, asked once a minute at most."""

    def __init__(self, uri: str) -> None:
        super().__init__(uri, cache_keys=True, lifespan=60, timeout=10)


def _outcome(diagnostics: str, code: str = "login") -> bytes:
    return json.dumps(
        {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
        }
    ).encode()


def _handler_of(gateway: FhirGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0: one request a connection (no keep-alive to get wrong).
        server_version = "FhirGateway/1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # quiet: the records say what happened

        def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            scheme, why = gateway.check(self.headers.get("Authorization") or "")
            if why:
                with gateway.lock:
                    gateway.records.refused.append(Seen(self.command, self.path, scheme, 401, why))
                self._answer(
                    401,
                    _outcome(f"the gateway refuses this request: {why}"),
                    {
                        "Content-Type": "application/fhir+json",
                        "WWW-Authenticate": 'Bearer realm="fhir", Basic realm="fhir"',
                    },
                )
                return
            if not self.path.startswith(gateway.prefix):
                self._answer(404, _outcome(f"no such path {self.path}", "not-found"), {})
                return
            target = gateway.upstream + self.path[len(gateway.prefix) :]
            headers = {n: self.headers[n] for n in REQUEST_HEADERS if self.headers.get(n)}
            try:
                answer = gateway.session().request(
                    self.command, target, data=body or None, headers=headers, timeout=120
                )
            except requests.RequestException as error:
                self._answer(
                    502,
                    _outcome(f"the FHIR server behind the gateway: {error}", "transient"),
                    {"Content-Type": "application/fhir+json"},
                )
                return
            with gateway.lock:
                gateway.records.forwarded.append(
                    Seen(self.command, self.path, scheme, answer.status_code)
                )
            if self.command == "POST" and answer.status_code < 300 and body:
                gateway.note_written(body, answer)
            # requests has undone any Content-Encoding: the body goes back plain.
            kept = {n: answer.headers[n] for n in RESPONSE_HEADERS if n in answer.headers}
            self._answer(answer.status_code, answer.content, kept)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _serve

    return Handler
